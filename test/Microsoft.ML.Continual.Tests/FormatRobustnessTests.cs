using System.Diagnostics;
using System.IO.Compression;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

public class FormatRobustnessTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", name);

    [Fact]
    public void ModelOfTheFirstFormatVersion_StillLoads_AndScoresAsItDidWhenSaved()
    {
        var ml = new MLContext(seed: 1);
        var model = ml.Continual().LoadModel(Fixture("model-format-0x00010001.zip"), out _);
        var continual = ContinualCatalog.FindContinual(model)!;
        Assert.Equal(0x00010001, continual.FormatVersion);
        Assert.Equal(("Ewc", 2), (continual.TrainerName, continual.TasksSeen));
        // Scores of the fixture's own probe rows, saved when the fixture was made (Program.cs "fixture") on another machine:
        // libtorch's kernels differ by CPU, so they are compared within the cross-machine tolerance, not bit for bit.
        float[] expected = new float[new FileInfo(Fixture("model-format-0x00010001.scores.bin")).Length / sizeof(float)];
        Buffer.BlockCopy(File.ReadAllBytes(Fixture("model-format-0x00010001.scores.bin")), 0, expected, 0, expected.Length * sizeof(float));
        TestData.AssertClose(expected, TestData.Scores(model, TestData.View(ml, 1, [0, 1, 2, 3], 40, 3)));
        // And it continues: a refit of the old file works.
        var next = ContinualCatalog.FindContinual(ml.Continual().Refit(model, TestData.View(ml, 2, [0, 4], 60, 4)))!;
        Assert.Equal(3, next.TasksSeen);
    }

    /// <summary>
    /// 10,000 damaged copies of a real model (bytes flipped, runs overwritten, truncated, extended, zip entries emptied or
    /// swapped for random bytes): loading each either succeeds or throws <see cref="ContinualModelFormatException"/>, and
    /// never hangs, crashes or allocates without bound.
    /// </summary>
    [Fact]
    public async Task TenThousandDamagedModels_OnlyGiveTheLibrarysFormatError()
    {
        byte[] original = File.ReadAllBytes(Fixture("model-format-0x00010001.zip"));
        var entries = ZipEntries(original);
        var ml = new MLContext(seed: 1);
        var random = new Random(2026);
        var outcomes = new Dictionary<string, int>();
        var clock = Stopwatch.StartNew();
        const int Count = 10_000;
        for (int i = 0; i < Count; i++)
        {
            byte[] damaged = Damage(original, entries, random, i % 6);
            try
            {
                var load = Task.Run(() =>
                {
                    using var stream = new MemoryStream(damaged, writable: false);
                    ml.Continual().LoadModel(stream, out _);
                });
                if (await Task.WhenAny(load, Task.Delay(TimeSpan.FromSeconds(10))) != load)
                {
                    File.WriteAllBytes(Path.Combine(Path.GetTempPath(), $"continual-fuzz-hang-{i}.zip"), damaged);
                    throw new Xunit.Sdk.XunitException($"Damaged model {i} (kind {i % 6}) did not load or fail within 10 s.");
                }
                await load;
                outcomes["loaded"] = outcomes.GetValueOrDefault("loaded") + 1;
            }
            catch (ContinualModelFormatException)
            {
                outcomes["format error"] = outcomes.GetValueOrDefault("format error") + 1;
            }
            catch (Exception e)
            {
                File.WriteAllBytes(Path.Combine(Path.GetTempPath(), $"continual-fuzz-{i}.zip"), damaged);
                throw new Xunit.Sdk.XunitException($"Damaged model {i} (kind {i % 6}) gave {e.GetType().FullName}: {e.Message}");
            }
        }
        output.WriteLine($"{Count} damaged models in {clock.Elapsed.TotalSeconds:F1} s: {string.Join(", ", outcomes.Select(kv => $"{kv.Key} {kv.Value}"))}");
        Assert.True(outcomes.GetValueOrDefault("format error") > Count / 2);
    }

    [Fact]
    public async Task AThousandDamagedTreeModels_OnlyGiveTheLibrarysFormatError()
    {
        var ml = new MLContext(seed: 1);
        var (pipeline, first) = TreesTests.Trees(ml, Trees.ContinualBoostingMode.AddRounds, memorySize: 50);
        var model = ml.Continual().Refit(pipeline.Fit(first), TreesTests.Period(ml, 1, 500));
        byte[] original;
        using (var stream = new MemoryStream()) { ml.Model.Save(model, first.Schema, stream); original = stream.ToArray(); }
        var entries = ZipEntries(original);
        var random = new Random(2027);
        var outcomes = new Dictionary<string, int>();
        var probe = TreesTests.Period(ml, 8, 20);
        const int Count = 1_000;
        for (int i = 0; i < Count; i++)
        {
            // Half of the cases damage an entry's content past the zip checks (kind 5): the entries' hashes and checks meet it.
            int kind = i % 2 == 0 ? 5 : random.Next(5);
            byte[] damaged = Damage(original, entries, random, kind);
            try
            {
                var load = Task.Run(() =>
                {
                    using var stream = new MemoryStream(damaged, writable: false);
                    var loaded = ml.Continual().LoadModel(stream, out _);
                    _ = loaded.Transform(probe).Preview(20); // a model that loads must score
                });
                if (await Task.WhenAny(load, Task.Delay(TimeSpan.FromSeconds(10))) != load)
                {
                    File.WriteAllBytes(Path.Combine(Path.GetTempPath(), $"continual-trees-fuzz-hang-{i}.zip"), damaged);
                    throw new Xunit.Sdk.XunitException($"Damaged trees model {i} (kind {kind}) did not load or fail within 10 s.");
                }
                await load;
                outcomes["loaded and scored"] = outcomes.GetValueOrDefault("loaded and scored") + 1;
            }
            catch (ContinualModelFormatException)
            {
                outcomes["format error"] = outcomes.GetValueOrDefault("format error") + 1;
            }
            catch (ContinualDataException)
            {
                outcomes["data refused"] = outcomes.GetValueOrDefault("data refused") + 1; // a damaged schema asking for other columns
            }
            catch (Exception e)
            {
                File.WriteAllBytes(Path.Combine(Path.GetTempPath(), $"continual-trees-fuzz-{i}.zip"), damaged);
                throw new Xunit.Sdk.XunitException($"Damaged trees model {i} (kind {kind}) gave {e.GetType().FullName}: {e.Message}");
            }
        }
        output.WriteLine($"{Count} damaged tree models: {string.Join(", ", outcomes.Select(kv => $"{kv.Key} {kv.Value}"))}");
        Assert.True(outcomes.GetValueOrDefault("format error") > Count / 2);
    }

    private static List<(string Name, int Offset, int Length)> ZipEntries(byte[] zip)
    {
        // Each entry's compressed data range, from the local headers (signature 0x04034b50).
        var list = new List<(string, int, int)>();
        using var archive = new ZipArchive(new MemoryStream(zip), ZipArchiveMode.Read);
        for (int at = 0; at + 30 < zip.Length; at++)
        {
            if (BitConverter.ToUInt32(zip, at) != 0x04034b50) continue;
            int compressed = BitConverter.ToInt32(zip, at + 18), nameLength = BitConverter.ToUInt16(zip, at + 26), extra = BitConverter.ToUInt16(zip, at + 28);
            string name = System.Text.Encoding.UTF8.GetString(zip, at + 30, nameLength);
            int data = at + 30 + nameLength + extra;
            if (compressed > 0 && data + compressed <= zip.Length) list.Add((name, data, compressed));
        }
        Assert.Equal(archive.Entries.Count, list.Count);
        return list;
    }

    private static byte[] Damage(byte[] original, List<(string Name, int Offset, int Length)> entries, Random random, int kind)
    {
        byte[] data = (byte[])original.Clone();
        switch (kind)
        {
            case 0: // a few random bytes flipped anywhere
                for (int k = 1 + random.Next(8); k > 0; k--) data[random.Next(data.Length)] ^= (byte)(1 + random.Next(255));
                return data;
            case 1: // truncated
                return data[..random.Next(data.Length)];
            case 2: // a run of random bytes inside one entry's compressed data
            {
                var (_, offset, length) = entries[random.Next(entries.Count)];
                int start = offset + random.Next(length), run = Math.Min(1 + random.Next(64), offset + length - start);
                random.NextBytes(data.AsSpan(start, run));
                return data;
            }
            case 3: // extended with garbage
            {
                var longer = new byte[data.Length + 1 + random.Next(4096)];
                data.CopyTo(longer, 0);
                random.NextBytes(longer.AsSpan(data.Length));
                return longer;
            }
            case 4: // one entry rewritten uncompressed with random content of random length (a valid zip, a foreign entry)
            {
                using var source = new ZipArchive(new MemoryStream(original), ZipArchiveMode.Read);
                var target = new MemoryStream();
                string victim = source.Entries[random.Next(source.Entries.Count)].FullName;
                using (var zip = new ZipArchive(target, ZipArchiveMode.Create, leaveOpen: true))
                    foreach (var entry in source.Entries)
                    {
                        using var write = zip.CreateEntry(entry.FullName, CompressionLevel.NoCompression).Open();
                        if (entry.FullName != victim) { using var read = entry.Open(); read.CopyTo(write); }
                        else { var junk = new byte[random.Next(0, 200)]; random.NextBytes(junk); write.Write(junk); }
                    }
                return target.ToArray();
            }
            default: // one entry's content with bytes flipped, rezipped (so the damage reaches the readers past the zip checks)
            {
                using var source = new ZipArchive(new MemoryStream(original), ZipArchiveMode.Read);
                var target = new MemoryStream();
                // Past the zip checks only this library's readers are under test: ML.NET 5.0.1's own transforms read their
                // arrays with Utils.ReadBinaryDataIntoSpan, which loops forever when a damaged count runs past the end of
                // the entry (found by this test in a normalizer's Model.key; an open defect of ML.NET, in docs/architecture.md).
                string folder = source.Entries.Select(e => e.FullName).First(n => n.EndsWith("/Trees.txt", StringComparison.Ordinal) || n.EndsWith("/Network.bin", StringComparison.Ordinal));
                folder = folder[..(folder.LastIndexOf('/') + 1)];
                var ours = source.Entries.Where(e => e.FullName == "Schema" || e.FullName.StartsWith(folder, StringComparison.Ordinal)).ToList();
                string victim = ours[random.Next(ours.Count)].FullName;
                using (var zip = new ZipArchive(target, ZipArchiveMode.Create, leaveOpen: true))
                    foreach (var entry in source.Entries)
                    {
                        using var read = entry.Open();
                        var content = new MemoryStream();
                        read.CopyTo(content);
                        byte[] bytes = content.ToArray();
                        if (entry.FullName == victim && bytes.Length > 0)
                            for (int k = 1 + random.Next(4); k > 0; k--) bytes[random.Next(bytes.Length)] ^= (byte)(1 + random.Next(255));
                        using var write = zip.CreateEntry(entry.FullName, CompressionLevel.Fastest).Open();
                        write.Write(bytes);
                    }
                return target.ToArray();
            }
        }
    }
}
