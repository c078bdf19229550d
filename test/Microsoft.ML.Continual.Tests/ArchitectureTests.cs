using Microsoft.ML.Data;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual.Tests;

/// <summary>PackNet and progressive networks: earlier tasks bit-identical, capacity accounting, task-id errors.</summary>
public class ArchitectureTests
{
    private static T OnMnist<T>(T options) where T : ContinualTrainerOptions
    {
        options.HiddenLayerSizes = [100, 100];
        options.NumberOfEpochs = 5;
        options.Seed = 1;
        // Weight decay and Adam would move a frozen weight if anything but the freezing kept it in place.
        options.WeightDecay = 1e-4;
        return options;
    }

    private static T OnBlobs<T>(T options) where T : ContinualTrainerOptions
    {
        options.TaskIdColumnName = "Task";
        options.HiddenLayerSizes = [16, 12];
        options.NumberOfEpochs = 3;
        options.BatchSize = 32;
        options.LearningRate = 0.01;
        options.WeightDecay = 1e-3;
        options.Seed = 3;
        return options;
    }

    public static TheoryData<string> Methods => new() { "PackNet", "Cpg", "ProgressiveNetworks" };

    private static IEstimator<ITransformer> Trainer(MLContext ml, string method, bool mnist) => method switch
    {
        "PackNet" => ml.Continual().Trainers.PackNet(mnist ? OnMnist(new PackNetTrainer.Options { ExpectedTaskCount = 3 }) : OnBlobs(new PackNetTrainer.Options())),
        "Cpg" => ml.Continual().Trainers.Cpg(mnist ? OnMnist(new CpgTrainer.Options { CompactionSteps = 2 }) : OnBlobs(new CpgTrainer.Options { CompactionSteps = 2 })),
        _ => ml.Continual().Trainers.ProgressiveNetworks(mnist ? OnMnist(new ProgressiveNetworksTrainer.Options()) : OnBlobs(new ProgressiveNetworksTrainer.Options())),
    };

    [Theory]
    [MemberData(nameof(Methods))]
    public void EarlierTasks_AreBitIdenticalAfterLaterTasks_AndAccurate_OnPermutedMnist(string method)
    {
        var ml = new MLContext(seed: 1);
        var stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: 3, trainSamplesPerTask: 4000, testSamplesPerTask: 500, seed: 1);
        var result = ml.Continual().Run(Trainer(ml, method, mnist: true), stream, new ContinualRunOptions { EvaluateBeforeTraining = false });
        Assert.Equal(0.0, result.Metrics.BackwardTransfer);
        for (int task = 0; task < 2; task++)
        {
            byte[] right = TestData.Bytes(TestData.Scores(result.Models[task], stream[task].Test));
            for (int later = task + 1; later < 3; later++)
                Assert.Equal(right, TestData.Bytes(TestData.Scores(result.Models[later], stream[task].Test)));
        }
        // 4,000 images per task, 10 classes: far above chance (0.1) on every task.
        Assert.All(result.Metrics.AccuracyMatrix[^1], a => Assert.True(a > 0.85, $"{method}: {a:F4}"));
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void EarlierTasks_KeepTheirScores_ThroughFreshProcessSaveLoadAndRefit(string method)
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var task0 = TestData.View(ml, 0, [0, 1, 2], 300, 1);
        var probe0 = TestData.View(ml, 0, [0, 1, 2], 200, 9);
        var model = (ContinualTransformer)Trainer(ml, method, mnist: false).Fit(task0);
        ml.Model.Save(model, task0.Schema, temp.File("model.zip"));

        Program.RunFresh("refit", temp.File("model.zip"), "1", "2,3,4", "300", "1", temp.File("next.zip"));

        var next = (ContinualTransformer)ml.Model.Load(temp.File("next.zip"), out _);
        Assert.Equal(2, next.TasksSeen);
        Assert.Equal(["task0", "task1"], next.TaskIds);
        // The new task's classes widen the score vectors; task 0's head still gives them probability 0. A softmax over 5 slots
        // (2 masked) may round differently from one over 3, so the widened scores are compared within the cross-shape
        // tolerance; the predictions are the same. (Same shapes are compared bit for bit in the Permuted MNIST test above.)
        float[] beforeScores = TestData.Scores(model, probe0);
        TestData.AssertClose(beforeScores, FirstSlots(TestData.Scores(next, probe0), 5, 3));
        Assert.Equal(Predictions(model, probe0), Predictions(next, probe0));
        Assert.True(TestData.Accuracy(next, TestData.View(ml, 1, [2, 3, 4], 200, 9)) > 0.8);
        // And once more in this process: the loaded state continues.
        var third = (ContinualTransformer)ml.Continual().Refit(next, TestData.View(ml, 2, [0, 5], 300, 1));
        TestData.AssertClose(beforeScores, FirstSlots(TestData.Scores(third, probe0), 6, 3));
        Assert.Equal(Predictions(model, probe0), Predictions(third, probe0));
        Assert.Equal(3, third.Capacity!.Tasks.Count);
    }

    private static string[] Predictions(ITransformer model, IDataView data) =>
        model.Transform(data).GetColumn<ReadOnlyMemory<char>>("PredictedLabel").Select(v => v.ToString()).ToArray();

    /// <summary>The first <paramref name="keep"/> of every <paramref name="width"/> scores (a row's scores of the classes known earlier).</summary>
    private static float[] FirstSlots(float[] scores, int width, int keep)
    {
        var rows = scores.Chunk(width).ToList();
        Assert.All(rows, r => Assert.All(r.Skip(keep), v => Assert.Equal(0f, v)));
        return rows.SelectMany(r => r.Take(keep)).ToArray();
    }

    [Fact]
    public void PackNet_CapacityAccounting_EqualShares_AndAClearErrorWhenNothingIsLeft()
    {
        var ml = new MLContext(seed: 1);
        var trainer = ml.Continual().Trainers.PackNet(OnBlobs(new PackNetTrainer.Options { ExpectedTaskCount = 3, RetrainEpochs = 1 }));
        // Trunk 6→16→12: 96 + 192 = 288 weights.
        const long total = 6 * 16 + 16 * 12;
        var model = (ContinualTransformer)trainer.Fit(TestData.View(ml, 0, [0, 1], 200, 1));
        var capacity = model.Capacity!;
        Assert.Equal(total, capacity.TotalWeights);
        // Task 1 of 3 keeps round(96/3) + round(192/3) = 32 + 64 weights.
        Assert.Equal(96, capacity.Tasks[0].Weights);
        Assert.Equal(total - 96, capacity.FreeWeights);
        var second = (ContinualTransformer)ml.Continual().Refit(model, TestData.View(ml, 1, [0, 1], 200, 1));
        Assert.Equal([96L, 96L], second.Capacity!.Tasks.Select(t => t.Weights));
        var third = (ContinualTransformer)ml.Continual().Refit(second, TestData.View(ml, 2, [0, 1], 200, 1));
        Assert.Equal([96L, 96L, 96L], third.Capacity!.Tasks.Select(t => t.Weights));
        Assert.Equal(0, third.Capacity.FreeWeights);
        Assert.Equal(1.0 / 3, third.Capacity.Tasks[2].Fraction, 12);

        var probe = TestData.View(ml, 2, [0, 1], 100, 9);
        byte[] scores = TestData.Bytes(TestData.Scores(third, probe));
        var full = Assert.Throws<ContinualCapacityException>(() => ml.Continual().Refit(third, TestData.View(ml, 3, [0, 1], 200, 1)));
        Assert.Contains("no free weights left in trunk layer 1", full.Message);
        // The failed fit left the model as it was.
        Assert.Equal(scores, TestData.Bytes(TestData.Scores(third, probe)));
        Assert.Equal(0, third.Capacity.FreeWeights);
    }

    [Fact]
    public void PackNet_PruneFraction_FreesThatShareOfEachLayer()
    {
        var ml = new MLContext(seed: 1);
        var model = (ContinualTransformer)ml.Continual().Trainers.PackNet(OnBlobs(new PackNetTrainer.Options { PruneFraction = 0.75 }))
            .Fit(TestData.View(ml, 0, [0, 1], 200, 1));
        // Layer 1 keeps 96 − round(0.75·96) = 24, layer 2 keeps 192 − 144 = 48.
        Assert.Equal(72, model.Capacity!.Tasks[0].Weights);
        var network = model.State.Network.SharedTrunkLayers();
        // Freed weights are zero, kept ones are not.
        long nonZero = network.Sum(l => l.Weight.count_nonzero().item<long>());
        Assert.Equal(72, nonZero);
    }

    [Fact]
    public void ProgressiveNetworks_ParameterCount_MatchesTheNetworkAndTheCapacityReport()
    {
        var ml = new MLContext(seed: 1);
        var trainer = ml.Continual().Trainers.ProgressiveNetworks(OnBlobs(new ProgressiveNetworksTrainer.Options()));
        ITransformer model = trainer.Fit(TestData.View(ml, 0, [0, 1], 200, 1));
        model = ml.Continual().Refit(model, TestData.View(ml, 1, [0, 1], 200, 1));
        var last = (ContinualTransformer)ml.Continual().Refit(model, TestData.View(ml, 2, [0, 1], 200, 1));
        long actual = last.State.Network.parameters().Sum(p => p.numel());
        // Column: 6·16+16 + 16·12+12 + head 12·2+2 = 342; laterals per earlier column: 16·12 + 12·2 = 216; columns 0, 1, 2 have 0, 1, 2 sources.
        Assert.Equal(3 * 342 + 3 * 216, actual);
        Assert.Equal(actual, last.ParameterCount);
        Assert.Equal([342L, 342 + 216, 342 + 2 * 216], last.Capacity!.Tasks.Select(t => t.Weights));
        Assert.Null(last.Capacity.FreeWeights);
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void WithoutTaskIds_EveryRouteFailsClearly(string method)
    {
        var ml = new MLContext(seed: 1);
        var trainer = Trainer(ml, method, mnist: false);
        var model = trainer.Fit(TestData.View(ml, 0, [0, 1], 200, 1));

        // Scoring data without the task-id column.
        var noTask = ml.Transforms.DropColumns("Task").Fit(TestData.View(ml, 0, [0, 1], 10, 2)).Transform(TestData.View(ml, 0, [0, 1], 10, 2));
        var missing = Assert.Throws<ContinualDataException>(() => model.Transform(noTask));
        Assert.Contains("needs the task-id column 'Task'", missing.Message);

        // Options without a task-id column.
        var noColumn = Assert.Throws<ArgumentOutOfRangeException>(() => method switch
        {
            "PackNet" => (object)ml.Continual().Trainers.PackNet(new PackNetTrainer.Options { TaskIdColumnName = null }),
            "Cpg" => ml.Continual().Trainers.Cpg(new CpgTrainer.Options { TaskIdColumnName = null }),
            _ => ml.Continual().Trainers.ProgressiveNetworks(new ProgressiveNetworksTrainer.Options { TaskIdColumnName = null }),
        });
        Assert.Contains("set TaskIdColumnName", noColumn.Message);

        // Two tasks in one fit, and a task trained before.
        var mixed = ml.Data.LoadFromEnumerable(TestData.Rows(1, [0, 1], 100, 1).Concat(TestData.Rows(2, [0, 1], 100, 1)));
        Assert.Contains("one task per fit", Assert.Throws<ContinualDataException>(() => ml.Continual().Refit(model, mixed)).Message);
        Assert.Contains("already trained task 'task0'", Assert.Throws<ContinualDataException>(() => ml.Continual().Refit(model, TestData.View(ml, 0, [0, 1], 100, 5))).Message);
        // Many task ids in one fit: the message names the first ten, not all of them.
        var many = ml.Data.LoadFromEnumerable(Enumerable.Range(1, 30).SelectMany(t => TestData.Rows(t, [0, 1], 4, 1)));
        string manyMessage = Assert.Throws<ContinualDataException>(() => ml.Continual().Refit(model, many)).Message;
        Assert.Contains("30 task ids (task1, task2,", manyMessage);
        Assert.Contains("task10, ...)", manyMessage);
        Assert.DoesNotContain("task11", manyMessage);
    }

    [Fact]
    public void Cpg_GrowsWhenTheGoalIsMissed_CompactsWhatItTrained_AndKeepsEarlierTasksBitIdentical()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        // Overlapping classes and a goal of 1: the first task grows as often as allowed (once), by 25% of the first widths (16→20, 12→15).
        var trainer = ml.Continual().Trainers.Cpg(OnBlobs(new CpgTrainer.Options { AccuracyGoal = 1.0, MaxGrowths = 1, CompactionSteps = 2, MaxPruneFraction = 0.5, CompactionTolerance = 1.0 }));
        var task0 = ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1, 2], 300, 1, spread: 4f));
        var probe0 = TestData.View(ml, 0, [0, 1, 2], 200, 9);
        var first = (ContinualTransformer)trainer.Fit(task0);
        Assert.Equal([20, 15], first.HiddenLayerSizes);
        // Compaction freed half of what the task trained (tolerance 1: every step kept): 6·20 + 20·15 = 420 weights, 210 kept.
        Assert.Equal(420, first.Capacity!.TotalWeights);
        Assert.Equal(210, first.Capacity.Tasks[0].Weights);
        Assert.Equal(210, first.Capacity.FreeWeights);
        Assert.Equal(210, first.State.Network.SharedTrunkLayers().Sum(l => l.Weight.count_nonzero().item<long>()));
        byte[] before = TestData.Bytes(TestData.Scores(first, probe0));
        ml.Model.Save(first, task0.Schema, temp.File("cpg.zip"));

        Program.RunFresh("refit", temp.File("cpg.zip"), "1", "0,1,2", "300", "1", temp.File("next.zip"));
        var second = (ContinualTransformer)ml.Model.Load(temp.File("next.zip"), out _);
        Assert.True(second.HiddenLayerSizes[0] >= 20);
        Assert.Equal(before, TestData.Bytes(TestData.Scores(second, probe0)));
        Assert.True(TestData.Accuracy(second, TestData.View(ml, 1, [0, 1, 2], 200, 9)) > 0.8);
        Assert.True(second.ParameterCount > first.ParameterCount); // a second head at least
        Assert.Contains("task masks (bits)", second.StateSizes.Keys);
        // The model's widths are not the options' any more; a refit with the same options still continues it.
        var third = (ContinualTransformer)ml.Continual().Refit(second, TestData.View(ml, 2, [0, 1], 300, 1));
        Assert.Equal(before, TestData.Bytes(TestData.Scores(third, probe0)));
        Assert.Equal(3, third.Capacity!.Tasks.Count);
    }

    [Fact]
    public void Cpg_RefusesCheckpoints_AndRegression()
    {
        var ml = new MLContext(seed: 1);
        using var temp = new TempFolder();
        var trainer = ml.Continual().Trainers.Cpg(OnBlobs(new CpgTrainer.Options()));
        var fit = new ContinualFitOptions { CheckpointPath = temp.File("cpg.ckpt") };
        Assert.Throws<NotSupportedException>(() => trainer.Fit(TestData.View(ml, 0, [0, 1], 100, 1), null, fit));
        var regression = OnBlobs(new CpgTrainer.Options());
        regression.LabelColumnName = "Target";
        var error = Assert.Throws<NotSupportedException>(() => ml.Continual().Trainers.Cpg(regression).Fit(TestData.View(ml, 0, [0, 1], 100, 1)));
        Assert.Contains("classification", error.Message);
    }

    [Theory]
    [MemberData(nameof(Methods))]
    public void ATrainerSwitch_ToOrFromTheArchitectureFamily_IsRefused(string method)
    {
        var ml = new MLContext(seed: 1);
        var task0 = TestData.View(ml, 0, [0, 1], 200, 1);
        var task1 = TestData.View(ml, 1, [0, 1], 200, 1);
        var fineTune = ml.Continual().Trainers.FineTune(OnBlobs(new FineTuneTrainer.Options()));
        var fromFineTune = fineTune.Fit(task0);
        var made = (ContinualTransformer)Trainer(ml, method, mnist: false).Fit(task0);
        byte[] before = TestData.Bytes(TestData.Scores(made, task0));

        // An architecture trainer cannot take over a model it did not make, nor give its model to another trainer.
        var trainer = (ContinualTrainer)Trainer(ml, method, mnist: false);
        var into = Assert.Throws<ArgumentException>(() => trainer.Fit(task1, fromFineTune));
        Assert.Contains("cannot be continued by", into.Message);
        var away = Assert.Throws<ArgumentException>(() => fineTune.Fit(task1, made));
        Assert.Contains($"A model made by {made.TrainerName}", away.Message);
        Assert.Equal(before, TestData.Bytes(TestData.Scores(made, task0)));
    }
}
