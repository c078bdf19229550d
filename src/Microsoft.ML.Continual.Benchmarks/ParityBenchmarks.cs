using System.IO.Compression;
using System.Security.Cryptography;
using Microsoft.ML;
using Microsoft.ML.Continual;
using Microsoft.ML.Data;

/// <summary>
/// Bit-for-bit parity between two builds of the library: every trainer (with and without dropout, composed with a
/// regularizer, task-incremental or not) trains three small Permuted MNIST tasks with a fixed seed; the network weights
/// (the <c>Network.bin</c> entry of each saved model) and the scores on a probe set are written out, and a second run
/// with <c>--compare</c> reports, per trainer and task, whether they are the same bytes (and the largest difference when not).
/// Used to prove that a refactoring of the loop changes no result on the same machine.
/// </summary>
internal static class ParityBenchmarks
{
    private static IEnumerable<(string Name, Func<MLContext, IEstimator<ITransformer>> Trainer, bool TaskIds)> Trainers()
    {
        T O<T>(T o, bool taskIds = false, float dropout = 0) where T : ContinualTrainerOptions
        {
            o.HiddenLayerSizes = [32, 32];
            o.NumberOfEpochs = 2;
            o.BatchSize = 64;
            o.Dropout = dropout;
            o.Seed = 7;
            if (taskIds) o.TaskIdColumnName = "TaskId";
            return o;
        }
        yield return ("FineTune", ml => ml.Continual().Trainers.FineTune(O(new FineTuneTrainer.Options())), false);
        yield return ("FineTune-dropout", ml => ml.Continual().Trainers.FineTune(O(new FineTuneTrainer.Options(), dropout: 0.2f)), false);
        yield return ("FineTune-sgd-taskid", ml => ml.Continual().Trainers.FineTune(O(new FineTuneTrainer.Options { Optimizer = ContinualOptimizer.SgdMomentum, LearningRate = 0.05 }, taskIds: true)), true);
        yield return ("L2", ml => ml.Continual().Trainers.L2(O(new L2Trainer.Options())), false);
        yield return ("Ewc", ml => ml.Continual().Trainers.Ewc(O(new EwcTrainer.Options())), false);
        yield return ("Ewc-online-sampled", ml => ml.Continual().Trainers.Ewc(O(new EwcTrainer.Options { Mode = EwcMode.Online, FisherLabels = FisherLabels.Sampled, FisherSamples = 200 })), false);
        yield return ("Si", ml => ml.Continual().Trainers.Si(O(new SiTrainer.Options())), false);
        yield return ("Mas", ml => ml.Continual().Trainers.Mas(O(new MasTrainer.Options { ImportanceSamples = 200 })), false);
        yield return ("RWalk", ml => ml.Continual().Trainers.RWalk(O(new RWalkTrainer.Options())), false);
        yield return ("Scp", ml => ml.Continual().Trainers.Scp(O(new ScpTrainer.Options { ImportanceSamples = 100, Projections = 20 })), false);
        yield return ("Gem", ml => ml.Continual().Trainers.Gem(O(new GemTrainer.Options { MemoriesPerTask = 64 })), false);
        yield return ("AGem", ml => ml.Continual().Trainers.AGem(O(new AGemTrainer.Options { MemorySize = 300, ReferenceSampleSize = 64 })), false);
        yield return ("Replay", ml => ml.Continual().Trainers.Replay(O(new ReplayTrainer.Options { MemorySize = 300 })), false);
        yield return ("Replay-herding-ewc-dropout", ml => ml.Continual().Trainers.Replay(O(new ReplayTrainer.Options
            { MemorySize = 300, BufferPolicy = ReplayBufferPolicy.ClassBalanced, Selection = ExemplarSelection.Herding, Regularization = ReplayRegularization.OnlineEwc }, dropout: 0.1f)), false);
        yield return ("GenerativeReplay", ml => ml.Continual().Trainers.GenerativeReplay(O(new GenerativeReplayTrainer.Options { GeneratorHiddenSize = 64, LatentSize = 16 })), false);
        yield return ("Joint", ml => ml.Continual().Trainers.Joint(O(new JointTrainer.Options())), false);
        yield return ("Independent", ml => ml.Continual().Trainers.Independent(O(new IndependentTrainer.Options(), taskIds: true)), true);
        yield return ("PackNet", ml => ml.Continual().Trainers.PackNet(O(new PackNetTrainer.Options { ExpectedTaskCount = 3, RetrainEpochs = 1 }, taskIds: true)), true);
        yield return ("Cpg", ml => ml.Continual().Trainers.Cpg(O(new CpgTrainer.Options { CompactionSteps = 2 }, taskIds: true)), true);
        yield return ("ProgressiveNetworks-dropout", ml => ml.Continual().Trainers.ProgressiveNetworks(O(new ProgressiveNetworksTrainer.Options(), taskIds: true, dropout: 0.1f)), true);
    }

    public static void Run(string folder, string? compareWith, string? only)
    {
        Directory.CreateDirectory(folder);
        var ml = new MLContext(seed: 1);
        var stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: 3, trainSamplesPerTask: 1000, testSamplesPerTask: 200, seed: 3);
        var filter = only?.Split(',').ToHashSet(StringComparer.OrdinalIgnoreCase);
        int same = 0, different = 0;
        foreach (var (name, create, _) in Trainers())
        {
            if (filter is not null && !filter.Contains(name)) continue;
            var result = ml.Continual().Run(create(ml), stream, new ContinualRunOptions { Name = name, EvaluateBeforeTraining = false });
            for (int task = 0; task < result.Models.Count; task++)
            {
                string stem = Path.Combine(folder, $"{name}.task{task + 1}");
                using (var file = File.Create(stem + ".zip")) ml.Model.Save(result.Models[task], stream[task].Train.Schema, file);
                File.WriteAllBytes(stem + ".weights", NetworkEntry(stem + ".zip"));
                File.WriteAllBytes(stem + ".scores", Scores(result.Models[task], stream[task].Test));
                if (compareWith is null) continue;
                string other = Path.Combine(compareWith, Path.GetFileName(stem));
                string weights = Compare(File.ReadAllBytes(other + ".weights"), File.ReadAllBytes(stem + ".weights"), headerBytes: true);
                string scores = Compare(File.ReadAllBytes(other + ".scores"), File.ReadAllBytes(stem + ".scores"), headerBytes: false);
                bool equal = weights == "same bytes" && scores == "same bytes";
                if (equal) same++; else different++;
                Console.WriteLine($"| {name} | {task + 1} | {weights} | {scores} |");
            }
            Console.Error.WriteLine($"{name}: ACC {result.Metrics.AverageAccuracy:F4}");
        }
        if (compareWith is not null) Console.WriteLine($"{same} models the same bytes, {different} different.");
    }

    /// <summary>The <c>Network.bin</c> entry of a saved model (the weights, in the same layout in every format version).</summary>
    private static byte[] NetworkEntry(string zipPath)
    {
        using var zip = ZipFile.OpenRead(zipPath);
        var entry = zip.Entries.Single(e => e.FullName.EndsWith("Network.bin", StringComparison.Ordinal));
        using var stream = entry.Open();
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        return memory.ToArray();
    }

    private static byte[] Scores(ITransformer model, IDataView data)
    {
        var scored = model.Transform(data);
        var column = scored.Schema["Score"];
        float[] values = column.Type is VectorDataViewType
            ? scored.GetColumn<float[]>(column).SelectMany(s => s).ToArray()
            : scored.GetColumn<float>(column).ToArray();
        return System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
    }

    /// <summary>"same bytes", or the largest float difference (the weights entry starts with ML.NET's binary header, compared as bytes).</summary>
    private static string Compare(byte[] expected, byte[] actual, bool headerBytes)
    {
        if (expected.AsSpan().SequenceEqual(actual)) return "same bytes";
        if (expected.Length != actual.Length) return $"different length ({expected.Length} vs {actual.Length})";
        // The float payloads: compare as floats from the first differing 4-byte-aligned offset on (headers are short strings).
        int first = 0;
        while (first < expected.Length && expected[first] == actual[first]) first++;
        int start = headerBytes ? first - first % 4 : 0;
        float max = 0;
        int differing = 0;
        for (int i = start; i + 4 <= expected.Length; i += 4)
        {
            float a = BitConverter.ToSingle(expected, i), b = BitConverter.ToSingle(actual, i);
            if (a != b) { differing++; max = Math.Max(max, Math.Abs(a - b)); }
        }
        return $"{differing} floats differ, max |Δ| {max:G3} (hash {Convert.ToHexString(SHA256.HashData(actual))[..8]})";
    }
}
