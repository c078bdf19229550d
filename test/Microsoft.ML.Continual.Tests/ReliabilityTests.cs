using System.IO.Compression;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

/// <summary>No silent bad model, bounded loading of hostile files, reproducible concurrent fits.</summary>
public class ReliabilityTests(Xunit.Abstractions.ITestOutputHelper output)
{
    // ---- a fit that diverges fails, and nothing changes ----

    private sealed class Regression
    {
        [Microsoft.ML.Data.VectorType(3)] public float[] Features { get; set; } = [];
        public float Label { get; set; }
    }

    private static IDataView RegressionTask(MLContext ml, float scale) =>
        ml.Data.LoadFromEnumerable(Enumerable.Range(0, 200).Select(i => new Regression
        {
            Features = [i % 7 / 7f, i % 5 / 5f, i % 3 / 3f], Label = scale * (1 + i % 11),
        }));

    [Theory]
    [InlineData(ContinualOptimizer.Sgd, 1e20f)]   // the loss overflows float after a few steps, then NaN
    [InlineData(ContinualOptimizer.Adam, 3e37f)]  // labels up to 3.3e38: the squared loss is infinite from the first step
    public void ADivergedFit_FailsWithWhereAndWhat_AndLeavesThePreviousModelAlone(ContinualOptimizer optimizer, float scale)
    {
        var ml = new MLContext(seed: 1);
        var trainer = ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options { Optimizer = optimizer, LearningRate = 0.1, HiddenLayerSizes = [8], NumberOfEpochs = 3 });
        var good = trainer.Fit(RegressionTask(ml, 1));
        byte[] before = TestData.Bytes(TestData.Scores(good, RegressionTask(ml, 1)));
        var e = Assert.Throws<ContinualTrainingException>(() => trainer.Fit(RegressionTask(ml, scale), good));
        output.WriteLine(e.Message);
        Assert.Equal(1, e.TaskIndex);
        Assert.Contains("Training diverged in task 2", e.Message);
        Assert.Contains("Nothing was written", e.Message);
        Assert.True(e.What.Contains("loss") || e.What.Contains("trunks") || e.What.Contains("heads"), e.What);
        Assert.Equal(before, TestData.Bytes(TestData.Scores(good, RegressionTask(ml, 1))));
        Assert.Throws<ContinualTrainingException>(() => trainer.Fit(RegressionTask(ml, scale)));
    }

    // ---- bounded loading ----

    private static byte[] SmallModel(MLContext ml, int[]? hidden = null)
    {
        var data = TestData.View(ml, 0, [0, 1, 2], 60, 1);
        var model = ml.Continual().Trainers.Replay(new ReplayTrainer.Options { HiddenLayerSizes = hidden ?? [37, 41], NumberOfEpochs = 1, MemorySize = 20 }).Fit(data);
        using var stream = new MemoryStream();
        ml.Model.Save(model, data.Schema, stream);
        return stream.ToArray();
    }

    internal static Dictionary<string, byte[]> Entries(byte[] zip)
    {
        using var archive = new ZipArchive(new MemoryStream(zip), ZipArchiveMode.Read);
        return archive.Entries.ToDictionary(e => e.FullName, e => { using var s = e.Open(); var m = new MemoryStream(); s.CopyTo(m); return m.ToArray(); });
    }

    internal static byte[] Zip(IEnumerable<KeyValuePair<string, byte[]>> entries, CompressionLevel level = CompressionLevel.Optimal)
    {
        var target = new MemoryStream();
        using (var zip = new ZipArchive(target, ZipArchiveMode.Create, leaveOpen: true))
            foreach (var (name, bytes) in entries)
            {
                using var write = zip.CreateEntry(name, level).Open();
                write.Write(bytes);
            }
        return target.ToArray();
    }

    private static ContinualModelFormatException Refused(MLContext ml, byte[] zip) =>
        Assert.Throws<ContinualModelFormatException>(() => ml.Continual().LoadModel(new MemoryStream(zip), out _));

    [Fact]
    public void AZipBomb_IsRefusedBeforeAnythingIsExtracted()
    {
        var ml = new MLContext(seed: 1);
        var entries = Entries(SmallModel(ml));
        // 1.5 GB of zeros in one entry: a 1.5 MB file.
        var bomb = new MemoryStream();
        using (var zip = new ZipArchive(bomb, ZipArchiveMode.Create, leaveOpen: true))
        {
            foreach (var (name, bytes) in entries.Where(e => !e.Key.EndsWith("Network.bin")))
            {
                using var w = zip.CreateEntry(name).Open();
                w.Write(bytes);
            }
            using var network = zip.CreateEntry(entries.Keys.Single(k => k.EndsWith("Network.bin")), CompressionLevel.SmallestSize).Open();
            network.Write(entries.Single(e => e.Key.EndsWith("Network.bin")).Value);
            var zeros = new byte[1 << 20];
            for (int i = 0; i < 1536; i++) network.Write(zeros);
        }
        long before = Environment.WorkingSet;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var e = Refused(ml, bomb.ToArray());
        output.WriteLine($"{bomb.Length:N0}-byte bomb refused in {clock.ElapsedMilliseconds} ms: {e.Message}");
        Assert.Contains("more than the", e.Message);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5));
        Assert.True(Environment.WorkingSet - before < 256L << 20, $"{(Environment.WorkingSet - before) >> 20} MB more");
    }

    [Fact]
    public void AnEntryThatInflatesBeyondItsDeclaredSize_IsRefused()
    {
        var ml = new MLContext(seed: 1);
        var entries = Entries(SmallModel(ml));
        string network = entries.Keys.Single(k => k.EndsWith("Network.bin"));
        var bytes = entries[network].Concat(new byte[4 << 20]).ToArray();
        byte[] zip = Zip(entries.Select(kv => kv.Key == network ? new KeyValuePair<string, byte[]>(network, bytes) : kv));
        // Patch the entry's declared (uncompressed) size in its local header and in the central directory to 1 KB.
        var names = System.Text.Encoding.UTF8.GetBytes(network);
        for (int at = 0; at + 46 < zip.Length; at++)
        {
            uint signature = BitConverter.ToUInt32(zip, at);
            if (signature == 0x04034b50 && zip.AsSpan(at + 30, names.Length).SequenceEqual(names)) BitConverter.GetBytes(1024).CopyTo(zip, at + 22);
            if (signature == 0x02014b50 && zip.AsSpan(at + 46, names.Length).SequenceEqual(names)) BitConverter.GetBytes(1024).CopyTo(zip, at + 24);
        }
        // The zip reader stops at the declared size, so what is extracted is bounded by it; the weights then do not fit.
        var e = Refused(ml, zip);
        Assert.True(e.Message.Contains("inflates to more than the 1,024 bytes it declares") || e.Message.Contains("(1,024 bytes) holds at most"), e.Message);
    }

    [Theory]
    [InlineData("../../escape.bin")]
    [InlineData("/etc/escape.bin")]
    [InlineData("TransformerChain/../../x")]
    [InlineData("C:\\windows\\x")]
    public void AnEntryNameOutsideTheModel_IsRefused(string name)
    {
        var ml = new MLContext(seed: 1);
        var entries = Entries(SmallModel(ml)).ToList();
        entries.Add(new(name, [1, 2, 3]));
        Assert.Contains("is not a relative path inside the model", Refused(ml, Zip(entries)).Message);
    }

    [Fact]
    public void AModelKeyNamingAnotherAssembly_IsRefusedByName_AndThatAssemblyIsNotLoaded()
    {
        var ml = new MLContext(seed: 1);
        var entries = Entries(SmallModel(ml));
        string key = entries.Keys.Single(k => k.EndsWith("Model.key"));
        byte[] header = entries[key];
        long at = BitConverter.ToInt64(header, 0x90);
        uint length = BitConverter.ToUInt32(header, 0x98);
        string stored = System.Text.Encoding.Unicode.GetString(header, (int)at, (int)length);
        Assert.StartsWith("Microsoft.ML.Continual,", stored);
        // An assembly the app ships (the framework's), never loaded here; a shorter name, so the header stays in bounds.
        const string victim = "System.Net.Mail";
        Assert.DoesNotContain(AppDomain.CurrentDomain.GetAssemblies(), a => a.GetName().Name == victim);
        System.Text.Encoding.Unicode.GetBytes(victim).CopyTo(header, (int)at);
        BitConverter.GetBytes((uint)(victim.Length * 2)).CopyTo(header, 0x98);
        var e = Refused(ml, Zip(entries));
        Assert.Contains($"asks for loader assembly '{victim}", e.Message);
        Assert.DoesNotContain(AppDomain.CurrentDomain.GetAssemblies(), a => a.GetName().Name == victim);
    }

    [Fact]
    public void HeaderSizesAskingForGigabytes_AreRefusedBeforeTheNetworkIsMade()
    {
        var ml = new MLContext(seed: 1);
        var entries = Entries(SmallModel(ml, [37, 41]));
        string key = entries.Keys.Single(k => k.EndsWith("Model.key"));
        byte[] header = entries[key];
        // The network shape's hidden sizes: count 2, then 37, 41.
        byte[] sizes = [.. BitConverter.GetBytes(2), .. BitConverter.GetBytes(37), .. BitConverter.GetBytes(41)];
        int at = Enumerable.Range(0, header.Length - sizes.Length).Single(i => header.AsSpan(i, sizes.Length).SequenceEqual(sizes));
        BitConverter.GetBytes(1 << 20).CopyTo(header, at + 4);
        BitConverter.GetBytes(1 << 20).CopyTo(header, at + 8);
        long before = Environment.WorkingSet;
        var e = Refused(ml, Zip(entries));
        output.WriteLine(e.Message);
        Assert.Contains("parameters", e.Message);
        Assert.Contains("holds at most", e.Message);
        Assert.True(Environment.WorkingSet - before < 256L << 20);
    }

    [Fact]
    public void ATruncatedWeightsEntry_SaysWhichEntryAndWhy()
    {
        var ml = new MLContext(seed: 1);
        var entries = Entries(SmallModel(ml));
        string network = entries.Keys.Single(k => k.EndsWith("Network.bin"));
        entries[network] = entries[network][..(entries[network].Length - 100)];
        var e = Refused(ml, Zip(entries));
        Assert.Contains("Network.bin", e.Message);
        Assert.Contains("truncated", e.Message);
        Assert.DoesNotContain("target of an invocation", e.Message);
        entries = Entries(SmallModel(ml));
        entries[network] = [.. entries[network], 0, 0, 0, 0];
        Assert.Contains("bytes after its end", Refused(ml, Zip(entries)).Message);
    }

    [Fact]
    public void AStreamThatCannotSeek_GetsTheSameChecks()
    {
        var ml = new MLContext(seed: 1);
        byte[] model = SmallModel(ml);
        var loaded = ml.Continual().LoadModel(new ForwardOnlyStream(model), out _);
        Assert.NotNull(ContinualCatalog.FindContinual(loaded));
        var entries = Entries(model);
        entries["Schema"] = entries["Schema"][..300];
        var e = Assert.Throws<ContinualModelFormatException>(() => ml.Continual().LoadModel(new ForwardOnlyStream(Zip(entries)), out _));
        Assert.Contains("'Schema' entry is damaged", e.Message);
    }

    private sealed class ForwardOnlyStream(byte[] bytes) : Stream
    {
        private readonly MemoryStream _inner = new(bytes);
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => _inner.Read(buffer, offset, count);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    // ---- reproducibility of concurrent fits ----

    [Fact]
    public async Task ConcurrentSameSeedFits_WithDropout_EqualSequentialOnes_BitForBit()
    {
        var ml = new MLContext(seed: 1);
        var task1 = TestData.View(ml, 0, [0, 1, 2], 400, 1);
        var task2 = TestData.View(ml, 1, [3, 4], 400, 2);
        var probe = TestData.View(ml, 0, [0, 1, 2, 3, 4], 200, 9);
        byte[] Fit(string trainer)
        {
            var options = new Dictionary<string, string> { ["HiddenLayerSizes"] = "32,32", ["Dropout"] = "0.3", ["NumberOfEpochs"] = "3", ["BatchSize"] = "16", ["Seed"] = "5" };
            if (trainer == "Replay") options["MemorySize"] = "100";
            var model = ml.Continual().Trainers.Create(trainer, options).Fit(task1);
            return TestData.Bytes(TestData.Scores(ml.Continual().Refit(model, task2), probe));
        }
        string[] trainers = ["FineTune", "Replay", "Ewc", "FineTune"];
        var sequential = trainers.Select(Fit).ToArray();
        for (int round = 0; round < 3; round++)
        {
            var concurrent = await Task.WhenAll(trainers.Select(t => Task.Run(() => Fit(t))));
            for (int i = 0; i < trainers.Length; i++) Assert.Equal(sequential[i], concurrent[i]);
        }
        Assert.NotEqual(sequential[0], sequential[1]); // the test can fail: the methods differ
    }
}
