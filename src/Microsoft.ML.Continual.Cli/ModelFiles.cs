using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Microsoft.ML.Continual.Cli;

/// <summary>The tool's exit codes (documented in the README and in <c>continual --help</c>).</summary>
internal static class ExitCodes
{
    public const int Success = 0;
    public const int UnexpectedError = 1;
    public const int UsageError = 2;
    public const int DataError = 3;
    public const int ModelError = 4;
    public const int Locked = 5;
    public const int CheckpointError = 6;
    public const int Diverged = 7;
    public const int CannotWrite = 8;
    public const int OutOfMemory = 9;
    public const int Cancelled = 130;
    /// <summary>Not an error: 'drift' found that the data has shifted (so that a scheduler can branch on the exit code).</summary>
    public const int Shifted = 10;

    public const string Help = "Exit codes: 0 success; 1 unexpected error; 2 bad arguments; 3 bad or mismatched data; 4 bad or unreadable model file; " +
        "5 the output is locked by another job; 6 unusable checkpoint; 7 training diverged, nothing was written; " +
        "8 cannot write the output (permission denied, read-only file system, no space left); 9 out of memory, nothing was written " +
        "(stream the task: --set MemoryBudgetMegabytes=N); 10 'drift' found a shift (not an error); 130 cancelled (Ctrl+C / SIGTERM).";
}

/// <summary>An error the tool reports with a message and an exit code, without a stack trace.</summary>
internal sealed class CliException(int exitCode, string message) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

/// <summary>
/// Writing model files so that nothing is ever lost. A job locks its output's resolved path (symbolic links followed) with
/// an OS lock; every file is written to a temporary file in the same folder, flushed to disk, checked, and renamed over
/// its target (atomic on POSIX and NTFS), and the folder is synced after each rename. For in-place refits the previous
/// model becomes <c>.bak</c> (older ones <c>.bak.1</c> ...) only once the new model is known good.
/// </summary>
internal static class ModelFiles
{
    /// <summary>The path a job really writes: <paramref name="path"/> with every symbolic link followed, so that a link and
    /// its target share one lock, one checkpoint and one set of backups, and a link stays a link.</summary>
    public static string Resolve(string path)
    {
        string full = Path.GetFullPath(path);
        if (NativeFiles.RealPath(full) is string real) return real;
        // Not there yet, or a link to nothing yet: follow the link chain by hand, then resolve the folder it ends in.
        try
        {
            if (File.ResolveLinkTarget(full, returnFinalTarget: true) is FileSystemInfo target) full = target.FullName;
        }
        catch (IOException)
        {
            // not a link, or a loop of links: the path as given (writing it then fails clearly)
        }
        string folder = Path.GetDirectoryName(full)!;
        return Path.Combine(NativeFiles.RealPath(folder) ?? folder, Path.GetFileName(full));
    }

    /// <summary>Fails with <see cref="ExitCodes.UsageError"/> when the output is an existing folder (before anything is trained).</summary>
    public static void RefuseDirectory(string resolved, string given, string option)
    {
        if (Directory.Exists(resolved))
            throw new CliException(ExitCodes.UsageError, $"{option} '{given}' is a folder; give the model file's path (for example '{Path.Combine(given, "model.zip")}').");
    }

    /// <summary>Takes the output: locks it (see <see cref="Lock"/>), deletes temporary files that killed jobs left for it, its
    /// backups and its checkpoint, and checks that its folder can be written, all before any training.</summary>
    public static IDisposable PrepareOutput(string resolved, TimeSpan wait)
    {
        var held = Lock(resolved, wait);
        try
        {
            RemoveStaleTemporaries(resolved);
            ProbeWritable(resolved);
            return held;
        }
        catch
        {
            held.Dispose();
            throw;
        }
    }

    /// <summary>Holds <c>&lt;resolved&gt;.lock</c> exclusively with flock(2) (released by the OS when the process ends, even when
    /// killed; not affected by <c>DOTNET_SYSTEM_IO_DISABLEFILELOCKING</c>). Waits up to <paramref name="wait"/> for another job,
    /// then fails with <see cref="ExitCodes.Locked"/>. The lock file is deleted when the job lets go.</summary>
    public static IDisposable Lock(string resolved, TimeSpan wait)
    {
        string lockPath = resolved + ".lock";
        CannotWriteIsReported(lockPath, () => Directory.CreateDirectory(Path.GetDirectoryName(lockPath)!));
        var clock = Stopwatch.StartNew();
        bool told = false;
        while (true)
        {
            IDisposable? held = NativeFiles.Available ? TryFlock(lockPath) : TryDotNetLock(lockPath);
            if (held is not null) return held;
            if (clock.Elapsed >= wait)
                throw new CliException(ExitCodes.Locked, $"Another job is writing '{resolved}' (it holds '{lockPath}'). Wait for it, or pass --wait SECONDS to wait here.");
            if (!told) Console.Error.WriteLine($"Waiting up to {wait.TotalSeconds:F0} s for the job writing '{resolved}' (it holds '{lockPath}').");
            told = true;
            Thread.Sleep(200);
        }
    }

    /// <summary>Writes a new file at <paramref name="resolved"/>: temporary file, flushed, <paramref name="verify"/>, renamed over the target.</summary>
    public static void WriteVerified(string resolved, Action<Stream> write, Action<string> verify)
    {
        string temporary = WriteTemporary(resolved, write);
        try
        {
            verify(temporary);
            Rename(temporary, resolved);
        }
        finally
        {
            DeleteQuietly(temporary);
        }
    }

    /// <summary>Replaces the model at <paramref name="resolved"/> keeping <paramref name="keep"/> backups, newest first. The order makes
    /// every failure harmless: the new model is written and verified first; only then are the backups rotated, the current model
    /// copied to <c>.bak</c> and the new one renamed over it.</summary>
    public static void ReplaceVerified(string resolved, Action<Stream> write, Action<string> verify, int keep)
    {
        string temporary = WriteTemporary(resolved, write);
        string? copy = null;
        try
        {
            verify(temporary);
            var backups = BackupPaths(resolved, keep);
            copy = CannotWriteIsReported(backups[0], () => CopyToTemporary(resolved, backups[0]));
            RotateBackups(backups);
            Rename(copy, backups[0]);
            Rename(temporary, resolved);
        }
        finally
        {
            DeleteQuietly(temporary);
            if (copy is not null) DeleteQuietly(copy);
        }
    }

    /// <summary>The backups of <paramref name="resolved"/>, newest first: <c>.bak</c>, then <c>.bak.1</c> .. <c>.bak.{keep-1}</c>.</summary>
    public static IReadOnlyList<string> BackupPaths(string resolved, int keep) =>
        Enumerable.Range(0, keep).Select(i => i == 0 ? resolved + ".bak" : $"{resolved}.bak.{i}").ToList();

    /// <summary>Deletes temporary files a killed job left for <paramref name="resolved"/>, its backups and its checkpoint (we hold
    /// its lock, so none is in use): <c>.&lt;name&gt;[.bak[.N]|.ckpt].&lt;pid&gt;.&lt;32 hex digits&gt;.tmp</c>, not those of an
    /// output whose name merely starts the same.</summary>
    public static void RemoveStaleTemporaries(string resolved)
    {
        string name = Path.GetFileName(resolved);
        var own = new Regex($"^\\.{Regex.Escape(name)}(\\.bak(\\.\\d+)?|\\.ckpt)?\\.\\d+\\.[0-9a-f]{{32}}\\.tmp$");
        foreach (string stale in Directory.EnumerateFiles(Path.GetDirectoryName(resolved)!, $".{name}*.tmp").Where(f => own.IsMatch(Path.GetFileName(f))))
            DeleteQuietly(stale);
    }

    /// <summary>Creates and deletes a file beside the output, so that a folder that cannot be written fails before training
    /// (with <see cref="ExitCodes.CannotWrite"/>), not after it.</summary>
    private static void ProbeWritable(string resolved)
    {
        string probe = TemporaryName(resolved);
        CannotWriteIsReported(resolved, () =>
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None)) { }
            File.Delete(probe);
        });
    }

    private static IDisposable? TryFlock(string lockPath)
    {
        int fd = CannotWriteIsReported(lockPath, () => NativeFiles.TryLockExclusive(lockPath));
        if (fd < 0) return null;
        if (!NativeFiles.IsSameFile(fd, lockPath))
        {
            // Its last holder deleted it between our open and our lock: the lock that counts is on the file now at that path.
            NativeFiles.Close(fd);
            return TryFlock(lockPath);
        }
        NativeFiles.WriteText(fd, $"{Environment.ProcessId} {DateTime.UtcNow:O}"); // who holds it, for a person looking at the folder
        return new FlockHold(fd, lockPath);
    }

    /// <summary>Where flock(2) is not used: .NET's own exclusive open (an OS lock on Windows).</summary>
    private static IDisposable? TryDotNetLock(string lockPath)
    {
        try
        {
            return CannotWriteIsReported(lockPath, () => new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>A held flock: deleting the lock file while still holding it, then closing, lets the next job lock a fresh file
    /// (a job that opened the old one notices with <see cref="NativeFiles.IsSameFile"/>).</summary>
    private sealed class FlockHold(int fd, string path) : IDisposable
    {
        private bool _released;

        public void Dispose()
        {
            if (_released) return;
            _released = true;
            DeleteQuietly(path);
            NativeFiles.Close(fd);
        }
    }

    private static string WriteTemporary(string resolved, Action<Stream> write)
    {
        string temporary = TemporaryName(resolved);
        try
        {
            CannotWriteIsReported(resolved, () =>
            {
                using var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None);
                write(stream);
                stream.Flush(flushToDisk: true);
            });
            return temporary;
        }
        catch
        {
            DeleteQuietly(temporary);
            throw;
        }
    }

    private static string CopyToTemporary(string source, string besides)
    {
        string temporary = TemporaryName(besides);
        try
        {
            using var from = File.OpenRead(source);
            using var to = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None);
            from.CopyTo(to);
            to.Flush(flushToDisk: true);
            return temporary;
        }
        catch
        {
            DeleteQuietly(temporary);
            throw;
        }
    }

    /// <summary>Shifts every backup one place older (<c>.bak.{k-2}</c> to <c>.bak.{k-1}</c>, ..., <c>.bak</c> to <c>.bak.1</c>); the oldest is dropped.</summary>
    private static void RotateBackups(IReadOnlyList<string> backups)
    {
        for (int i = backups.Count - 1; i > 0; i--)
            if (File.Exists(backups[i - 1])) Rename(backups[i - 1], backups[i]);
    }

    /// <summary>Renames over the target, then syncs the folder so that the rename itself is on disk.</summary>
    private static void Rename(string from, string to) => CannotWriteIsReported(to, () =>
    {
        File.Move(from, to, overwrite: true);
        NativeFiles.SyncDirectory(Path.GetDirectoryName(to)!);
    });

    private static string TemporaryName(string full) =>
        Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");

    private static void DeleteQuietly(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static void CannotWriteIsReported(string path, Action action) => CannotWriteIsReported(path, () => { action(); return 0; });

    /// <summary>Runs <paramref name="action"/>, turning "permission denied", "read-only file system" and "no space left" into
    /// <see cref="ExitCodes.CannotWrite"/> with a message that says so (not a stack trace, not "another job is writing").</summary>
    private static T CannotWriteIsReported<T>(string path, Func<T> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (NativeFiles.IsCannotWrite(e))
        {
            throw new CliException(ExitCodes.CannotWrite, $"Cannot write '{path}': {NativeFiles.CannotWriteReason(e)}. " +
                "Nothing was replaced: the previous model and its backups are unchanged.");
        }
    }
}
