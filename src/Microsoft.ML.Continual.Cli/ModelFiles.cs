using System.Diagnostics;

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
    public const int Cancelled = 130;

    public const string Help = "Exit codes: 0 success; 1 unexpected error; 2 bad arguments; 3 bad or mismatched data; 4 bad or unreadable model file; " +
        "5 the output is locked by another job; 6 unusable checkpoint; 130 cancelled (Ctrl+C / SIGTERM).";
}

/// <summary>An error the tool reports with a message and an exit code, without a stack trace.</summary>
internal sealed class CliException(int exitCode, string message) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

/// <summary>
/// Writing model files so that nothing is ever lost: a lock per output path (one writer at a time), every write to a
/// temporary file in the same folder, flushed to disk, then renamed over the target (atomic on POSIX and NTFS), and for
/// in-place refits a backup of the previous model made the same way before the rename.
/// </summary>
internal static class ModelFiles
{
    /// <summary>Holds <paramref name="path"/>.lock exclusively (an OS lock: released when the process ends, even when killed).
    /// Waits up to <paramref name="wait"/> for another job to finish, then fails with <see cref="ExitCodes.Locked"/>.</summary>
    public static IDisposable Lock(string path, TimeSpan wait)
    {
        string lockPath = Path.GetFullPath(path) + ".lock";
        Directory.CreateDirectory(Path.GetDirectoryName(lockPath)!);
        var clock = Stopwatch.StartNew();
        while (true)
        {
            FileStream stream;
            try
            {
                stream = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (clock.Elapsed < wait)
            {
                Thread.Sleep(200);
                continue;
            }
            catch (IOException)
            {
                throw new CliException(ExitCodes.Locked, $"Another job is writing '{path}' (it holds '{lockPath}'). Wait for it, or pass --wait SECONDS to wait here.");
            }
            try
            {
                // Who holds it, for a person looking at the folder; the OS lock is what counts.
                stream.SetLength(0);
                using (var writer = new StreamWriter(stream, leaveOpen: true)) writer.Write($"{Environment.ProcessId} {DateTime.UtcNow:O}");
                stream.Flush();
                return stream;
            }
            catch
            {
                stream.Dispose();
                throw;
            }
        }
    }

    /// <summary>Saves <paramref name="model"/> to <paramref name="path"/> atomically: a reader sees the old file or the complete new one, never a part.</summary>
    public static void SaveAtomic(MLContext ml, ITransformer model, DataViewSchema schema, string path)
    {
        string full = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(directory);
        RemoveStaleTemporaries(full);
        string temporary = TemporaryName(full);
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                ml.Model.Save(model, schema, stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    /// <summary>Copies <paramref name="path"/> to <paramref name="backup"/> atomically (temporary copy, flush, rename).</summary>
    public static void BackupAtomic(string path, string backup)
    {
        string full = Path.GetFullPath(backup);
        string temporary = TemporaryName(full);
        try
        {
            using (var source = File.OpenRead(path))
            using (var target = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                source.CopyTo(target);
                target.Flush(flushToDisk: true);
            }
            File.Move(temporary, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    private static string TemporaryName(string full) =>
        Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");

    /// <summary>Deletes temporary files a killed job left next to <paramref name="full"/> (we hold its lock, so none is in use).</summary>
    private static void RemoveStaleTemporaries(string full)
    {
        // Only this output's own temporaries: ".<name>.<pid>.<32 hex digits>.tmp" (not those of an output whose name extends this one).
        var own = new System.Text.RegularExpressions.Regex($"^\\.{System.Text.RegularExpressions.Regex.Escape(Path.GetFileName(full))}\\.\\d+\\.[0-9a-f]{{32}}\\.tmp$");
        foreach (string stale in Directory.EnumerateFiles(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.*.tmp").Where(f => own.IsMatch(Path.GetFileName(f))))
        {
            try { File.Delete(stale); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }
}
