using Microsoft.ML;
using Microsoft.ML.Continual;
using Microsoft.ML.Data;

namespace Samples;

/// <summary>
/// Sample for <see cref="ContinualTrainerOptions.MemoryBudgetMegabytes"/>: a task of a million rows that the trainer
/// never holds in memory. The rows come from an enumerable (so the data view reports no row count); one pass collects
/// the classes and a sample for the method's consolidation step, then each epoch streams the rows through a shuffle buffer.
/// </summary>
public static class LargeTaskSample
{
    public sealed class Row
    {
        [VectorType(16)]
        public float[] Features { get; set; } = [];
        public int Label { get; set; }
    }

    /// <summary>Rows made on demand: 4 classes around fixed centres; <paramref name="shift"/> moves them (the next task).</summary>
    private static IEnumerable<Row> Rows(int count, float shift, int seed)
    {
        var centres = new Random(7);
        var centre = Enumerable.Range(0, 4).Select(_ => Enumerable.Range(0, 16).Select(_ => (float)centres.NextDouble() * 4 - 2).ToArray()).ToArray();
        var random = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            int c = i % 4;
            yield return new Row { Features = centre[c].Select(v => v + shift + (float)(random.NextDouble() - 0.5) * 2).ToArray(), Label = c };
        }
    }

    public static void Run()
    {
        var ml = new MLContext(seed: 1);
        var trainer = ml.Continual().Trainers.Ewc(new EwcTrainer.Options
        {
            HiddenLayerSizes = [32], NumberOfEpochs = 1, BatchSize = 512,
            MemoryBudgetMegabytes = 32, // 1,000,000 rows × 16 floats are 61 MB: over the budget, so the task streams
        });
        ml.Log += (_, e) => { if (e.Message.Contains("memory budget")) Console.WriteLine(e.Message); };
        var model = trainer.Fit(ml.Data.LoadFromEnumerable(Rows(1_000_000, 0, 1)));
        var next = (ContinualTransformer)ml.Continual().Refit(model, ml.Data.LoadFromEnumerable(Rows(1_000_000, 0.5f, 2)));
        var test = ml.Data.LoadFromEnumerable(Rows(10_000, 0, 3).ToList());
        var scored = next.Transform(test);
        var truth = scored.GetColumn<int>("Label").ToArray();
        var predicted = scored.GetColumn<int>("PredictedLabel").ToArray();
        Console.WriteLine($"After 2 tasks of 1,000,000 rows each: accuracy on the first task {truth.Zip(predicted).Count(p => p.First == p.Second) / (double)truth.Length:F4}; " +
            $"state {string.Join(", ", next.StateSizes.Select(kv => $"{kv.Key} {kv.Value:N0}"))}");
    }
}
