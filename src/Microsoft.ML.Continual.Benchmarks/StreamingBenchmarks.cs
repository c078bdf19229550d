using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Continual;
using Microsoft.ML.Data;

/// <summary>A generated task of millions of rows trained within <see cref="ContinualTrainerOptions.MemoryBudgetMegabytes"/>,
/// beside the same task read into memory: peak resident memory above the process's level before the fit, and throughput.</summary>
internal static class StreamingBenchmarks
{
    private const int FeatureCount = 32;

    public sealed class GeneratedRow
    {
        [VectorType(FeatureCount)]
        public float[] Features { get; set; } = [];
        public int Label { get; set; }
    }

    /// <summary>Rows made on demand, never stored: 10 classes, features around each class's centre.</summary>
    private static IEnumerable<GeneratedRow> Generate(long rows, int seed)
    {
        var centres = new Random(12345); // the same classes in every generated set; rows differ by seed
        var centre = Enumerable.Range(0, 10).Select(_ => Enumerable.Range(0, FeatureCount).Select(_ => (float)(centres.NextDouble() * 2 - 1)).ToArray()).ToArray();
        var random = new Random(seed + 1);
        for (long i = 0; i < rows; i++)
        {
            int c = (int)(i % 10);
            var features = new float[FeatureCount];
            for (int d = 0; d < FeatureCount; d++) features[d] = centre[c][d] + (float)(random.NextDouble() - 0.5) * 2;
            yield return new GeneratedRow { Features = features, Label = c };
        }
    }

    public static void Run(long rows, int budgetMegabytes, bool inMemoryToo)
    {
        var ml = new MLContext(seed: 0);
        FineTuneTrainer.Options Options(int? budget) => new()
        {
            HiddenLayerSizes = [64], NumberOfEpochs = 1, BatchSize = 512, Seed = 0, NumberOfThreads = 2, MemoryBudgetMegabytes = budget,
        };
        // Warm up torch and the code paths on a small task, so the baseline includes them.
        ml.Continual().Trainers.FineTune(Options(budgetMegabytes)).Fit(ml.Data.LoadFromEnumerable(Generate(20_000, 1)));
        var test = ml.Data.LoadFromEnumerable(Generate(20_000, 2).ToList());
        Console.WriteLine($"Generated task: {rows:N0} rows × {FeatureCount} features (as floats: {rows * FeatureCount * 4 / 1048576.0:N0} MB), 10 classes; FineTune MLP {FeatureCount}-64-10, 1 epoch, batch 512, 2 threads.");
        Console.WriteLine("| path | peak resident memory above the level before the fit | training s | rows/s | test accuracy |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: |");
        Measure($"streamed, budget {budgetMegabytes} MB", Options(budgetMegabytes));
        if (inMemoryToo) Measure("read into memory (no budget)", Options(null));

        void Measure(string name, FineTuneTrainer.Options options)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            long before = ProcessMemory.ResidentBytes();
            ProcessMemory.ResetPeak();
            var clock = Stopwatch.StartNew();
            var model = ml.Continual().Trainers.FineTune(options).Fit(ml.Data.LoadFromEnumerable(Generate(rows, 3)));
            double seconds = clock.Elapsed.TotalSeconds;
            long peak = ProcessMemory.PeakResidentBytes();
            var scored = model.Transform(test);
            var truth = scored.GetColumn<int>("Label").ToArray();
            var predicted = scored.GetColumn<int>("PredictedLabel").ToArray();
            double accuracy = truth.Zip(predicted).Count(p => p.First == p.Second) / (double)truth.Length;
            Console.WriteLine($"| {name} | {(peak - before) / 1048576.0:N0} MB | {seconds:F1} | {rows / seconds:N0} | {accuracy:F4} |");
        }
    }
}
