using Microsoft.ML.Data;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual.Tests;

/// <summary>
/// A plugin that runs a test's checks inside a real training step, after the plugins before it in the list have had their
/// hooks (so it sees the loss terms they set). The checks are static: the trainer makes fresh plugin instances per fit.
/// </summary>
public sealed class StepProbe : ContinualPlugin
{
    public const string RegisteredName = "Tests.StepProbe";

    public static Action<ContinualTrainingContext>? OnBeforeTask;
    public static Action<ContinualTrainingContext, ContinualStep>? OnBeforeBackward;
    public static int Checks;

    static StepProbe() => ContinualPlugins.Register<StepProbe>(RegisteredName);

    public static void Reset(Action<ContinualTrainingContext>? beforeTask, Action<ContinualTrainingContext, ContinualStep>? beforeBackward)
    {
        OnBeforeTask = beforeTask;
        OnBeforeBackward = beforeBackward;
        Checks = 0;
    }

    public override void BeforeTask(ContinualTrainingContext context) => OnBeforeTask?.Invoke(context);

    // It only looks: boundaries inside a fit change nothing in it.
    public override string? WhyNotBoundariesInsideFit => null;

    public override void AtBoundary(ContinualTrainingContext context) { }

    public override void BeforeBackward(ContinualTrainingContext context, ContinualStep step)
    {
        if (OnBeforeBackward is null) return;
        using var _ = no_grad();
        OnBeforeBackward(context, step);
        Checks++;
    }
}

public class MethodTests
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

    private static ContinualTrainer Preset(MLContext ml, string name) => name switch
    {
        "Der" => ml.Continual().Trainers.Der(Small(new DerTrainer.Options { MemorySize = 60 })),
        "DerPlusPlus" => ml.Continual().Trainers.DerPlusPlus(Small(new DerPlusPlusTrainer.Options { MemorySize = 60 })),
        "Er" => ml.Continual().Trainers.Er(Small(new ErTrainer.Options { MemorySize = 60 })),
        "ErAce" => ml.Continual().Trainers.ErAce(Small(new ErAceTrainer.Options { MemorySize = 60 })),
        "Mir" => ml.Continual().Trainers.Mir(Small(new MirTrainer.Options { MemorySize = 60, Candidates = 20, MinibatchSize = 5 })),
        "GDumb" => ml.Continual().Trainers.GDumb(Small(new GDumbTrainer.Options { MemorySize = 60 })),
        "Lwf" => ml.Continual().Trainers.Lwf(Small(new LwfTrainer.Options())),
        "Icarl" => ml.Continual().Trainers.Icarl(Small(new IcarlTrainer.Options { MemorySize = 60 })),
        "Bic" => ml.Continual().Trainers.Bic(Small(new BicTrainer.Options { MemorySize = 60, BiasEpochs = 50 })),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [InlineData("Der", "DarkExperience")]
    [InlineData("DerPlusPlus", "DarkExperience")]
    [InlineData("Er", "Er")]
    [InlineData("ErAce", "ErAce")]
    [InlineData("Mir", "Mir")]
    [InlineData("GDumb", "GDumb")]
    [InlineData("Lwf", "Lwf")]
    [InlineData("Icarl", "Icarl")]
    [InlineData("Bic", "Bic")]
    public void Preset_IsItsPlugin_AndItsStateContinuesBitForBitInAFreshProcess(string trainer, string plugin)
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var first = TestData.View(ml, 0, [0, 1, 2], 150, 1);
        var model = (ContinualTransformer)Preset(ml, trainer).Fit(first);
        Assert.Equal(new[] { plugin }, model.PluginNames);
        Assert.Equal(trainer, model.TrainerName);
        ml.Model.Save(model, first.Schema, temp.File("first.zip"));

        // The same refit from the model in memory (never saved) and from the file in a new process: any state the zip
        // does not carry, or any draw not derived from the seed, shows as differing bytes.
        var inMemory = ml.Continual().Refit(model, TestData.View(ml, 1, [3, 4], 150, 1));
        Program.RunFresh("refit", temp.File("first.zip"), "1", "3,4", "150", "1", temp.File("next.zip"));
        var fresh = (ContinualTransformer)ml.Continual().LoadModel(temp.File("next.zip"), out _);
        Assert.Equal(2, fresh.TasksSeen);
        var probe = TestData.View(ml, 1, [0, 1, 2, 3, 4], 100, 7);
        Assert.Equal(TestData.Bytes(TestData.Scores(inMemory, probe)), TestData.Bytes(TestData.Scores(fresh, probe)));
        Assert.Equal(((ContinualTransformer)inMemory).StateSizes, fresh.StateSizes);
    }

    [Fact]
    public void DerAndDerPlusPlus_DifferOnlyInBeta_AndNamesReachThePresets()
    {
        var ml = new MLContext(seed: 1);
        var der = (DarkExperiencePlugin)TrainerRegistry.Get("Der").CreatePlugins(new DerTrainer.Options { Alpha = 0.3 }).Single();
        var plus = (DarkExperiencePlugin)TrainerRegistry.Get("DerPlusPlus").CreatePlugins(new DerPlusPlusTrainer.Options { Alpha = 0.2, Beta = 0.7 }).Single();
        Assert.Equal((0.3, 0.0), (der.Alpha, der.Beta));
        Assert.Equal((0.2, 0.7), (plus.Alpha, plus.Beta));
        foreach (string name in new[] { "der", "DER++".Replace("++", "PlusPlus"), "er-ace", "mir", "gdumb", "lwf", "icarl", "bic" })
            Assert.NotNull(ml.Continual().Trainers.Create(name));
        var e = Assert.Throws<ArgumentException>(() => ml.Continual().Trainers.Create("der", new Dictionary<string, string> { ["Beta"] = "1" }));
        Assert.Contains("Beta", e.Message); // DER has no β: DER++ is the trainer with it
    }

    [Fact]
    public void LogitDistance_ComparesOnlyTheOutputsARowHadWhenItWasStored()
    {
        using var scope = NewDisposeScope();
        var outputs = tensor(new float[] { 1, 2, 3, 4, 5, 6 }, [2, 3]);
        var stored = tensor(new float[] { 0, 2, 9, 4, 4, 0 }, [2, 3]);
        // Row 0 had all three outputs: (1−0)² + 0 + (3−9)²; row 1 had two: 0 + (5−4)². Five compared values.
        Assert.Equal((1 + 36 + 1) / 5f, DarkExperiencePlugin.LogitDistance(outputs, stored, tensor(new long[] { 3, 2 })).item<float>(), 6);
        // All full: the plain mean squared error over the six values.
        Assert.Equal((1 + 0 + 36 + 0 + 1 + 36) / 6f, DarkExperiencePlugin.LogitDistance(outputs, stored, tensor(new long[] { 3, 3 })).item<float>(), 6);
        // Stored narrower than the head now (the head grew): only the stored columns count.
        var narrow = tensor(new float[] { 1, 1, 4, 4 }, [2, 2]);
        Assert.Equal((0 + 1 + 0 + 1) / 4f, DarkExperiencePlugin.LogitDistance(outputs, narrow, tensor(new long[] { 2, 2 })).item<float>(), 6);
    }

    [Fact]
    public void Der_StoresTheLogitsTheNetworkGaveEachRow()
    {
        var ml = new MLContext(seed: 1);
        // A learning rate so small that the network does not move: the stored logits must be today's outputs for the rows.
        var options = Small(new DerPlusPlusTrainer.Options { MemorySize = 40, Optimizer = ContinualOptimizer.Sgd });
        options.LearningRate = 1e-12;
        var model = (ContinualTransformer)ml.Continual().Trainers.DerPlusPlus(options).Fit(TestData.View(ml, 0, [0, 1, 2], 120, 1));
        var buffer = ((DarkExperiencePlugin)model.State.Plugins.Items.Single()).Buffer!;
        Assert.Equal(40, buffer.Count);
        Assert.Equal(240, buffer.Seen); // two epochs of 120 rows offered one step at a time
        using var _ = no_grad();
        var now = model.State.Network.Forward(buffer.Features!, null).data<float>().ToArray();
        TestData.AssertClose(now, buffer.Logits!.data<float>().ToArray(), 1e-5f);
        Assert.All(buffer.Widths!.data<long>().ToArray(), w => Assert.Equal(3, w));
    }

    [Fact]
    public void ErAce_IncomingLoss_IsTheCrossEntropyOverTheBatchsClassesAndTheUnseenOnes()
    {
        var ml = new MLContext(seed: 1);
        var seen = new HashSet<long>();
        StepProbe.Reset(null, (context, step) =>
        {
            long[] present = step.TaskBatch.Targets.unique().output.data<long>().ToArray();
            seen.UnionWith(present);
            if (context.TaskIndex == 0) return;
            var logits = step.TaskOutputs!;
            int width = (int)logits.shape[1];
            // Independently of the plugin: keep the batch's classes, and every class from the highest seen one on while
            // some class is still unseen (the authors' code); the rest are masked out of the softmax.
            var keep = Enumerable.Range(0, width).Select(c => present.Contains(c) || (seen.Max() < width - 1 && c >= seen.Max())).ToArray();
            var expected = nn.functional.cross_entropy(logits.masked_fill(tensor(keep).logical_not().unsqueeze(0), float.MinValue), step.TaskBatch.Targets).item<float>();
            Assert.Equal(expected, step.LossTerms.Single(t => t.Name == "task").Value.item<float>(), 5);
            Assert.True(keep.Count(k => k) < width); // something was masked: the check is not the plain cross-entropy
        });
        var trainer = ml.Continual().Trainers.Compose(Small(new ComposedTrainer.Options()), new ErAcePlugin { MemorySize = 50 }, new StepProbe());
        var model = trainer.Fit(TestData.View(ml, 0, [0, 1], 80, 1));
        int before = StepProbe.Checks;
        ml.Continual().Refit(model, TestData.View(ml, 1, [2, 3], 80, 2));
        Assert.True(StepProbe.Checks - before >= 10, $"{StepProbe.Checks - before} steps checked");
        StepProbe.Reset(null, null);
    }

    [Fact]
    public void ErAce_TaskFree_IsPlainErUntilTheFirstBoundaryInsideTheFit_ThenTheAsymmetricLoss()
    {
        var ml = new MLContext(seed: 1);
        var seen = new HashSet<long>();
        int plainSteps = 0, asymmetricSteps = 0;
        StepProbe.Reset(null, (context, step) =>
        {
            long[] present = step.TaskBatch.Targets.unique().output.data<long>().ToArray();
            seen.UnionWith(present);
            var logits = step.TaskOutputs!;
            float task = step.LossTerms.Single(t => t.Name == "task").Value.item<float>();
            if (context.BoundariesPassed == 0)
            {
                // One task so far: the plain cross-entropy, and nothing replayed.
                Assert.Equal(nn.functional.cross_entropy(logits, step.TaskBatch.Targets).item<float>(), task, 5);
                Assert.Empty(step.ExtraBatches);
                plainSteps++;
                return;
            }
            int width = (int)logits.shape[1];
            var keep = Enumerable.Range(0, width).Select(c => present.Contains(c) || (seen.Max() < width - 1 && c >= seen.Max())).ToArray();
            Assert.Equal(nn.functional.cross_entropy(logits.masked_fill(tensor(keep).logical_not().unsqueeze(0), float.MinValue), step.TaskBatch.Targets).item<float>(), task, 5);
            Assert.Single(step.ExtraBatches);
            if (keep.Count(k => k) < width) asymmetricSteps++;
        });
        // One fit over classes 0-1 then 2-3 in order, a boundary every 4 steps: 10 batches of 16.
        var options = Small(new ComposedTrainer.Options());
        options.NumberOfEpochs = 1;
        options.ShuffleRows = false;
        options.Boundaries = ContinualBoundaries.EverySteps;
        options.BoundaryEverySteps = 4;
        var rows = TestData.Rows(0, [0, 1], 80, 1).Concat(TestData.Rows(0, [2, 3], 80, 2)).ToList();
        ContinualFitStatistics? statistics = null;
        var model = ml.Continual().Trainers.Compose(options, new ErAcePlugin { MemorySize = 50 }, new StepProbe())
            .Fit(ml.Data.LoadFromEnumerable(rows), null, new ContinualFitOptions { Completed = s => statistics = s });
        Assert.Equal(2, statistics!.BoundariesPassed);
        Assert.Equal(4, plainSteps);
        Assert.True(asymmetricSteps >= 4, $"{asymmetricSteps} steps masked a class");
        Assert.Equal(50, model.StateSizes["memory rows"]);
        StepProbe.Reset(null, null);
    }

    [Fact]
    public void Er_LossIsTheMeanOverTheBatchJoinedWithAMemorySample_AndTheMemoryStaysWithinItsBudgetAcrossFits()
    {
        var ml = new MLContext(seed: 1);
        int replayedSteps = 0;
        StepProbe.Reset(null, (context, step) =>
        {
            if (step.ExtraBatches.SingleOrDefault() is not { } replayed) return; // the first step: the memory is empty
            replayedSteps++;
            Assert.InRange(replayed.Batch.Rows, 1, 8);
            // Independently of the plugin: the cross-entropy over the incoming rows and the replayed ones together.
            var outputs = cat([step.TaskOutputs!, replayed.Outputs]);
            var targets = cat([step.TaskBatch.Targets, replayed.Batch.Targets]);
            float expected = nn.functional.cross_entropy(outputs, targets).item<float>();
            Assert.Equal(expected, step.LossTerms.Sum(t => t.Value.item<float>()), 5);
        });
        var trainer = ml.Continual().Trainers.Compose(Small(new ComposedTrainer.Options()), new ErPlugin { MemorySize = 30, MinibatchSize = 8 }, new StepProbe());
        var model = trainer.Fit(TestData.View(ml, 0, [0, 1], 80, 1));
        Assert.Equal(2 * 5 - 1, replayedSteps); // 2 epochs of 5 batches; only the very first step has no memory
        Assert.Equal(30, model.StateSizes["memory rows"]);
        Assert.Equal(160, model.StateSizes["rows offered"]);
        var next = (ContinualTransformer)ml.Continual().Refit(model, TestData.View(ml, 1, [2, 3], 80, 2));
        Assert.Equal(30, next.StateSizes["memory rows"]); // bounded however many fits
        Assert.Equal(320, next.StateSizes["rows offered"]);
        StepProbe.Reset(null, null);
    }

    [Fact]
    public void ShuffleRowsFalse_TrainsTheRowsInTheDataOrder_InConsecutiveBatches()
    {
        var ml = new MLContext(seed: 1);
        var grouped = TestData.Rows(0, [0, 1, 2], 96, 1).OrderBy(r => r.IntLabel).ToList(); // 32 of each class, in class order
        var batches = new List<long[]>();
        StepProbe.Reset(null, (context, step) => batches.Add(step.TaskBatch.Targets.unique().output.data<long>().ToArray()));
        ContinualTransformer Train(bool shuffle)
        {
            batches.Clear();
            var options = Small(new ComposedTrainer.Options());
            options.ShuffleRows = shuffle;
            return ml.Continual().Trainers.Compose(options, new StepProbe()).Fit(ml.Data.LoadFromEnumerable(grouped));
        }
        Train(shuffle: false);
        // BatchSize 16: two batches of each class per epoch, in the data's order, for both epochs.
        Assert.Equal([0L, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2], batches.Select(b => Assert.Single(b)));
        Train(shuffle: true);
        Assert.Contains(batches, b => b.Length > 1);

        // In one pass in order, the fit's training accuracy is prequential: each batch as the model before its step scored it.
        long right = 0, seen = 0;
        StepProbe.Reset(null, (context, step) =>
        {
            right += step.TaskOutputs!.argmax(1).eq(step.TaskBatch.Targets).sum().item<long>();
            seen += step.TaskBatch.Rows;
        });
        var online = Small(new ComposedTrainer.Options());
        (online.ShuffleRows, online.NumberOfEpochs) = (false, 1);
        ContinualFitStatistics? statistics = null;
        ml.Continual().Trainers.Compose(online, new StepProbe()).Fit(ml.Data.LoadFromEnumerable(grouped), null, new ContinualFitOptions { Completed = s => statistics = s });
        Assert.Equal(96, seen);
        Assert.Equal((double)right / seen, Assert.Single(statistics!.EpochTrainingAccuracy));
        Assert.InRange(right, 1, 95); // it learns while it goes (the first class is right from its second batch) but is not perfect
        StepProbe.Reset(null, null);
        var streamed = Small(new FineTuneTrainer.Options { ShuffleRows = false, MemoryBudgetMegabytes = 64 });
        var refused = Assert.Throws<NotSupportedException>(() => ml.Continual().Trainers.FineTune(streamed).Fit(ml.Data.LoadFromEnumerable(grouped)));
        Assert.Contains("ShuffleRows", refused.Message);
    }

    [Fact]
    public void Mir_ReplaysTheCandidatesAVirtualStepHurtsMost()
    {
        var ml = new MLContext(seed: 1);
        int compared = 0;
        StepProbe.Reset(null, (context, step) =>
        {
            var mir = (MirPlugin)context.State.Plugins.Items[0];
            var buffer = mir.Buffer;
            var replayed = step.ExtraBatchesOf(mir).SingleOrDefault();
            if (buffer is null || replayed is null || buffer.Count != 30) return; // candidates = the whole memory once it is full
            // Independently: one SGD step of the task batch's loss on a copy; interference = loss after − loss before, per row.
            var network = context.Network;
            using var copy = network.Copy();
            Tensor[] gradients;
            using (enable_grad())
            {
                var loss = nn.functional.cross_entropy(network.Forward(step.TaskBatch.Features, null), step.TaskBatch.Targets);
                gradients = autograd.grad([loss], network.OrderedParameters().Select(p => (Tensor)p.Value).ToList()).ToArray();
            }
            var parameters = copy.OrderedParameters();
            for (int i = 0; i < parameters.Count; i++) parameters[i].Value.add_(gradients[i], alpha: -context.Options.LearningRate);
            var rows = buffer.Features!;
            var before = nn.functional.cross_entropy(network.Forward(rows, null), buffer.Targets!, reduction: nn.Reduction.None);
            var after = nn.functional.cross_entropy(copy.Forward(rows, null), buffer.Targets!, reduction: nn.Reduction.None);
            var top = (after - before).topk(6).indexes;
            var expected = rows.index_select(0, top).data<float>().ToArray().Chunk(Row.Size).Select(r => string.Join(",", r)).Order().ToArray();
            var actual = replayed.Batch.Features.data<float>().ToArray().Chunk(Row.Size).Select(r => string.Join(",", r)).Order().ToArray();
            Assert.Equal(expected, actual);
            compared++;
        });
        var mirPlugin = new MirPlugin { MemorySize = 30, Candidates = 30, MinibatchSize = 6 };
        var trainer = ml.Continual().Trainers.Compose(Small(new ComposedTrainer.Options { Optimizer = ContinualOptimizer.Sgd }), mirPlugin, new StepProbe());
        var model = trainer.Fit(TestData.View(ml, 0, [0, 1, 2], 90, 1));
        ml.Continual().Refit(model, TestData.View(ml, 1, [3, 4], 90, 2));
        StepProbe.Reset(null, null);
        Assert.True(compared >= 10, $"{compared} steps compared");
    }

    [Fact]
    public void GDumb_GreedySampler_StaysClassBalanced_WhateverTheOrderOfClasses()
    {
        using var scope = NewDisposeScope();
        // Six rows of class 0 then two of class 1 into a memory of four: class 0 fills it, then each class-1 row takes the
        // place of a class-0 row (class 0 is the largest), ending two and two.
        int[] classes = [0, 0, 0, 0, 0, 0, 1, 1];
        using var task = new ContinualTaskData(arange(8, dtype: float32).unsqueeze(1), tensor(classes.Select(c => (long)c).ToArray()), null);
        var memory = ExampleMemory.Empty.Greedy(task, 0, classes, 4, new Random(1));
        Assert.Equal([0, 0, 1, 1], memory.ClassOf.Order().ToArray());
        // A third class later: the largest classes give up rows until all three are within one of each other.
        int[] next = [2, 2, 2, 2];
        using var third = new ContinualTaskData(arange(4, dtype: float32).unsqueeze(1), full([4], 2L, ScalarType.Int64), null);
        memory = memory.Greedy(third, 1, next, 4, new Random(2));
        var counts = memory.ClassOf.GroupBy(c => c).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(4, memory.Count);
        Assert.Equal(3, counts.Count);
        Assert.True(counts.Values.Max() - counts.Values.Min() <= 1, string.Join(",", counts));
    }

    [Fact]
    public void GDumb_KeepsEveryClassBalancedAcrossTasks_AndRelearnsTheFirstFromItsMemory()
    {
        var ml = new MLContext(seed: 1);
        var options = Small(new GDumbTrainer.Options { MemorySize = 60 });
        options.NumberOfEpochs = 100; // 60 rows: four steps an epoch
        var model = (ContinualTransformer)ml.Continual().Trainers.GDumb(options).Fit(TestData.View(ml, 0, [0, 1], 100, 1));
        for (int task = 1; task < 3; task++)
            model = (ContinualTransformer)ml.Continual().Refit(model, TestData.View(ml, task, [2 * task, 2 * task + 1], 100, 1 + task));
        var memory = ((GDumbPlugin)model.State.Plugins.Items.Single()).Memory;
        var perClass = memory.ClassOf.GroupBy(c => c).Select(g => g.Count()).ToArray();
        Assert.Equal(6, perClass.Length);
        Assert.All(perClass, n => Assert.Equal(10, n));
        // The first task's classes are still recognised after two more tasks: the model learnt them again from the memory.
        double first = TestData.Accuracy(model, TestData.View(ml, 0, [0, 1], 200, 9));
        Assert.True(first > 0.9, $"first task's accuracy {first:F3}");
    }

    [Fact]
    public void Lwf_Loss_IsTheWeightedCrossEntropyAndDistillationOfThePreviousModel()
    {
        var ml = new MLContext(seed: 1);
        ContinualNetwork? teacher = null;
        var seenBefore = new HashSet<long>();
        var seen = new HashSet<long>();
        StepProbe.Reset(context =>
        {
            teacher?.Dispose();
            teacher = context.TaskIndex == 0 ? null : context.Network.Copy();
            seenBefore = new HashSet<long>(seen);
            seen.UnionWith(context.Task.Targets.unique().output.data<long>().ToArray());
        }, (context, step) =>
        {
            if (teacher is null) return;
            var logits = step.TaskOutputs!;
            long[] active = seen.Order().ToArray();
            using var columns = tensor(active);
            var student = logits.index_select(1, columns);
            double t = context.TaskIndex + 1, temperature = 2;
            using var positions = tensor(step.TaskBatch.Targets.data<long>().ToArray().Select(c => (long)Array.IndexOf(active, c)).ToArray());
            var crossEntropy = nn.functional.cross_entropy(student, positions).item<float>();
            // KL(p ‖ q) with p the teacher's softmax over the classes it knew (0 on the new ones), q the student's, both at T.
            var old = teacher.Forward(step.TaskBatch.Features, null) / temperature;
            var oldMask = tensor(active.Select(c => !seenBefore.Contains(c)).ToArray()).unsqueeze(0);
            var p = nn.functional.pad(old, [0, Math.Max(0, logits.shape[1] - old.shape[1])]).index_select(1, columns).masked_fill(oldMask, float.NegativeInfinity).softmax(1);
            var logQ = (student / temperature).log_softmax(1);
            var kl = (p * (p.clamp_min(1e-30).log() - logQ)).sum(1).mean().item<float>() * temperature * temperature;
            double expected = crossEntropy / t + (1 - 1 / t) * kl;
            double actual = step.LossTerms.Sum(term => term.Value.item<float>());
            Assert.Equal(expected, actual, 4);
        });
        var trainer = ml.Continual().Trainers.Compose(Small(new ComposedTrainer.Options()), new LwfPlugin(), new StepProbe());
        var model = trainer.Fit(TestData.View(ml, 0, [0, 1], 80, 1));
        int before = StepProbe.Checks;
        ml.Continual().Refit(model, TestData.View(ml, 1, [2, 3], 80, 2));
        Assert.True(StepProbe.Checks - before >= 10);
        StepProbe.Reset(null, null);
        teacher?.Dispose();
    }

    [Fact]
    public void Icarl_DistillationTargets_AreTheTeachersForOldClasses_AndTaskFreeTheRowsOwnLabelStaysOne()
    {
        // One row of class 0; classes 0 and 1 seen and both known to the teacher, class 2 never seen; T = 2.
        using var logits = tensor(new[] { 0.5f, -1f, 3f }).reshape(1, 3);
        using var labels = tensor(new[] { 0L });
        using var teacher = tensor(new[] { -2f, 2f, 0f }).reshape(1, 3);
        bool[] seen = [true, true, false], before = [true, true, false];
        static double Bce(double o, double t) => -(t * Math.Log(1 / (1 + Math.Exp(-o))) + (1 - t) * Math.Log(1 - 1 / (1 + Math.Exp(-o))));
        double s0 = 1 / (1 + Math.Exp(1)), s1 = 1 / (1 + Math.Exp(-1)); // σ(−2/2), σ(2/2)
        // Their Algorithm 3: both targets the teacher's; class 2 is left out.
        Assert.Equal(Bce(0.5, s0) + Bce(-1, s1), IcarlPlugin.DistillationLoss(logits, labels, teacher, seen, before, 2, labelWins: false).item<float>(), 5);
        // Task-free: the row's own class 0 keeps target 1; class 1 the teacher's.
        Assert.Equal(Bce(0.5, 1) + Bce(-1, s1), IcarlPlugin.DistillationLoss(logits, labels, teacher, seen, before, 2, labelWins: true).item<float>(), 5);
        // No teacher: one-hot.
        Assert.Equal(Bce(0.5, 1) + Bce(-1, 0), IcarlPlugin.DistillationLoss(logits, labels, null, seen, before, 2, labelWins: true).item<float>(), 5);
    }

    [Fact]
    public void Icarl_TaskFree_ReplaysExemplarsAtEveryStep_AndHerdsTheRowsOfEachBoundaryIntoABoundedMemory()
    {
        var ml = new MLContext(seed: 1);
        var seen = new HashSet<long>();
        int plainSteps = 0, replayedSteps = 0;
        StepProbe.Reset(null, (context, step) =>
        {
            seen.UnionWith(step.TaskBatch.Targets.unique().output.data<long>().ToArray());
            var terms = step.LossTerms.Select(t => t.Name).ToList();
            if (context.BoundariesPassed == 0)
            {
                // No teacher and no exemplars yet: the binary cross-entropy over the classes seen so far, one-hot targets.
                Assert.Empty(step.ExtraBatches);
                long[] active = seen.Order().ToArray();
                var logits = step.TaskOutputs!.index_select(1, tensor(active));
                var targets = nn.functional.one_hot(step.TaskBatch.Targets, step.TaskOutputs!.shape[1]).to_type(ScalarType.Float32).index_select(1, tensor(active));
                float expected = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction: nn.Reduction.None).sum(1).mean().item<float>();
                Assert.Equal(expected, step.LossTerms.Single(t => t.Name == "task").Value.item<float>(), 5);
                plainSteps++;
                return;
            }
            // After a boundary: as many exemplars as the batch's 16 rows, trained with their own term; the two terms are
            // the distillation loss of each (the row's own label kept at 1) weighted by their shares of the 32 rows.
            var replayed = Assert.Single(step.ExtraBatches);
            Assert.Equal(16, replayed.Batch.Rows);
            Assert.Equal(["task", "exemplars"], terms);
            var (teacher, known, knownBefore) = context.State.Plugins.Items.OfType<IcarlPlugin>().Single().Distillation;
            float Expected(Tensor outputs, ContinualBatch batch) =>
                IcarlPlugin.DistillationLoss(outputs, batch.Targets, teacher!.Forward(batch.Features, null), known, knownBefore, 2, labelWins: true).item<float>() * 0.5f;
            Assert.Equal(Expected(step.TaskOutputs!, step.TaskBatch), step.LossTerms[0].Value.item<float>(), 5);
            Assert.Equal(Expected(replayed.Outputs, replayed.Batch), step.LossTerms[1].Value.item<float>(), 5);
            // The rule matters here: the batch's own classes are old to the teacher, so the paper's targets differ.
            if (step.TaskBatch.Targets.unique().output.data<long>().All(c => knownBefore[c]))
                Assert.NotEqual(Expected(step.TaskOutputs!, step.TaskBatch),
                    IcarlPlugin.DistillationLoss(step.TaskOutputs!, step.TaskBatch.Targets, teacher!.Forward(step.TaskBatch.Features, null), known, knownBefore, 2, labelWins: false).item<float>() * 0.5f, 4);
            replayedSteps++;
        });
        // One pass over classes 0-1 then 2-3, in order, a boundary every 4 steps (10 batches of 16).
        var options = Small(new ComposedTrainer.Options());
        options.NumberOfEpochs = 1;
        options.ShuffleRows = false;
        options.Boundaries = ContinualBoundaries.EverySteps;
        options.BoundaryEverySteps = 4;
        var rows = TestData.Rows(0, [0, 1], 80, 1).Concat(TestData.Rows(0, [2, 3], 80, 2)).ToList();
        var model = (ContinualTransformer)ml.Continual().Trainers.Compose(options, new IcarlPlugin { MemorySize = 40 }, new StepProbe()).Fit(ml.Data.LoadFromEnumerable(rows));
        Assert.Equal((4, 6), (plainSteps, replayedSteps));
        var icarl = model.State.Plugins.Items.OfType<IcarlPlugin>().Single();
        // Boundaries after steps 4 and 8 and the fit's end: three groups of rows offered, 40 kept, 10 per class.
        Assert.Equal(40, icarl.Memory.Count);
        Assert.Equal([10, 10, 10, 10], icarl.Memory.ClassOf.GroupBy(c => c).OrderBy(g => g.Key).Select(g => g.Count()));
        Assert.Equal(3, icarl.Memory.TaskOf.Distinct().Count());
        Assert.Equal([true, true, true, true], icarl.ClassMeans!.Value.HasMean.data<bool>().ToArray());
        // The nearest-mean classifier scores the four classes.
        Assert.True(TestData.Accuracy(model, ml.Data.LoadFromEnumerable(rows)) > 0.6);
        StepProbe.Reset(null, null);
    }

    [Fact]
    public void Icarl_PredictsTheNearestMeanOfExemplars()
    {
        var ml = new MLContext(seed: 1);
        var options = Small(new IcarlTrainer.Options { MemorySize = 40 });
        var model = (ContinualTransformer)ml.Continual().Trainers.Icarl(options).Fit(TestData.View(ml, 0, [0, 1], 120, 1));
        model = (ContinualTransformer)ml.Continual().Refit(model, TestData.View(ml, 1, [2, 3], 120, 2));
        var icarl = (IcarlPlugin)model.State.Plugins.Items.Single();
        Assert.Equal(40, icarl.Memory.Count);
        Assert.All(icarl.Memory.ClassOf.GroupBy(c => c), g => Assert.Equal(10, g.Count()));

        // Independently: φ = normalised last hidden layer; μ_y = normalised mean of class y's exemplars' φ; y* = argmin ‖φ(x) − μ_y‖.
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var network = model.State.Network;
        var exemplars = icarl.Memory.ToDevice(CPU)!;
        var phiExemplars = nn.functional.normalize(network.Embed(exemplars.Features), p: 2, dim: 1);
        long[] exemplarClass = exemplars.Targets.data<long>().ToArray();
        var means = Enumerable.Range(0, 4).Select(c =>
            nn.functional.normalize(phiExemplars.index_select(0, tensor(Enumerable.Range(0, exemplarClass.Length).Where(i => exemplarClass[i] == c).Select(i => (long)i).ToArray())).mean([0]), p: 2, dim: 0)).ToArray();
        var rows = TestData.Rows(0, [0, 1], 50, 5).Concat(TestData.Rows(1, [2, 3], 50, 5)).ToList();
        var features = tensor(rows.SelectMany(r => r.Features).ToArray(), [rows.Count, Row.Size]);
        var phi = nn.functional.normalize(network.Embed(features), p: 2, dim: 1);
        var nearest = stack(means.Select(m => (phi - m).square().sum(1)).ToArray(), 1).argmin(1).data<long>().ToArray();
        var scored = model.Transform(ml.Data.LoadFromEnumerable(rows));
        var classes = model.Classes.ToList();
        var predicted = scored.GetColumn<ReadOnlyMemory<char>>("PredictedLabel").Select(k => (long)classes.IndexOf(k.ToString())).ToArray();
        Assert.Equal(nearest, predicted);
        Assert.True(TestData.Accuracy(model, ml.Data.LoadFromEnumerable(rows)) > 0.8);
    }

    [Fact]
    public void Bic_ScoresAreTheNetworksLogitsWithEachTasksNewClassesCorrected()
    {
        var ml = new MLContext(seed: 1);
        var model = (ContinualTransformer)ml.Continual().Trainers.Bic(Small(new BicTrainer.Options { MemorySize = 40, BiasEpochs = 100 })).Fit(TestData.View(ml, 0, [0, 1], 120, 1));
        model = (ContinualTransformer)ml.Continual().Refit(model, TestData.View(ml, 1, [2, 3], 120, 2));
        Assert.Equal(1, model.StateSizes["bias corrections"]); // the first task has no old classes to correct against
        var rows = TestData.Rows(1, [0, 1, 2, 3], 40, 5);
        var scores = TestData.Scores(model, ml.Data.LoadFromEnumerable(rows));
        using var _ = no_grad();
        var logits = model.State.Network.Forward(tensor(rows.SelectMany(r => r.Features).ToArray(), [rows.Count, Row.Size]), null);
        // Score = softmax(q), q_k = α o_k + β on the new classes (2 and 3), o_k on the old: solve α, β from two rows' scores.
        var o = logits.data<float>().ToArray();
        double RatioLog(int row, int k, int old) => Math.Log(scores[row * 4 + k] / scores[row * 4 + old]); // q_k − q_old
        // q_2 − q_0 = α o_2 + β − o_0, for rows 0 and 1: two equations in α and β.
        double y0 = RatioLog(0, 2, 0) + o[0], y1 = RatioLog(1, 2, 0) + o[4];
        double alpha = (y0 - y1) / (o[2] - o[6]), beta = y0 - alpha * o[2];
        Assert.False(Math.Abs(alpha - 1) < 1e-3 && Math.Abs(beta) < 1e-3, "the correction does something");
        for (int row = 0; row < rows.Count; row++)
        {
            double[] q = [o[row * 4], o[row * 4 + 1], alpha * o[row * 4 + 2] + beta, alpha * o[row * 4 + 3] + beta];
            double max = q.Max(), sum = q.Sum(v => Math.Exp(v - max));
            // A tolerance, not rounding to 4 decimals: the float scores and this double recomputation differ by about 1e-7,
            // which rounding turns into a failure when a value sits on a rounding boundary (0.676349998 against 0.676350117).
            for (int k = 0; k < 4; k++) Assert.Equal(Math.Exp(q[k] - max) / sum, scores[row * 4 + k], 1e-5);
        }
    }

    [Fact]
    public void ClassIncrementalSplitMnist_EveryRehearsalMethodBeatsFineTune_AndLwfDoesInTaskIncremental()
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
        double Acc(IEstimator<ITransformer> trainer, TaskStream s) =>
            ml.Continual().Run(trainer, s, new ContinualRunOptions { EvaluateBeforeTraining = false }).Metrics.AverageAccuracy;
        double fineTune = Acc(ml.Continual().Trainers.FineTune(Setup(new FineTuneTrainer.Options())), stream);
        Assert.True(fineTune < 0.45, $"FineTune ACC {fineTune:F4}");
        var methods = new (string Name, IEstimator<ITransformer> Trainer)[]
        {
            ("DER++", ml.Continual().Trainers.DerPlusPlus(Setup(new DerPlusPlusTrainer.Options { MemorySize = 200 }))),
            ("ER-ACE", ml.Continual().Trainers.ErAce(Setup(new ErAceTrainer.Options { MemorySize = 200 }))),
            ("MIR", ml.Continual().Trainers.Mir(Setup(new MirTrainer.Options { MemorySize = 200 }))),
            ("GDumb", ml.Continual().Trainers.GDumb(new GDumbTrainer.Options { MemorySize = 200, HiddenLayerSizes = [100], Seed = 1 })), // its own epochs and batch size
            ("iCaRL", ml.Continual().Trainers.Icarl(Setup(new IcarlTrainer.Options { MemorySize = 200 }))),
            ("BiC", ml.Continual().Trainers.Bic(Setup(new BicTrainer.Options { MemorySize = 200 }))),
        };
        var failures = new List<string>();
        foreach (var (name, trainer) in methods)
        {
            double acc = Acc(trainer, stream);
            if (!(acc > fineTune + 0.15)) failures.Add($"{name} ACC {acc:F4} vs FineTune {fineTune:F4}");
        }
        Assert.Empty(failures);

        var taskStream = ml.Continual().Benchmarks.SplitMnist(ContinualScenario.TaskIncremental, numberOfTasks: 3, trainSamplesPerTask: 2000, testSamplesPerTask: 400, seed: 1);
        double taskFineTune = Acc(ml.Continual().Trainers.FineTune(Setup(new FineTuneTrainer.Options())), taskStream);
        double lwf = Acc(ml.Continual().Trainers.Lwf(Setup(new LwfTrainer.Options())), taskStream);
        Assert.True(lwf > taskFineTune, $"LwF ACC {lwf:F4} vs FineTune {taskFineTune:F4} (task-incremental)");
    }
}
