using Microsoft.ML.Data;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

/// <summary>Records where the loop consolidates with boundaries inside a fit: the step and the sample's size of every
/// boundary, and of the fit's end.</summary>
public sealed class BoundaryProbe : ContinualPlugin
{
    public const string RegisteredName = "Tests.BoundaryProbe";
    static BoundaryProbe() => ContinualPlugins.Register<BoundaryProbe>(RegisteredName);

    /// <summary>What each tag's fits recorded (the loop trains a copy of the plugin, so the record is kept by tag).</summary>
    public sealed class Record
    {
        public List<(long Step, long Rows, int Passed)> Boundaries { get; } = [];
        public (long Step, long Rows)? End { get; set; }
        public List<float> FirstFeatureOfSample { get; } = [];
    }

    public static readonly System.Collections.Concurrent.ConcurrentDictionary<string, Record> Records = new();

    public string Tag { get; set; } = "";

    public Record Recorded => Records.GetOrAdd(Tag, _ => new Record());

    public override string? WhyNotBoundariesInsideFit => null;

    public override void AtBoundary(ContinualTrainingContext context)
    {
        Recorded.Boundaries.Add((context.Step, context.Task.Count, context.BoundariesPassed));
        Recorded.FirstFeatureOfSample.AddRange(context.Task.Features.select(1, 0).data<float>().ToArray());
    }

    public override void AfterTask(ContinualTrainingContext context) => Recorded.End = (context.Step, context.Task.Count);
}

/// <summary>Records each step's loss terms, and the cross-entropy of the task batch over all outputs (after the plugins before it).</summary>
public sealed class LossTermProbe : ContinualPlugin
{
    public const string RegisteredName = "Tests.LossTermProbe";
    static LossTermProbe() => ContinualPlugins.Register<LossTermProbe>(RegisteredName);

    public static readonly System.Collections.Concurrent.ConcurrentDictionary<string, List<(long Step, Dictionary<string, double> Terms, double CrossEntropy)>> Records = new();

    public string Tag { get; set; } = "";

    public override string? WhyNotBoundariesInsideFit => null;

    public override void AtBoundary(ContinualTrainingContext context) { }

    public override void BeforeBackward(ContinualTrainingContext context, ContinualStep step)
    {
        double crossEntropy = TorchSharp.torch.nn.functional.cross_entropy(step.TaskOutputs!, step.TaskBatch.Targets).item<float>();
        Records.GetOrAdd(Tag, _ => []).Add((context.Step, step.LossTerms.ToDictionary(t => t.Name, t => (double)t.Value.item<float>()), crossEntropy));
    }
}

/// <summary>Boundaries inside a fit (ContinualBoundaries.EverySteps): where they fall, what the methods consolidate on,
/// that state does not grow with their number, and the methods that refuse.</summary>
public sealed class BoundaryTests
{
    private static IDataView Rows(MLContext ml, int count) => ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1, 2], count, seed: 4));

    private static ComposedTrainer.Options Options(int everySteps, int epochs = 1) => new()
    {
        HiddenLayerSizes = [8], BatchSize = 10, NumberOfEpochs = epochs, Seed = 2, ShuffleRows = false,
        Boundaries = ContinualBoundaries.EverySteps, BoundaryEverySteps = everySteps, BoundarySampleRows = 40, ShiftReferenceRows = 0,
    };

    [Fact]
    public void EverySteps_ConsolidatesAfterEachNSteps_OnAUniformSampleOfTheRowsSince_AndTheFitsEndOnTheRest()
    {
        var ml = new MLContext(seed: 1);
        var probe = new BoundaryProbe { Tag = Guid.NewGuid().ToString() };
        ContinualFitStatistics? statistics = null;
        // 200 rows, batches of 10: 20 steps; a boundary after steps 6, 12 and 18 (passed when the next step starts).
        ml.Continual().Trainers.Compose(Options(6), probe).Fit(Rows(ml, 200), null, new ContinualFitOptions { Completed = s => statistics = s });
        Assert.Equal([(6L, 40L, 1), (12L, 40L, 2), (18L, 40L, 3)], probe.Recorded.Boundaries);
        Assert.Equal((20L, 20L), probe.Recorded.End); // steps 19 and 20: 20 rows, fewer than the sample's 40
        Assert.Equal(3, statistics!.BoundariesPassed);
        // Each sample holds rows of its own window only: 60 rows offered, 40 kept, none from an earlier window.
        var rows = TestData.Rows(0, [0, 1, 2], 200, seed: 4);
        for (int b = 0; b < 3; b++)
        {
            var window = rows.Skip(60 * b).Take(60).Select(r => r.Features[0]).ToHashSet();
            Assert.All(probe.Recorded.FirstFeatureOfSample.Skip(40 * b).Take(40), f => Assert.Contains(f, window));
            Assert.Equal(40, probe.Recorded.FirstFeatureOfSample.Skip(40 * b).Take(40).Distinct().Count());
        }

        // A boundary that falls on the fit's last step is its end's consolidation (once, on those rows), not one more.
        var exact = new BoundaryProbe { Tag = Guid.NewGuid().ToString() };
        ml.Continual().Trainers.Compose(Options(20), exact).Fit(Rows(ml, 200));
        Assert.Empty(exact.Recorded.Boundaries);
        Assert.Equal((20L, 40L), exact.Recorded.End);
        // Across epochs: the boundary after the first epoch's last step is passed when the second epoch starts.
        var twoEpochs = new BoundaryProbe { Tag = Guid.NewGuid().ToString() };
        ml.Continual().Trainers.Compose(Options(20, epochs: 2), twoEpochs).Fit(Rows(ml, 200));
        Assert.Equal([(20L, 40L, 1)], twoEpochs.Recorded.Boundaries);
        Assert.Equal((40L, 40L), twoEpochs.Recorded.End);
    }

    [Fact]
    public void OnlineRegularizers_KeepTheSameStateAfterTenTimesMoreBoundaries_AndAGemItsMemorySize()
    {
        var ml = new MLContext(seed: 1);
        var data = Rows(ml, 400);
        foreach (Func<ContinualPlugin> Make in new Func<ContinualPlugin>[] { () => new EwcPlugin { Mode = EwcMode.Online, FisherSamples = 50 }, () => new SiPlugin(), () => new RWalkPlugin(), () => new MasPlugin { ImportanceSamples = 50 } })
        {
            var sizes = new List<IReadOnlyDictionary<string, long>>();
            var passed = new List<int>();
            foreach (int every in new[] { 20, 2 })
            {
                ContinualFitStatistics? statistics = null;
                var model = ml.Continual().Trainers.Compose(Options(every), Make()).Fit(data, null, new ContinualFitOptions { Completed = s => statistics = s });
                sizes.Add(model.StateSizes);
                passed.Add(statistics!.BoundariesPassed);
                Assert.Equal(1, model.StateSizes["penalty terms"]);
            }
            Assert.Equal([1, 19], passed); // 40 steps: boundaries after 20 (1), or after 2, 4, ..., 38 (19)
            Assert.Equal(sizes[0], sizes[1]);
        }

        // A-GEM: each window's sample joins the memory as a group of its own, the memory never above its size.
        foreach (int every in new[] { 20, 2 })
        {
            var model = ml.Continual().Trainers.Compose(Options(every), new AGemPlugin { MemorySize = 60 }).Fit(data);
            Assert.Equal(60, model.StateSizes["memory rows"]);
            Assert.Equal(every == 20 ? 2 : 20, model.StateSizes["memory tasks"]); // one group per consolidation: boundaries and the end
        }

        // Replay, task-balanced: the same, and its draws for the minibatches come from the memory as it then is.
        foreach (int every in new[] { 20, 2 })
        {
            var model = ml.Continual().Trainers.Compose(Options(every), new ReplayPlugin { MemorySize = 60, BufferPolicy = ReplayBufferPolicy.TaskBalanced }).Fit(data);
            Assert.Equal(60, model.StateSizes["memory rows"]);
            Assert.Equal(every == 20 ? 2 : 20, model.StateSizes["memory tasks"]);
        }
    }

    [Fact]
    public void BoundaryThatResetsTheOptimizer_AtTheStretchesEnds_IsTheSameModelAsOneFitPerStretch_ToTheBit()
    {
        // FineTune consolidates nothing: what a given boundary changes is only the new fit's new optimizer. With
        // BoundaryResetsOptimizer, a boundary after each stretch's 10 steps does the same, so the models are equal.
        var ml = new MLContext(seed: 1);
        var rows = TestData.Rows(0, [0, 1, 2], 200, seed: 4);
        var options = Options(10);
        options.BoundaryResetsOptimizer = true;
        var onePass = ml.Continual().Trainers.Compose(options, []).Fit(ml.Data.LoadFromEnumerable(rows));
        var given = Options(1);
        given.Boundaries = ContinualBoundaries.Given;
        var first = ml.Continual().Trainers.Compose(given, []).Fit(ml.Data.LoadFromEnumerable(rows.Take(100)));
        var second = (ContinualTransformer)ml.Continual().Refit(first, ml.Data.LoadFromEnumerable(rows.Skip(100)));
        var test = TestData.View(ml, 0, [0, 1, 2], 50, seed: 8);
        Assert.Equal(TestData.Bytes(TestData.Scores(second, test)), TestData.Bytes(TestData.Scores(onePass, test)));
        // Without the reset the optimizer's moments go on, and the model differs.
        var goingOn = ml.Continual().Trainers.Compose(Options(10), []).Fit(ml.Data.LoadFromEnumerable(rows));
        Assert.NotEqual(TestData.Bytes(TestData.Scores(second, test)), TestData.Bytes(TestData.Scores(goingOn, test)));
    }

    [Fact]
    public void AGemAndScpTrainers_ResetTheOptimizerAtBoundariesInsideAFit_ByDefault_AndAUserCanTurnItOff()
    {
        // Their defaults (docs/benchmarks.md): the trainers' fits equal the same plugins composed with the reset on, to
        // the bit, and differ from them with it off; setting it false on the trainer's options gives the composed model
        // without the reset.
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1, 2], 200, seed: 4));
        var test = TestData.View(ml, 0, [0, 1, 2], 50, seed: 8);
        T InFit<T>(T o) where T : ContinualTrainerOptions
        {
            o.HiddenLayerSizes = [8]; o.BatchSize = 10; o.NumberOfEpochs = 1; o.Seed = 2; o.ShuffleRows = false; o.ShiftReferenceRows = 0;
            o.Boundaries = ContinualBoundaries.EverySteps; o.BoundaryEverySteps = 5; o.BoundarySampleRows = 40;
            return o;
        }
        byte[] Composed(bool reset, ContinualPlugin plugin)
        {
            var options = InFit(new ComposedTrainer.Options());
            options.BoundaryResetsOptimizer = reset;
            return TestData.Bytes(TestData.Scores(ml.Continual().Trainers.Compose(options, plugin).Fit(data), test));
        }
        Assert.True(new AGemTrainer.Options().BoundaryResetsOptimizer);
        Assert.True(new ScpTrainer.Options().BoundaryResetsOptimizer);
        Assert.False(new EwcTrainer.Options().BoundaryResetsOptimizer);

        var agem = TestData.Bytes(TestData.Scores(ml.Continual().Trainers.AGem(InFit(new AGemTrainer.Options { MemorySize = 60 })).Fit(data), test));
        Assert.Equal(Composed(true, new AGemPlugin { MemorySize = 60 }), agem);
        Assert.NotEqual(Composed(false, new AGemPlugin { MemorySize = 60 }), agem);
        var agemOff = InFit(new AGemTrainer.Options { MemorySize = 60 });
        agemOff.BoundaryResetsOptimizer = false;
        Assert.Equal(Composed(false, new AGemPlugin { MemorySize = 60 }), TestData.Bytes(TestData.Scores(ml.Continual().Trainers.AGem(agemOff).Fit(data), test)));

        var scp = TestData.Bytes(TestData.Scores(ml.Continual().Trainers.Scp(InFit(new ScpTrainer.Options())).Fit(data), test));
        Assert.Equal(Composed(true, new ScpPlugin { Lambda = 1e6 }), scp);
        Assert.NotEqual(Composed(false, new ScpPlugin { Lambda = 1e6 }), scp);
    }

    [Fact]
    public void LossPlateauDetector_ConsolidatesOnAPlateau_ThenOnlyAfterAPeak()
    {
        // Window 3, plateau below mean 0.5 and variance 0.1. Hand-checked: the 5th window (0.4, 0.3, 0.3) has mean 0.333 and
        // variance 0.0022: the first plateau. Two more losses of 0.3 stay below 0.333 + 0.047: no peak, no boundary. A loss
        // of 1.5 lifts the mean to 0.7 (a peak); the window of three 0.2 is the next plateau.
        var detector = new LossPlateauDetector(3, 0.5, 0.1);
        double[] losses = [2, 1, 0.4, 0.3, 0.3, 0.3, 0.3, 1.5, 0.2, 0.2, 0.2, 0.2];
        bool[] expected = [false, false, false, false, true, false, false, false, false, false, true, false];
        Assert.Equal(expected, losses.Select(detector.Observe));

        // In a fit: with thresholds every loss meets, the first step's window is a plateau (no peak is needed for the
        // first), passed as the second step starts; later ones need a peak.
        var ml = new MLContext(seed: 1);
        var probe = new BoundaryProbe { Tag = Guid.NewGuid().ToString() };
        var options = Options(1000);
        options.Boundaries = ContinualBoundaries.OnLossPlateau;
        options.BoundaryLossMean = 1e6;
        options.BoundaryLossVariance = 1e6;
        ContinualFitStatistics? statistics = null;
        ml.Continual().Trainers.Compose(options, probe).Fit(Rows(ml, 200), null, new ContinualFitOptions { Completed = s => statistics = s });
        Assert.Equal((1L, 10L, 1), probe.Recorded.Boundaries[0]);
        Assert.Equal(probe.Recorded.Boundaries.Count, statistics!.BoundariesPassed);
    }

    [Fact]
    public void MethodsThatCannotConsolidateInsideAFit_RefuseIt_SayingWhy()
    {
        var ml = new MLContext(seed: 1);
        var separate = Assert.Throws<NotSupportedException>(() => ml.Continual().Trainers.Compose(Options(5), new EwcPlugin()).Fit(Rows(ml, 50)));
        Assert.Contains("Mode = Online", separate.Message);
        var packNet = Assert.Throws<NotSupportedException>(() => ml.Continual().Trainers.PackNet(new PackNetTrainer.Options
        {
            TaskIdColumnName = "Task", HiddenLayerSizes = [8], Boundaries = ContinualBoundaries.EverySteps,
        }).Fit(Rows(ml, 50)));
        Assert.Contains("PackNet", packNet.Message);
        Assert.Contains("Boundaries = Given", packNet.Message);
        var bic = Assert.Throws<NotSupportedException>(() => ml.Continual().Trainers.Compose(Options(5), new BicPlugin()).Fit(Rows(ml, 50)));
        Assert.Contains("bias correction", bic.Message);
        var gdumb = Assert.Throws<NotSupportedException>(() => ml.Continual().Trainers.Compose(Options(5), new GDumbPlugin()).Fit(Rows(ml, 50)));
        Assert.Contains("greedy memory before training starts", gdumb.Message);
        using var temp = new TempFolder();
        // L2 supports checkpoints, so the refusal is the boundaries' own (SI would be refused for its own reason first).
        var checkpoint = Assert.Throws<NotSupportedException>(() => ml.Continual().Trainers.Compose(Options(5), new L2Plugin())
            .Fit(Rows(ml, 50), null, new ContinualFitOptions { CheckpointPath = Path.Combine(temp.Path, "c.ckpt") }));
        Assert.Contains("sample of rows since the last boundary", checkpoint.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.Continual().Trainers.Compose(new ComposedTrainer.Options { BoundaryEverySteps = 0 }, new SiPlugin()).Fit(Rows(ml, 50)));
    }

    [Fact]
    public void FuzzySplit_BlendsNeighbouringGroupsLinearlyAroundEachBoundary_AndTrainingInOrderJoinsTheStretches()
    {
        // Hand-checked blend: 10 batches per group, F = 2: the later group's probability in batches 8, 9 | 10, 11 is
        // 1/8, 3/8 | 5/8, 7/8, so a uniform draw of 0.5 stays in group 0 up to batch 9 and moves to group 1 from batch 10.
        Assert.Equal([0, 0, 0, 1, 1, 1], new[] { 7, 8, 9, 10, 11, 12 }.Select(b => StreamBuilders.BlendedGroup(b, 10, 2, 2, 0.5)));
        Assert.Equal([0, 1, 1, 1], new[] { 7, 8, 10, 12 }.Select(b => StreamBuilders.BlendedGroup(b, 10, 2, 2, 0.1)));
        Assert.Equal([0, 0, 0, 1], new[] { 8, 10, 11, 12 }.Select(b => StreamBuilders.BlendedGroup(b, 10, 2, 2, 0.9)));

        var ml = new MLContext(seed: 1);
        var rows = TestData.Rows(0, [0, 1, 2, 3], 400, seed: 3);
        var stream = TaskStream.FuzzySplit(ml.Data.LoadFromEnumerable(rows), ml.Data.LoadFromEnumerable(rows), ContinualScenario.ClassIncremental,
            [[0, 1], [2, 3]], fuzzyBatches: 2, batchSize: 10, seed: 5);
        uint[] Labels(IDataView view) => view.GetColumn<uint>(view.Schema["Label"]).ToArray();
        uint[] first = Labels(stream[0].Train), second = Labels(stream[1].Train), joined = Labels(stream.TrainingInOrder());
        Assert.Equal(first.Concat(second), joined);
        // 200 rows a group (20 batches), each drawn at most once; where one group's rows ran out first, a few are not drawn.
        Assert.InRange(joined.Length, 380, 400);
        var features = stream.TrainingInOrder().GetColumn<float[]>(stream.TrainingInOrder().Schema["Features"]).Select(f => f[0]).ToList();
        Assert.Equal(features.Count, features.Distinct().Count());
        // Keys 1-2 are group 0's classes, 3-4 group 1's: pure away from the boundary (batch 20), mixed within two batches of it.
        Assert.All(joined.Take(180), l => Assert.InRange(l, 1u, 2u));
        Assert.All(first.Take(180), l => Assert.InRange(l, 1u, 2u));
        Assert.All(second.Skip(20), l => Assert.InRange(l, 3u, 4u));
        var blend = joined.Skip(180).Take(40).ToList();
        Assert.Contains(blend, l => l >= 3);
        Assert.Contains(blend, l => l <= 2);
        Assert.Throws<ArgumentException>(() => TaskStream.FuzzySplit(ml.Data.LoadFromEnumerable(rows), ml.Data.LoadFromEnumerable(rows), ContinualScenario.TaskIncremental, [[0, 1], [2, 3]], 2, 10));
        // Joining views whose keys name other classes would relabel rows: refused.
        var a = new ArrayDataView(2, [0, 1], 2, ["x", "y"], "t1", (r, d) => d.Fill(r));
        var b = new ArrayDataView(2, [0, 1], 2, ["y", "x"], "t2", (r, d) => d.Fill(r));
        var mixed = new TaskStream("mixed", ContinualScenario.ClassIncremental, [new ContinualTask("a", a, a), new ContinualTask("b", b, b)]);
        Assert.Contains("names its keys", Assert.Throws<ArgumentException>(() => mixed.TrainingInOrder()).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => TaskStream.FuzzySplit(ml.Data.LoadFromEnumerable(rows), ml.Data.LoadFromEnumerable(rows), ContinualScenario.ClassIncremental, [[0, 1], [2, 3]], 11, 10));
    }

    [Fact]
    public void Lwf_WithBoundariesInsideAFit_DistilsFromTheNetworkAsItWasAtTheLastBoundary_EachBoundaryCountedAsATask()
    {
        var ml = new MLContext(seed: 1);
        string tag = Guid.NewGuid().ToString();
        // 100 rows cycling through 3 classes, batches of 10: a boundary after steps 4 and 8 (passed as steps 5 and 9 start).
        ml.Continual().Trainers.Compose(Options(4), new LwfPlugin(), new LossTermProbe { Tag = tag }).Fit(Rows(ml, 100));
        var steps = LossTermProbe.Records[tag];
        Assert.Equal(10, steps.Count);
        foreach (var (step, terms, crossEntropy) in steps)
        {
            if (step < 4)
            {
                // No teacher before the first boundary: the plain cross-entropy (every class already seen in the first batch).
                Assert.False(terms.ContainsKey("distillation"), $"step {step + 1}");
                Assert.Equal(crossEntropy, terms["task"], 5);
                continue;
            }
            Assert.True(terms.ContainsKey("distillation"), $"step {step + 1}");
            // (1/t) of the cross-entropy, t = 1 task + the boundaries passed: 1/2 after the first, 1/3 after the second.
            Assert.Equal(crossEntropy / (1 + step / 4), terms["task"], 5);
            // Right after a boundary the teacher is the network itself (zero up to float rounding); then the step moves it away.
            // (Adam's first steps move it little: about 6e-6 one step after; float rounding alone gives about 2e-8.)
            if (step is 4 or 8) Assert.InRange(terms["distillation"], -5e-7, 5e-7); // either sign: rounding (baseline kernels gave −6e-9)
            else Assert.True(terms["distillation"] > 2e-6, $"step {step + 1}: {terms["distillation"]}");
        }
    }

    [Fact]
    public void OnInputShift_PlacesTheBoundaryInTheFirstBlockOfANewDomain_AndNoneBefore()
    {
        var ml = new MLContext(seed: 1);
        var probe = new BoundaryProbe { Tag = Guid.NewGuid().ToString() };
        // 600 rows of one domain then 600 of another, batches of 10, blocks of 50 rows (5 steps): rows 600-649 are the
        // first block of the new domain, complete after step 65.
        var rows = TestData.Rows(0, [0, 1, 2], 600, seed: 4).Concat(TestData.Rows(1, [0, 1, 2], 600, seed: 4));
        var options = Options(1);
        options.Boundaries = ContinualBoundaries.OnInputShift;
        options.BoundaryShiftRows = 50;
        ContinualFitStatistics? statistics = null;
        ml.Continual().Trainers.Compose(options, probe).Fit(ml.Data.LoadFromEnumerable(rows), null, new ContinualFitOptions { Completed = s => statistics = s });
        var steps = probe.Recorded.Boundaries.Select(b => b.Step).ToList();
        Assert.NotEmpty(steps);
        Assert.Equal(65L, steps[0]);
        // After it, the new domain is the reference: 22 more tests of one distribution at α = 0.01 (this seed has no false alarm).
        Assert.Equal([65L], steps);
        Assert.Equal(1, statistics!.BoundariesPassed);
    }

    [Fact]
    public void InputShiftDetector_FalseAlarmsAtMostAtItsLevel_OverManySeeds_AndFindsAMeanShift()
    {
        // 300 independent pairs of blocks from one distribution (64 features, so the projection is used): each pair is one
        // test at α = 0.05. Under the null the alarm count is Binomial(300, 0.05): mean 15, sd 3.8; 27 is the mean + 3 sd.
        int alarms = 0, found = 0;
        for (int seed = 0; seed < 300; seed++)
        {
            var detector = new InputShiftDetector(64, 40, 0.05, seed, savable: false);
            var random = new Random(seed);
            ContinualBatch Block(float shift)
            {
                var values = new float[40 * 64];
                for (int i = 0; i < values.Length; i++) values[i] = shift * (i % 64 < 8 ? 1 : 0) + (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
                return new ContinualBatch(TorchSharp.torch.tensor(values, [40, 64]), TorchSharp.torch.zeros(40, dtype: TorchSharp.torch.ScalarType.Int64), null);
            }
            Assert.False(detector.Observe(Block(0), 0)); // the first block only fills the reference
            if (detector.Observe(Block(0), 0)) alarms++;
            if (seed < 50 && detector.Observe(Block(1), 0)) found++; // 8 of 64 features moved by one standard deviation
        }
        Assert.InRange(alarms, 3, 27);
        Assert.True(found >= 45, $"the shift was found in {found} of 50 seeds");
    }

    [Fact]
    public void Gem_WithBoundariesInsideAFit_KeepsAtMostItsGroups_EachAReservoirOverTheWindowsAssignedToIt()
    {
        var ml = new MLContext(seed: 1);
        var rows = TestData.Rows(0, [0, 1, 2], 200, seed: 4);
        // Batches of 10, a boundary every 2 steps: windows of 20 rows (rows 20w to 20w + 19), 9 inside the fit and the end's.
        var gem = new GemPlugin { MemoriesPerTask = 20, MemoryGroupsInsideFit = 3 };
        var model = ml.Continual().Trainers.Compose(Options(2), gem).Fit(ml.Data.LoadFromEnumerable(rows));
        var memory = ((GemPlugin)model.State.Plugins.Items.Single()).Memory;
        Assert.Equal(60, memory.Count); // 3 groups of 20, whatever the number of windows
        Assert.Equal([0, 1, 2], memory.TaskOf.Distinct().Order());
        var firstFeature = rows.Select(r => r.Features[0]).ToList();
        float[] stored = memory.Features!.select(1, 0).data<float>().ToArray();
        var windowsOfGroup = Enumerable.Range(0, 3).Select(_ => new HashSet<int>()).ToArray();
        for (int i = 0; i < memory.Count; i++)
        {
            int window = firstFeature.IndexOf(stored[i]) / 20;
            Assert.Equal(window % 3, memory.TaskOf[i]); // window w joins group w mod 3
            windowsOfGroup[memory.TaskOf[i]].Add(window);
        }
        // Group 0 had windows 0, 3, 6 and 9 offered: a reservoir keeps rows of more than the first of them.
        Assert.True(windowsOfGroup[0].Count > 1, $"group 0 holds windows {string.Join(", ", windowsOfGroup[0])}");
        Assert.All(windowsOfGroup, w => Assert.NotEmpty(w));
    }

    [Fact]
    public void Gem_AfterAFitWithGivenBoundaries_KeepsThatTasksMemory_AndNumbersItsGroupsAfterIt()
    {
        var ml = new MLContext(seed: 1);
        var given = new ComposedTrainer.Options { HiddenLayerSizes = [8], BatchSize = 10, NumberOfEpochs = 1, Seed = 2, ShiftReferenceRows = 0 };
        var first = ml.Continual().Trainers.Compose(given, new GemPlugin { MemoriesPerTask = 20, MemoryGroupsInsideFit = 3 }).Fit(Rows(ml, 100));
        var taskZero = ((GemPlugin)first.State.Plugins.Items.Single()).Memory;
        Assert.Equal(Enumerable.Repeat(0, 20), taskZero.TaskOf);
        // Then task-free: 200 more rows, a boundary every 2 steps (10 windows into 3 groups numbered 1, 2 and 3).
        var options = Options(2);
        var second = ml.Continual().Trainers.Compose(options, new GemPlugin { MemoriesPerTask = 20, MemoryGroupsInsideFit = 3 })
            .Fit(ml.Data.LoadFromEnumerable(TestData.Rows(1, [0, 1, 2], 200, seed: 5)), first);
        var memory = ((GemPlugin)second.State.Plugins.Items.Single()).Memory;
        Assert.Equal([0, 1, 2, 3], memory.TaskOf.Distinct().Order());
        Assert.Equal(20, memory.TaskOf.Count(t => t == 0));
        // Task 0's rows are the ones its fit kept, untouched by the windows' reservoirs.
        int[] kept = Enumerable.Range(0, memory.Count).Where(i => memory.TaskOf[i] == 0).ToArray();
        using var before = taskZero.Features!.clone();
        using var after = memory.Features!.index_select(0, TorchSharp.torch.tensor(kept.Select(i => (long)i).ToArray()));
        Assert.Equal(before.data<float>().ToArray(), after.data<float>().ToArray());
    }

    [Fact]
    public void InputShiftDetector_RefusesAFullOrLargerBlockFromAFile_AndCountsOutOfRange()
    {
        var detector = new InputShiftDetector(4, 10, 0.01, 1, savable: true);
        var random = new Random(1);
        for (int step = 0; step < 3; step++)
        {
            var values = Enumerable.Range(0, 7 * 4).Select(_ => (float)random.NextDouble()).ToArray();
            detector.Observe(new ContinualBatch(TorchSharp.torch.tensor(values, [7, 4]), TorchSharp.torch.zeros(7, dtype: TorchSharp.torch.ScalarType.Int64), null), 0);
        }
        using var saved = new ContinualState();
        detector.Save(saved, "d/");
        var fresh = new InputShiftDetector(4, 10, 0.01, 1, savable: true);
        fresh.Load(saved, "d/"); // 21 rows: a reference of 10, one block tested, 1 row waiting
        // The same with a smaller block: the waiting block or the reference no longer fits.
        Assert.Contains("BoundaryShiftRows", Assert.Throws<ArgumentException>(() => new InputShiftDetector(4, 1, 0.01, 1, savable: true).Load(saved, "d/")).Message);
        var hostile = saved.Copy();
        hostile.Remove("d/reference seen");
        hostile.Set("d/reference seen", long.MaxValue);
        Assert.Throws<ContinualModelFormatException>(() => fresh.Load(hostile, "d/"));
    }
}
