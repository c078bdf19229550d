using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual.Tests;

public class ReplayTests
{
    private static T Small<T>(T options) where T : ContinualTrainerOptions
    {
        options.HiddenLayerSizes = [16];
        options.NumberOfEpochs = 2;
        options.BatchSize = 16;
        options.LearningRate = 0.01;
        options.Seed = 3;
        return options;
    }

    [Fact]
    public void FairShares_UseTheBudget_NeverExceedAGroup_AndDifferByAtMostOne()
    {
        var random = new Random(2);
        for (int trial = 0; trial < 500; trial++)
        {
            int[] sizes = Enumerable.Range(0, 1 + random.Next(8)).Select(_ => random.Next(0, 60)).ToArray();
            int capacity = random.Next(0, 200);
            int[] shares = ExampleMemory.FairShares(capacity, sizes);
            Assert.Equal(Math.Min(capacity, sizes.Sum()), shares.Sum());
            for (int i = 0; i < sizes.Length; i++)
            {
                Assert.InRange(shares[i], 0, sizes[i]);
                // A group below the largest share is full: nobody could give it more without breaking fairness.
                if (shares[i] < shares.Max() - 1) Assert.Equal(sizes[i], shares[i]);
            }
        }
    }

    [Fact]
    public void Reservoir_KeepsEveryOfferedRowWithTheSameProbability()
    {
        const int capacity = 100, tasks = 10, rowsPerTask = 100, trials = 3000;
        var inclusions = new int[tasks * rowsPerTask];
        var random = new Random(7);
        for (int trial = 0; trial < trials; trial++)
        {
            var ids = new List<int>();
            long offered = 0;
            for (int t = 0; t < tasks; t++)
            {
                int[] slots = ExampleMemory.ReservoirSlots(ids.Count, offered, rowsPerTask, capacity, random);
                ids = slots.Select(s => s >= 0 ? ids[s] : t * rowsPerTask + (-1 - s)).ToList();
                offered += rowsPerTask;
                Assert.True(ids.Count <= capacity);
            }
            foreach (int id in ids) inclusions[id]++;
        }
        // Each row is kept with probability capacity / rows offered = 0.1: a chi-square test over the 1,000 rows
        // (999 degrees of freedom: mean 999, sd 44.7; the bound is 6 sd above the mean).
        double expected = trials * (double)capacity / (tasks * rowsPerTask);
        double chiSquare = inclusions.Sum(c => (c - expected) * (c - expected) / expected);
        Assert.True(chiSquare < 999 + 6 * 44.7, $"χ² = {chiSquare:F0}");
        // And no task is favoured: the first and the last task's rows are kept equally often (within 3%).
        double first = inclusions.Take(rowsPerTask).Average(), last = inclusions.Skip((tasks - 1) * rowsPerTask).Average();
        Assert.InRange(first / expected, 0.97, 1.03);
        Assert.InRange(last / expected, 0.97, 1.03);
    }

    [Theory]
    [InlineData(ReplayBufferPolicy.ClassBalanced, ExemplarSelection.Random)]
    [InlineData(ReplayBufferPolicy.ClassBalanced, ExemplarSelection.Herding)]
    [InlineData(ReplayBufferPolicy.TaskBalanced, ExemplarSelection.Random)]
    [InlineData(ReplayBufferPolicy.Reservoir, ExemplarSelection.Random)]
    public void Memory_StaysWithinBudget_AndBalanced_AcrossRefits(ReplayBufferPolicy policy, ExemplarSelection selection)
    {
        var ml = new MLContext(seed: 1);
        // Class-incremental: task t brings classes 2t and 2t+1 (110 rows each).
        var options = Small(new ReplayTrainer.Options { MemorySize = 100, BufferPolicy = policy, Selection = selection });
        ITransformer model = ml.Continual().Trainers.Replay(options).Fit(TestData.View(ml, 0, [0, 1], 220, 1));
        for (int task = 1; task < 4; task++)
        {
            model = ml.Continual().Refit(model, TestData.View(ml, task, [2 * task, 2 * task + 1], 220, 1 + task));
            var memory = ((ReplayPlugin)((ContinualTransformer)model).State.Plugins.Items.Single()).Memory;
            Assert.Equal(100, memory.Count); // every group is larger than its share, so the budget is used in full
            Assert.Equal(220L * (task + 1), memory.RowsOffered);
            var perClass = memory.ClassOf.GroupBy(c => c).Select(g => g.Count()).ToArray();
            var perTask = memory.TaskOf.GroupBy(t => t).Select(g => g.Count()).ToArray();
            if (policy == ReplayBufferPolicy.ClassBalanced) Assert.True(perClass.Max() - perClass.Min() <= 1, string.Join(",", perClass));
            if (policy == ReplayBufferPolicy.TaskBalanced) Assert.True(perTask.Max() - perTask.Min() <= 1, string.Join(",", perTask));
            if (policy != ReplayBufferPolicy.Reservoir) Assert.Equal(2 * (task + 1), perClass.Length);
        }
    }

    [Fact]
    public void Herding_PicksTheRowClosestToTheMeanFirst_ThenKeepsTheRunningMeanClose()
    {
        using var scope = NewDisposeScope();
        // One class, five rows on a line (after normalisation all are unit vectors in the plane).
        var points = new float[] { 1, 0, 0.8f, 0.6f, 0.6f, 0.8f, 0, 1, 0.96f, 0.28f };
        using var task = new ContinualTaskData(tensor(points, [5, 2]), zeros(5, dtype: int64), null);
        var memory = ExampleMemory.Empty.Offer(task, 0, new int[5], ReplayBufferPolicy.ClassBalanced, 3, ExemplarSelection.Herding, new Random(1), x => x);
        Assert.Equal(3, memory.Count);
        var mean = new[] { points.Where((_, i) => i % 2 == 0).Average(), points.Where((_, i) => i % 2 == 1).Average() };
        int closest = Enumerable.Range(0, 5).OrderBy(i => Math.Pow(points[2 * i] - mean[0], 2) + Math.Pow(points[2 * i + 1] - mean[1], 2)).First();
        var kept = memory.Features!.data<float>().ToArray();
        int rankZero = Array.IndexOf(memory.Rank, 0);
        Assert.Equal(points[2 * closest], kept[2 * rankZero]);
        Assert.Equal(new[] { 0, 1, 2 }, memory.Rank.Order().ToArray());
    }

    [Fact]
    public void HerdingWithReservoir_IsRefusedWithAClearMessage()
    {
        var ml = new MLContext(seed: 1);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() =>
            ml.Continual().Trainers.Replay(new ReplayTrainer.Options { Selection = ExemplarSelection.Herding }).Fit(TestData.View(ml, 0, [0, 1], 50, 1)));
        Assert.Contains("Herding", e.Message);
    }

    [Fact]
    public void MemoryAndRegularizer_SurviveFreshProcessSaveLoadAndRefit()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var data = TestData.View(ml, 0, [0, 1, 2], 200, 1);
        var options = Small(new ReplayTrainer.Options { MemorySize = 60, BufferPolicy = ReplayBufferPolicy.ClassBalanced, Regularization = ReplayRegularization.OnlineEwc, RegularizationLambda = 10 });
        var model = ml.Continual().Trainers.Replay(options).Fit(data);
        var composite = model.State.Plugins.Items;
        var first = ((ReplayPlugin)composite[0]).Memory;
        Assert.Equal(60, first.Count);
        ml.Model.Save(model, data.Schema, temp.File("replay.zip"));

        Program.RunFresh("refit", temp.File("replay.zip"), "1", "3,4", "200", "1", temp.File("next.zip"));

        var next = (ContinualTransformer)ml.Model.Load(temp.File("next.zip"), out _);
        var parts = next.State.Plugins.Items;
        var memory = ((ReplayPlugin)parts[0]).Memory;
        Assert.Equal(60, memory.Count);
        Assert.Equal(400, memory.RowsOffered);
        Assert.Equal(5, memory.ClassOf.Distinct().Count()); // 12 rows for each of the five classes
        Assert.All(memory.ClassOf.GroupBy(c => c), g => Assert.Equal(12, g.Count()));
        // The first task's rows that stayed are the ones kept first (lowest ranks), bit for bit.
        var firstRows = first.Features!.data<float>().ToArray();
        var keptFromFirst = Enumerable.Range(0, memory.Count).Where(i => memory.TaskOf[i] == 0).ToArray();
        Assert.Equal(36, keptFromFirst.Length);
        foreach (int i in keptFromFirst)
        {
            int j = Enumerable.Range(0, first.Count).Single(k => first.ClassOf[k] == memory.ClassOf[i] && first.Rank[k] == memory.Rank[i]);
            Assert.Equal(firstRows.Skip(j * Row.Size).Take(Row.Size), memory.Features!.data<float>().ToArray().Skip(i * Row.Size).Take(Row.Size));
        }
        // Online EWC came along: one running term.
        Assert.Single(((RegularizationPlugin)parts[1]).Terms);
        Assert.Equal(10, ((ReplayTrainer.Options)next.Options).RegularizationLambda);
    }

    [Fact]
    public void Replay_ForgetsLessThanFineTune_InClassIncrementalSplitMnist()
    {
        var ml = new MLContext(seed: 1);
        var stream = ml.Continual().Benchmarks.SplitMnist(ContinualScenario.ClassIncremental, numberOfTasks: 3, trainSamplesPerTask: 2000, testSamplesPerTask: 400, seed: 1);
        T Setup<T>(T o) where T : ContinualTrainerOptions
        {
            o.HiddenLayerSizes = [100];
            o.NumberOfEpochs = 2;
            o.Seed = 1;
            return o;
        }
        var fineTune = ml.Continual().Run(ml.Continual().Trainers.FineTune(Setup(new FineTuneTrainer.Options())), stream, new ContinualRunOptions { EvaluateBeforeTraining = false });
        var replay = ml.Continual().Run(ml.Continual().Trainers.Replay(Setup(new ReplayTrainer.Options { MemorySize = 200 })), stream, new ContinualRunOptions { EvaluateBeforeTraining = false });
        Assert.True(fineTune.Metrics.AverageAccuracy < 0.45, $"FineTune ACC {fineTune.Metrics.AverageAccuracy:F4}"); // it forgets the earlier classes
        Assert.True(replay.Metrics.AverageAccuracy > fineTune.Metrics.AverageAccuracy + 0.3,
            $"Replay ACC {replay.Metrics.AverageAccuracy:F4} vs FineTune {fineTune.Metrics.AverageAccuracy:F4}");
        Assert.True(replay.Metrics.BackwardTransfer > fineTune.Metrics.BackwardTransfer + 0.3);
    }
}
