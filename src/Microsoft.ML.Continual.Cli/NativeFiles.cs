using System.Runtime.InteropServices;

namespace Microsoft.ML.Continual.Cli;

/// <summary>
/// The few POSIX calls the tool needs for files that nothing can lose, through libc on Linux: an OS lock that does not
/// depend on .NET's own advisory locking (which <c>DOTNET_SYSTEM_IO_DISABLEFILELOCKING=1</c> turns off), the real
/// path behind symbolic links, and fsync of a directory after a rename. Elsewhere the callers fall back to .NET.
/// </summary>
internal static class NativeFiles
{
    // Linux errno values (the same on x64 and arm64).
    public const int EPERM = 1, ENOENT = 2, EINTR = 4, EAGAIN = 11, EACCES = 13, EINVAL = 22, ENOSPC = 28, EROFS = 30, EDQUOT = 122;

    private const string Libc = "libc.so.6"; // glibc's soname ("libc.so" may be a linker script)
    private const int O_RDONLY = 0, O_RDWR = 2, O_CREAT = 0x40, O_CLOEXEC = 0x80000;
    private const int LOCK_EX = 2, LOCK_NB = 4;
    private const int AT_FDCWD = -100, AT_EMPTY_PATH = 0x1000;
    private const uint STATX_INO = 0x100;

    /// <summary>True where these calls are used (Linux; the errno values and flags above are Linux's).</summary>
    public static bool Available => OperatingSystem.IsLinux();

    /// <summary>True for an I/O error that means the output cannot be written at all: permission denied, a read-only
    /// file system, or no space left (not a passing condition that waiting would fix).</summary>
    public static bool IsCannotWrite(Exception e) => e is UnauthorizedAccessException
        || e is IOException { HResult: EACCES or EPERM or EROFS or ENOSPC or EDQUOT };

    /// <summary>Why <see cref="IsCannotWrite"/> holds, in words.</summary>
    public static string CannotWriteReason(Exception e) => e switch
    {
        IOException { HResult: EROFS } => "read-only file system",
        IOException { HResult: ENOSPC or EDQUOT } => "no space left on the device (or the quota is exhausted)",
        _ => "permission denied",
    };

    /// <summary>The canonical path of an existing file or folder (every symbolic link followed), or null when it cannot be resolved.</summary>
    public static string? RealPath(string path)
    {
        if (!Available) return null;
        IntPtr resolved = realpath(path, IntPtr.Zero);
        if (resolved == IntPtr.Zero) return null;
        try { return Marshal.PtrToStringUTF8(resolved); }
        finally { free(resolved); }
    }

    /// <summary>Opens (creating it if needed) <paramref name="path"/> and takes an exclusive flock(2) on it without waiting.
    /// Returns the descriptor, or -1 when another process holds the lock; throws <see cref="IOException"/> (HResult = errno) otherwise.</summary>
    public static int TryLockExclusive(string path)
    {
        int fd = Retry(() => open(path, O_RDWR | O_CREAT | O_CLOEXEC, Convert.ToInt32("644", 8)));
        if (fd < 0) throw Error(Marshal.GetLastPInvokeError(), path);
        if (Retry(() => flock(fd, LOCK_EX | LOCK_NB)) == 0) return fd;
        int errno = Marshal.GetLastPInvokeError();
        close(fd);
        if (errno == EAGAIN) return -1;
        throw Error(errno, path);
    }

    /// <summary>True when <paramref name="fd"/> is still the file at <paramref name="path"/> (the same device and inode):
    /// a lock file that its holder deleted before we locked it must not count.</summary>
    public static bool IsSameFile(int fd, string path)
    {
        byte[] held = new byte[256], named = new byte[256];
        var heldIdentity = Identity(statx(fd, "", AT_EMPTY_PATH, STATX_INO, held), held);
        var namedIdentity = Identity(statx(AT_FDCWD, path, 0, STATX_INO, named), named);
        if (heldIdentity is null) return true; // statx unavailable (a kernel before 4.11): cannot tell, so trust the lock
        return heldIdentity == namedIdentity;
    }

    /// <summary>Writes <paramref name="text"/> at the start of the open file (for a person looking at a lock file).</summary>
    public static void WriteText(int fd, string text)
    {
        byte[] bytes = System.Text.Encoding.UTF8.GetBytes(text);
        ftruncate(fd, 0);
        pwrite(fd, bytes, bytes.Length, 0);
    }

    /// <summary>Closes a descriptor (releasing its flock).</summary>
    public static void Close(int fd) => close(fd);

    /// <summary>Flushes <paramref name="directory"/>'s entries to disk, so that a rename in it survives a power cut.
    /// File systems that cannot sync a directory (EINVAL) are skipped; a no-op where these calls are not used.</summary>
    public static void SyncDirectory(string directory)
    {
        if (!Available) return;
        int fd = Retry(() => open(directory, O_RDONLY | O_CLOEXEC, 0));
        if (fd < 0) throw Error(Marshal.GetLastPInvokeError(), directory);
        try
        {
            if (Retry(() => fsync(fd)) != 0 && Marshal.GetLastPInvokeError() is int errno && errno != EINVAL) throw Error(errno, directory);
        }
        finally
        {
            close(fd);
        }
    }

    // struct statx's layout is the kernel's, the same on every architecture: stx_ino at 32, stx_dev_major/minor at 136/140.
    private static (ulong Inode, ulong Device)? Identity(int result, byte[] buffer) =>
        result != 0 ? null : (BitConverter.ToUInt64(buffer, 32), ((ulong)BitConverter.ToUInt32(buffer, 136) << 32) | BitConverter.ToUInt32(buffer, 140));

    private static int Retry(Func<int> call)
    {
        int result;
        do result = call(); while (result < 0 && Marshal.GetLastPInvokeError() == EINTR);
        return result;
    }

    private static IOException Error(int errno, string path) =>
        new($"{path}: {Marshal.GetPInvokeErrorMessage(errno)}", errno);

    [DllImport(Libc, SetLastError = true)] private static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, int mode);
    [DllImport(Libc, SetLastError = true)] private static extern int close(int fd);
    [DllImport(Libc, SetLastError = true)] private static extern int flock(int fd, int operation);
    [DllImport(Libc, SetLastError = true)] private static extern int fsync(int fd);
    [DllImport(Libc, SetLastError = true)] private static extern int ftruncate(int fd, long length);
    [DllImport(Libc, SetLastError = true)] private static extern nint pwrite(int fd, byte[] buffer, nint count, long offset);
    [DllImport(Libc, SetLastError = true)] private static extern IntPtr realpath([MarshalAs(UnmanagedType.LPUTF8Str)] string path, IntPtr resolved);
    [DllImport(Libc)] private static extern void free(IntPtr pointer);
    [DllImport(Libc, SetLastError = true)] private static extern int statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte[] buffer);
}
