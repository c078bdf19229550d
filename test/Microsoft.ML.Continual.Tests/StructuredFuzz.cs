using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

/// <summary>
/// A structured fuzzer for model files: it walks each entry of real models with the format's own layout (ML.NET's
/// <c>Model.key</c> header, the continual model's header, <c>Network.bin</c>, every plugin's state store) and mutates
/// every size and count field, every entry name, the loader signature and assembly of each <c>Model.key</c>, and adds zip
/// bombs. Each case must load and score, or fail with <see cref="ContinualModelFormatException"/>, within a time limit; the
/// run happens in a child process whose peak resident memory is reported.
/// </summary>
internal static class StructuredFuzz
{
    /// <summary>A field of an entry: where it starts, how many bytes (1 for a string's length prefix, 4, 8), what it is.</summary>
    internal sealed record Field(string Entry, int Offset, int Size, string What);

    public sealed record Summary(int Cases, Dictionary<string, int> Outcomes, double MaxCaseSeconds, long PeakBytesBefore, long PeakBytesAfter, long LargestFileBytes, List<string> Failures);

    /// <summary>Runs every case over the models made here; writes the summary as JSON.</summary>
    public static void Run(string summaryPath)
    {
        var ml = new MLContext(seed: 1);
        var models = Models(ml);
        foreach (var m in models.Values) ml.Continual().LoadModel(new MemoryStream(m), out _); // warm up: natives, JIT
        long peakBefore = PeakResidentBytes();
        var outcomes = new Dictionary<string, int>();
        var failures = new List<string>();
        double maxSeconds = 0;
        int cases = 0;
        foreach (var (model, zip) in models)
            foreach (var (name, mutated) in Cases(zip))
            {
                cases++;
                // A loaded network's weights are native (libtorch) memory that only the finalizers of garbage tensors free,
                // and the GC does not see it: how much piles up between collections depends on the machine (its gen-0
                // budget follows the CPU's cache; 68 MB on one machine, 187 MB on another, with no case above 4 MB).
                // Collecting before every case measures what loading holds, not how lazy the collector is (28–35 MB of growth in all, measured).
                GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
                var clock = Stopwatch.StartNew();
                string outcome = Try(ml, mutated);
                maxSeconds = Math.Max(maxSeconds, clock.Elapsed.TotalSeconds);
                outcomes[outcome.StartsWith("failure") ? "failure" : outcome] = outcomes.GetValueOrDefault(outcome.StartsWith("failure") ? "failure" : outcome) + 1;
                if (outcome.StartsWith("failure") && failures.Count < 20) failures.Add($"{model} {name}: {outcome}");
            }
        var summary = new Summary(cases, outcomes, maxSeconds, peakBefore, PeakResidentBytes(), models.Values.Max(m => m.LongLength), failures);
        File.WriteAllText(summaryPath, JsonSerializer.Serialize(summary));
    }

    private static string Try(MLContext ml, byte[] zip)
    {
        try
        {
            var loaded = ml.Continual().LoadModel(new MemoryStream(zip, writable: false), out _);
            var probe = TestData.View(ml, 0, [0, 1, 2], 20, 5);
            var scores = loaded.Transform(probe).Preview(20); // a loaded model must score
            return "loaded and scored";
        }
        catch (ContinualModelFormatException) { return "format error"; }
        catch (ContinualDataException) { return "loaded, data refused"; } // a mutated model that asks for other columns
        catch (Exception e) { return $"failure {e.GetType().Name}: {e.Message}"; }
    }

    /// <summary>Models with every kind of entry: plugin stores with memories and terms, int16 owners, a generator, the first format.</summary>
    private static Dictionary<string, byte[]> Models(MLContext ml)
    {
        var data = TestData.View(ml, 0, [0, 1, 2], 60, 1);
        var withTask = TestData.View(ml, 0, [0, 1, 2], 60, 1);
        byte[] Save(ITransformer model)
        {
            using var stream = new MemoryStream();
            ml.Model.Save(model, data.Schema, stream);
            return stream.ToArray();
        }
        return new Dictionary<string, byte[]>
        {
            ["replay+ewc"] = Save(ml.Continual().Trainers.Replay(new ReplayTrainer.Options { HiddenLayerSizes = [6], NumberOfEpochs = 1, MemorySize = 10, Regularization = ReplayRegularization.OnlineEwc }).Fit(data)),
            ["packnet"] = Save(ml.Continual().Trainers.PackNet(new PackNetTrainer.Options { HiddenLayerSizes = [6], NumberOfEpochs = 1, RetrainEpochs = 0, TaskIdColumnName = "Task" }).Fit(withTask)),
            ["generative"] = Save(ml.Continual().Trainers.GenerativeReplay(new GenerativeReplayTrainer.Options { HiddenLayerSizes = [6], NumberOfEpochs = 1, GeneratorHiddenSize = 5, LatentSize = 3 }).Fit(data)),
            ["first format"] = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Fixtures", "model-format-0x00010001.zip")),
        };
    }

    private static IEnumerable<(string Name, byte[] Zip)> Cases(byte[] zip)
    {
        var entries = ReliabilityTests.Entries(zip);
        foreach (var field in entries.SelectMany(e => Fields(e.Key, e.Value)))
            foreach (long value in Values(field, entries[field.Entry]))
            {
                var copy = entries.ToDictionary(e => e.Key, e => (byte[])e.Value.Clone());
                byte[] bytes = copy[field.Entry];
                switch (field.Size)
                {
                    case 1: bytes[field.Offset] = (byte)value; break;
                    case 4: BitConverter.GetBytes((int)value).CopyTo(bytes, field.Offset); break;
                    default: BitConverter.GetBytes(value).CopyTo(bytes, field.Offset); break;
                }
                yield return ($"{field.Entry}@{field.Offset} {field.What} = {value}", ReliabilityTests.Zip(copy));
            }
        foreach (var (name, mutated) in NameCases(entries)) yield return (name, ReliabilityTests.Zip(mutated));
        foreach (var (name, mutated) in HeaderCases(entries)) yield return (name, ReliabilityTests.Zip(mutated));
        yield return ("bomb: 600 MB of zeros in a new entry", Bomb(entries, "TransformerChain/Extra.bin", 600));
        yield return ("bomb: 600 MB of zeros after the weights", Bomb(entries, entries.Keys.Single(k => k.EndsWith("Network.bin")), 600));
    }

    private static IEnumerable<long> Values(Field field, byte[] entry)
    {
        long original = field.Size switch { 1 => entry[field.Offset], 4 => BitConverter.ToInt32(entry, field.Offset), _ => BitConverter.ToInt64(entry, field.Offset) };
        var values = field.Size switch
        {
            1 => new long[] { 0, 0x7F, 0xFF, original + 1 },
            4 => [0, -1, 1, int.MaxValue, 1 << 28, original + 1, original * 1000],
            _ => [0, -1, long.MaxValue, 1L << 40, original + 1],
        };
        return values.Where(v => v != original).Distinct();
    }

    private static IEnumerable<(string, Dictionary<string, byte[]>)> NameCases(Dictionary<string, byte[]> entries)
    {
        foreach (string name in entries.Keys)
        {
            var without = new Dictionary<string, byte[]>(entries);
            without.Remove(name);
            yield return ($"entry {name} removed", without);
            foreach (string other in new[] { name + "x", name.Replace("Plugin0", "Plugin1"), name.Replace("Replay", "Ewc"), "TransformerChain/../" + name, name.ToUpperInvariant() })
            {
                if (other == name || entries.ContainsKey(other)) continue;
                var renamed = entries.ToDictionary(e => e.Key == name ? other : e.Key, e => e.Value);
                yield return ($"entry {name} renamed {other}", renamed);
            }
        }
    }

    private static IEnumerable<(string, Dictionary<string, byte[]>)> HeaderCases(Dictionary<string, byte[]> entries)
    {
        foreach (string key in entries.Keys.Where(k => k.EndsWith("Model.key")))
        {
            foreach (string signature in new[] { "", "TransformerChain", "BinaryLoader", "ContinualTransformeR", "\u0001\u0002" })
            {
                var copy = entries.ToDictionary(e => e.Key, e => (byte[])e.Value.Clone());
                Array.Clear(copy[key], 0x50, 24);
                Encoding.ASCII.GetBytes(signature).CopyTo(copy[key], 0x50);
                yield return ($"{key} loader signature '{signature}'", copy);
            }
            foreach (string assembly in new[] { "System.Net.Mail", "Microsoft.ML.Continual.Tests", "Microsoft.ML.Data", "x" })
            {
                var copy = entries.ToDictionary(e => e.Key, e => (byte[])e.Value.Clone());
                long at = BitConverter.ToInt64(copy[key], 0x90);
                if (at <= 0 || at + assembly.Length * 2 > copy[key].Length) continue;
                Encoding.Unicode.GetBytes(assembly).CopyTo(copy[key], (int)at);
                BitConverter.GetBytes((uint)(assembly.Length * 2)).CopyTo(copy[key], 0x98);
                yield return ($"{key} loader assembly '{assembly}'", copy);
            }
        }
    }

    private static byte[] Bomb(Dictionary<string, byte[]> entries, string name, int megabytes)
    {
        var target = new MemoryStream();
        using (var zip = new ZipArchive(target, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (entry, bytes) in entries.Where(e => e.Key != name))
            {
                using var w = zip.CreateEntry(entry).Open();
                w.Write(bytes);
            }
            using var bomb = zip.CreateEntry(name, CompressionLevel.SmallestSize).Open();
            if (entries.TryGetValue(name, out var original)) bomb.Write(original);
            var zeros = new byte[1 << 20];
            for (int i = 0; i < megabytes; i++) bomb.Write(zeros);
        }
        return target.ToArray();
    }

    // ---- the layouts ----

    internal static IEnumerable<Field> Fields(string entry, byte[] bytes)
    {
        try
        {
            if (entry.EndsWith("Model.key")) return HeaderFields(entry, bytes);
            if (entry.EndsWith("Network.bin")) return NetworkFields(entry, bytes);
            if (Path.GetFileName(entry).StartsWith("Plugin")) return StoreFields(entry, bytes);
        }
        catch (Exception e) when (e is ArgumentOutOfRangeException or IndexOutOfRangeException or EndOfStreamException) { }
        return [];
    }

    private sealed class Walker(string entry, byte[] bytes, int start)
    {
        public int At = start;
        public readonly List<Field> Fields = new();
        public int Int32(string what) { Fields.Add(new(entry, At, 4, what)); At += 4; return BitConverter.ToInt32(bytes, At - 4); }
        public long Int64(string what) { Fields.Add(new(entry, At, 8, what)); At += 8; return BitConverter.ToInt64(bytes, At - 8); }
        public byte Byte(string what) { Fields.Add(new(entry, At, 1, what)); return bytes[At++]; }
        public void Skip(int count) => At += count;
        public string String(string what)
        {
            Fields.Add(new(entry, At, 1, what + " length"));
            int length = 0, shift = 0;
            byte b;
            do { b = bytes[At++]; length |= (b & 0x7F) << shift; shift += 7; } while ((b & 0x80) != 0);
            At += length;
            return Encoding.UTF8.GetString(bytes, At - length, length);
        }
        public void Strings(string what) { int n = Int32(what + " count"); for (int i = 0; i < n; i++) String(what); }
        public void Pairs(string what) { int n = Int32(what + " count"); for (int i = 0; i < n; i++) { String(what + " name"); String(what + " value"); } }
    }

    /// <summary>ML.NET's header fields, then the continual model's header (Internal/ModelFormat.cs).</summary>
    private static List<Field> HeaderFields(string entry, byte[] bytes)
    {
        var fields = new List<Field>();
        foreach (var (offset, size, what) in new[] { (0x08, 4, "VerWritten"), (0x10, 8, "FpModel"), (0x18, 8, "CbModel"), (0x20, 8, "FpStringTable"), (0x28, 8, "CbStringTable"),
            (0x30, 8, "FpStringChars"), (0x38, 8, "CbStringChars"), (0x48, 4, "ModelVerWritten"), (0x4C, 4, "ModelVerReadable"), (0x80, 8, "FpTail"), (0x88, 8, "FpLim"), (0x90, 8, "FpAssemblyName"), (0x98, 4, "CbAssemblyName") })
            fields.Add(new(entry, offset, size, what));
        var w = new Walker(entry, bytes, 0x100);
        int version = w.Int32("format version");
        w.String("trainer");
        w.Pairs("option");
        w.Int32("prediction kind");
        w.Int32("feature size");
        w.Byte("label kind");
        w.Skip(1); // multi-head
        w.Byte("task-id kind");
        w.Int32("tasks seen");
        w.Int64("rows seen");
        if (bytes[w.At++] != 0)
        {
            w.Byte("vocabulary kind");
            w.Int64("key count");
            w.Strings("key name");
            w.Strings("class text");
            int numbers = w.Int32("class number count");
            w.Skip(numbers * 8);
        }
        w.Strings("task id");
        int heads = w.Int32("head count");
        for (int h = 0; h < heads; h++) w.Skip(w.Int32("head class count"));
        w.Int32("input size");
        int hidden = w.Int32("hidden layer count");
        for (int i = 0; i < hidden; i++) w.Int32("hidden size");
        w.Int32("activation");
        w.Skip(4); // dropout
        w.Int32("output size");
        w.Int32("head count (shape)");
        w.Byte("columns");
        if (version >= 0x00010002)
        {
            w.String("backbone");
            w.Pairs("backbone setting");
            int plugins = w.Int32("plugin count");
            for (int p = 0; p < plugins; p++) { w.String("plugin name"); w.Pairs("plugin setting"); }
        }
        fields.AddRange(w.Fields);
        return fields;
    }

    private static List<Field> NetworkFields(string entry, byte[] bytes)
    {
        var w = new Walker(entry, bytes, 0);
        int count = w.Int32("parameter count");
        for (int i = 0; i < count; i++)
        {
            w.String("parameter name");
            int rank = w.Int32("rank");
            long elements = 1;
            for (int d = 0; d < rank; d++) elements *= w.Int64("dimension");
            w.Skip(checked((int)(elements * 4)));
        }
        return w.Fields;
    }

    private static List<Field> StoreFields(string entry, byte[] bytes)
    {
        var w = new Walker(entry, bytes, 0);
        w.Int32("store magic");
        w.Int32("store format");
        w.Int32("state version");
        int count = w.Int32("entry count");
        for (int i = 0; i < count; i++)
        {
            w.String("entry name");
            switch (w.Byte("entry kind"))
            {
                case 1:
                    byte type = w.Byte("element type");
                    int rank = w.Int32("rank");
                    long elements = 1;
                    for (int d = 0; d < rank; d++) elements *= w.Int64("dimension");
                    w.Skip(checked((int)(elements * (type is 2 or 4 ? 8 : type == 3 ? 2 : type is 6 or 7 ? 1 : 4))));
                    break;
                case 2: case 3: w.Int64("scalar"); break;
                case 4: w.String("text"); break;
                default: w.Skip(1); break;
            }
        }
        return w.Fields;
    }

    /// <summary>The process's peak resident set (VmHWM), in bytes.</summary>
    internal static long PeakResidentBytes()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        return 0;
    }
}

public class StructuredFuzzTests(Xunit.Abstractions.ITestOutputHelper output)
{
    [Fact]
    public void EverySizeCountNameAndLoaderField_Mutated_GivesAModelThatScoresOrTheFormatError_InBoundedMemoryAndTime()
    {
        using var temp = new TempFolder();
        Program.RunFresh("fuzz-structured", temp.File("summary.json"));
        var summary = JsonSerializer.Deserialize<StructuredFuzz.Summary>(File.ReadAllText(temp.File("summary.json")))!;
        output.WriteLine($"{summary.Cases} cases: {string.Join(", ", summary.Outcomes.Select(kv => $"{kv.Key} {kv.Value}"))}; slowest {summary.MaxCaseSeconds:F2} s; "
            + $"peak resident {summary.PeakBytesBefore >> 20} MB before the cases, {summary.PeakBytesAfter >> 20} MB after; largest base file {summary.LargestFileBytes:N0} bytes");
        Assert.Empty(summary.Failures);
        Assert.True(summary.Cases > 1000, $"{summary.Cases} cases");
        Assert.True(summary.Outcomes.GetValueOrDefault("format error") > summary.Cases / 2);
        Assert.True(summary.MaxCaseSeconds < 10, $"slowest case {summary.MaxCaseSeconds:F1} s");
        // The bound: twice the largest file plus 128 MB above what loading the intact models needed (the 600 MB bombs included;
        // the constant covers the harness's own heap growth over thousands of cases: 64 MB measured in all).
        long growth = summary.PeakBytesAfter - summary.PeakBytesBefore;
        Assert.True(growth <= 2 * summary.LargestFileBytes + (128L << 20), $"peak resident memory grew by {growth >> 20} MB");
    }
}
