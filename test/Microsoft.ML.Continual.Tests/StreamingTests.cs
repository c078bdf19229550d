using Microsoft.ML.Data;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual.Tests;

/// <summary>Tasks larger than <see cref="ContinualTrainerOptions.MemoryBudgetMegabytes"/>: streamed through a shuffle buffer.</summary>
public class StreamingTests
{
    public sealed class GeneratedRow
    {
        [VectorType(8)]
        public float[] Features { get; set; } = [];
        public int Label { get; set; }
        public float Index { get; set; }
        public string Task { get; set; } = "";
    }

    /// <summary>Rows made on demand (never held in memory): 8 features around one of <paramref name="classes"/> centres;
    /// class 9 appears in a single row only, so a sample would miss it. ML.NET reports no row count for such a view.</summary>
    private static IEnumerable<GeneratedRow> Generate(int rows, int classes, string task = "t1")
    {
        var centres = new Random(5);
        var centre = Enumerable.Range(0, classes).Select(_ => Enumerable.Range(0, 8).Select(_ => (float)(centres.NextDouble() * 8 - 4)).ToArray()).ToArray();
        var random = new Random(rows);
        for (int i = 0; i < rows; i++)
        {
            int c = i == rows / 2 ? 9 : i % classes;
            yield return new GeneratedRow
            {
                Features = (c == 9 ? new float[8] : centre[c]).Select(v => v + (float)(random.NextDouble() - 0.5)).ToArray(),
                Label = c,
                Index = i,
                Task = task,
            };
        }
    }

    [Fact]
    public void EachEpoch_IsAPermutationOfAllRows_ThroughABoundedBuffer_AndTheSameOnResume()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Generate(10_000, 3));
        var options = new FineTuneTrainer.Options { LabelColumnName = "Index", BatchSize = 64 };
        var batches = new StreamingBatches(data, options, 8, bufferRows: 1_000, rowCount: 10_000, classTargets: false, targetOf: l => (float)l.Number, headOf: null);
        float[] Epoch(int epoch) => batches.Epoch(taskSeed: 7, epoch, CPU, CancellationToken.None)
            .SelectMany(b => { Assert.True(b.Features.shape[0] <= 64); return b.Targets.data<float>().ToArray(); }).ToArray();
        float[] first = Epoch(0), again = Epoch(0), second = Epoch(1);
        Assert.Equal(Enumerable.Range(0, 10_000).Select(i => (float)i), first.Order());
        Assert.Equal(first, again);          // a resumed epoch draws the same order
        Assert.NotEqual(first, second);      // another epoch, another order
        // Rows move far from their place: the buffer (1,000 rows) mixes them well beyond a batch.
        double meanShift = first.Select((row, position) => Math.Abs(row - position)).Average();
        Assert.True(meanShift > 300, $"mean displacement {meanShift:F0}");
    }

    [Fact]
    public void ATaskOverTheBudget_Streams_LearnsEveryClass_AndKeepsItsStateForRefits()
    {
        var ml = new MLContext(seed: 1);
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Message.Contains("streams")) log.Add(e.Message); };
        // 100,000 rows × (8 floats + bookkeeping) ≈ 4.8 MB of rows, against a 1 MB budget.
        var task = ml.Data.LoadFromEnumerable(Generate(100_000, 5));
        var options = new EwcTrainer.Options { HiddenLayerSizes = [16], NumberOfEpochs = 1, Seed = 1, MemoryBudgetMegabytes = 1, TaskIdColumnName = "Task" };
        var model = (ContinualTransformer)ml.Continual().Trainers.Ewc(options).Fit(task);
        Assert.Single(log);
        Assert.Contains("100,000 rows", log[0]);
        // The vocabulary comes from every row, not the sample: class 9 (one row in 100,000) is there.
        Assert.Equal(6, model.Classes.Count);
        var test = ml.Data.LoadFromEnumerable(Generate(2_000, 5).Where(r => r.Label != 9).ToList());
        var scored = model.Transform(test);
        var truth = scored.GetColumn<int>("Label").ToArray();
        var predicted = scored.GetColumn<int>("PredictedLabel").ToArray();
        Assert.True(truth.Zip(predicted).Count(p => p.First == p.Second) > 0.95 * truth.Length);
        Assert.Equal(1, model.StateSizes["penalty terms"]); // EWC consolidated on the sample

        var next = (ContinualTransformer)ml.Continual().Refit(model, ml.Data.LoadFromEnumerable(Generate(50_000, 5, "t2")));
        Assert.Equal(2, next.TasksSeen);
        Assert.Equal(["t1", "t2"], next.TaskIds);
    }

    [Fact]
    public void WithinTheBudget_ATaskIsReadIntoMemory_AsWithoutABudget()
    {
        var ml = new MLContext(seed: 1);
        var rows = Generate(2_000, 3).ToList(); // a list: the view reports its row count
        var task = ml.Data.LoadFromEnumerable(rows);
        FineTuneTrainer.Options Options(int? budget) => new() { HiddenLayerSizes = [8], NumberOfEpochs = 2, Seed = 1, MemoryBudgetMegabytes = budget };
        var inMemory = ml.Continual().Trainers.FineTune(Options(null)).Fit(task);
        var budgeted = ml.Continual().Trainers.FineTune(Options(64)).Fit(task);
        Assert.Equal(TestData.Bytes(TestData.Scores(inMemory, task)), TestData.Bytes(TestData.Scores(budgeted, task)));
    }

    [Fact]
    public void Joint_RefusesATaskItCannotKeep()
    {
        var ml = new MLContext(seed: 1);
        var joint = ml.Continual().Trainers.Joint(new JointTrainer.Options { MemoryBudgetMegabytes = 1 });
        var error = Assert.Throws<NotSupportedException>(() => joint.Fit(ml.Data.LoadFromEnumerable(Generate(1_000, 3))));
        Assert.Contains("MemoryBudgetMegabytes", error.Message);
    }
}
