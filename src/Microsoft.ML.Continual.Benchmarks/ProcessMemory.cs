/// <summary>The process's resident memory on Linux, from /proc/self/status; the peak (VmHWM) can be reset, so each
/// measured phase gets its own peak.</summary>
internal static class ProcessMemory
{
    public static long ResidentBytes() => StatusKilobytes("VmRSS:") * 1024;

    public static long PeakResidentBytes() => StatusKilobytes("VmHWM:") * 1024;

    /// <summary>Sets the peak to the current resident size (writing 5 to clear_refs).</summary>
    public static void ResetPeak() => File.WriteAllText("/proc/self/clear_refs", "5");

    /// <summary>Another process's peak resident memory (VmHWM), or null once it has exited.</summary>
    public static long? PeakResidentBytes(int processId)
    {
        try
        {
            return StatusKilobytes("VmHWM:", $"/proc/{processId}/status") * 1024;
        }
        catch (Exception e) when (e is IOException or InvalidOperationException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static long StatusKilobytes(string field, string status = "/proc/self/status") =>
        long.Parse(File.ReadLines(status).First(l => l.StartsWith(field, StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
}
