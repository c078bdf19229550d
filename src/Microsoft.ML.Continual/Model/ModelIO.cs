namespace Microsoft.ML.Continual;

/// <summary>Small helpers for the model's binary format: bounded counts, so a corrupted file cannot ask for a huge allocation.</summary>
internal static class ModelIO
{
    /// <summary>Upper bound on any element count stored in a model (2^28, far above any real model's needs).</summary>
    public const int MaxCount = 1 << 28;

    public static int ReadCount(BinaryReader r, string what)
    {
        int n = r.ReadInt32();
        if (n < 0 || n > MaxCount) throw new ContinualModelFormatException($"The {what} count {n} is out of range (0..{MaxCount}).");
        return n;
    }

    public static int[] ReadInts(BinaryReader r, string what)
    {
        int n = ReadCount(r, what);
        if (r.BaseStream.CanSeek && n * 4L > r.BaseStream.Length - r.BaseStream.Position)
            throw new ContinualModelFormatException($"The {what} count {n} is more than the entry holds.");
        var a = new int[n];
        for (int i = 0; i < n; i++) a[i] = r.ReadInt32();
        return a;
    }

    public static void WriteInts(BinaryWriter w, IReadOnlyCollection<int> values)
    {
        w.Write(values.Count);
        foreach (int v in values) w.Write(v);
    }
}
