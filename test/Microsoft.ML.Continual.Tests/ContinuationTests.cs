using System.IO.Compression;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

/// <summary>A plugin that consolidates inside a fit but keeps in-task state its progress does not capture.</summary>
public sealed class UncapturedProgress : ContinualPlugin
{
    static UncapturedProgress() => ContinualPlugins.Register<UncapturedProgress>("Tests.UncapturedProgress");
    public override string? WhyNotBoundariesInsideFit => null;
    public override void AtBoundary(ContinualTrainingContext context) { }
    public override bool SupportsCheckpoints => false;
}

/// <summary>ContinueAcrossFits: many refits on consecutive slices of a stream train exactly as one pass over it.</summary>
public sealed class ContinuationTests
{
    private static ComposedTrainer.Options Options(ContinualBoundaries boundaries) => new()
    {
        HiddenLayerSizes = [8], BatchSize = 10, NumberOfEpochs = 1, Seed = 2, ShuffleRows = false, Dropout = 0.1f,
        Boundaries = boundaries, BoundaryEverySteps = 7, BoundarySampleRows = 40, BoundaryShiftRows = 30, BoundaryLossMean = 2.0, BoundaryLossVariance = 0.01,
        ShiftReferenceRows = 0, ContinueAcrossFits = true,
    };

    private static ContinualPlugin[] Plugins(string method) => method switch
    {
        "FineTune" => [],
        "OnlineEwc" => [new EwcPlugin { Mode = EwcMode.Online, Lambda = 50 }],
        "Mas" => [new MasPlugin()],
        "Er" => [new ErPlugin { MemorySize = 30 }],
        "ErAce" => [new ErAcePlugin { MemorySize = 30 }],
        "Icarl" => [new IcarlPlugin { MemorySize = 30 }],
        "AGem" => [new AGemPlugin { MemorySize = 30 }],
        "DerPlusPlus" => [new DarkExperiencePlugin { MemorySize = 30, Beta = 0.5 }],
        "L2" => [new L2Plugin()],
        "Scp" => [new ScpPlugin()],
        "Replay" => [new ReplayPlugin { MemorySize = 30 }],
        "Lwf" => [new LwfPlugin()],
        "Si" => [new SiPlugin()],
        "Mir" => [new MirPlugin { MemorySize = 30 }],
        "Gem" => [new GemPlugin { MemoriesPerTask = 10, MemoryGroupsInsideFit = 3 }],
        "RWalk" => [new RWalkPlugin { ScoreUpdateInterval = 5 }],
        _ => throw new ArgumentOutOfRangeException(nameof(method)),
    };

    private static ITransformer SaveAndLoad(MLContext ml, ITransformer model, DataViewSchema schema)
    {
        using var stream = new MemoryStream();
        ml.Model.Save(model, schema, stream);
        stream.Position = 0;
        return ml.Model.Load(stream, out _);
    }

    /// <summary>Cut points of <paramref name="rows"/> rows into <paramref name="slices"/> slices of uneven sizes, none under 3
    /// rows (every slice then holds each of the 3 classes, which the rows cycle through).</summary>
    private static List<int> Cuts(int rows, int slices, int seed)
    {
        var random = new Random(seed);
        var sizes = Enumerable.Range(0, slices).Select(_ => 3 + random.Next(1000)).ToArray();
        double scale = (rows - 3.0 * slices) / sizes.Sum(s => s - 3);
        var cuts = new List<int> { 0 };
        for (int i = 1; i < slices; i++) cuts.Add(cuts[^1] + 3 + (int)((sizes[i - 1] - 3) * scale));
        cuts.Add(rows);
        return cuts;
    }

    [Theory]
    [InlineData("FineTune", ContinualBoundaries.EverySteps, 10)]
    [InlineData("OnlineEwc", ContinualBoundaries.EverySteps, 10)]
    [InlineData("OnlineEwc", ContinualBoundaries.OnLossPlateau, 100)]
    [InlineData("Mas", ContinualBoundaries.EverySteps, 100)]
    [InlineData("Er", ContinualBoundaries.EverySteps, 10)]
    [InlineData("Er", ContinualBoundaries.OnLossPlateau, 100)]
    [InlineData("AGem", ContinualBoundaries.EverySteps, 100)]
    [InlineData("DerPlusPlus", ContinualBoundaries.EverySteps, 100)]
    [InlineData("L2", ContinualBoundaries.OnLossPlateau, 10)]
    [InlineData("Scp", ContinualBoundaries.EverySteps, 10)]
    [InlineData("Replay", ContinualBoundaries.EverySteps, 100)]
    [InlineData("Lwf", ContinualBoundaries.EverySteps, 10)]
    [InlineData("Lwf", ContinualBoundaries.OnLossPlateau, 100)]
    [InlineData("OnlineEwc", ContinualBoundaries.OnInputShift, 100)]
    [InlineData("Si", ContinualBoundaries.EverySteps, 10)]
    [InlineData("Mir", ContinualBoundaries.OnLossPlateau, 100)]
    [InlineData("Gem", ContinualBoundaries.EverySteps, 100)]
    [InlineData("RWalk", ContinualBoundaries.EverySteps, 100)]
    [InlineData("Er", ContinualBoundaries.OnInputShift, 10)]
    [InlineData("ErAce", ContinualBoundaries.EverySteps, 100)]
    [InlineData("ErAce", ContinualBoundaries.OnLossPlateau, 10)]
    [InlineData("Icarl", ContinualBoundaries.EverySteps, 10)]
    [InlineData("Icarl", ContinualBoundaries.OnInputShift, 100)]
    public void RefitsOnConsecutiveSlices_SavedAndLoadedBetween_TrainAsOnePass_ToTheBit(string method, ContinualBoundaries boundaries, int slices)
    {
        var ml = new MLContext(seed: 1);
        // Two domains one after the other (the loss rises at the change), 60 whole batches and one row left waiting.
        var rows = TestData.Rows(0, [0, 1, 2], 300, seed: 4).Concat(TestData.Rows(1, [0, 1, 2], 301, seed: 4)).ToList();
        var all = ml.Data.LoadFromEnumerable(rows);
        var trainer = ml.Continual().Trainers.Compose(Options(boundaries), Plugins(method));
        ContinualFitStatistics? onePassStatistics = null;
        var onePass = trainer.Fit(all, null, new ContinualFitOptions { Completed = s => onePassStatistics = s });

        var cuts = Cuts(rows.Count, slices, seed: slices);
        int boundariesPassed = 0;
        ITransformer model = trainer.Fit(ml.Data.LoadFromEnumerable(rows.GetRange(0, cuts[1])), null,
            new ContinualFitOptions { Completed = s => boundariesPassed += s.BoundariesPassed });
        for (int i = 1; i < slices; i++)
        {
            // A new job each time: the model goes through its file, and the next slice continues from what it holds.
            model = SaveAndLoad(ml, model, all.Schema);
            model = ml.Continual().Refit(model, ml.Data.LoadFromEnumerable(rows.GetRange(cuts[i], cuts[i + 1] - cuts[i])),
                new ContinualFitOptions { Completed = s => boundariesPassed += s.BoundariesPassed });
        }

        // Every 7 steps and on a loss plateau: several boundaries; on an input shift: the change of domain at least.
        int fewest = boundaries == ContinualBoundaries.OnInputShift ? 1 : 2;
        Assert.True(onePassStatistics!.BoundariesPassed >= fewest, $"the stream passed only {onePassStatistics.BoundariesPassed} boundaries");
        Assert.Equal(onePassStatistics.BoundariesPassed, boundariesPassed); // each fit reports its own
        var expected = TestData.ZipEntries(ml, onePass, all.Schema);
        var actual = TestData.ZipEntries(ml, model, all.Schema);
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        Assert.Contains("Continuation.bin", expected.Keys.Select(Path.GetFileName));
        foreach (var (name, bytes) in expected) Assert.True(bytes.AsSpan().SequenceEqual(actual[name]), $"entry {name} differs");
        Assert.Equal(1, ((ContinualTransformer)model).TasksSeen);
    }

    [Fact]
    public void Run_OverSegments_WithContinueAcrossFits_IsOnePassWithItsRMatrixAtEachSegmentEnd()
    {
        // A stream of three segments (domains) without boundaries for the method: Run refits segment by segment and
        // evaluates after each, and with ContinueAcrossFits its last model is the one pass over the joined segments.
        var ml = new MLContext(seed: 1);
        var segments = Enumerable.Range(0, 3).Select(t =>
        {
            var rows = TestData.Rows(t, [0, 1, 2], 203, seed: 6);
            return new ContinualTask($"segment {t}", ml.Data.LoadFromEnumerable(rows.Take(150)), ml.Data.LoadFromEnumerable(rows.Skip(150)));
        }).ToList();
        var stream = new TaskStream("three segments", ContinualScenario.DomainIncremental, segments);
        var trainer = ml.Continual().Trainers.Compose(Options(ContinualBoundaries.EverySteps), new EwcPlugin { Mode = EwcMode.Online, Lambda = 50 });
        var result = ml.Continual().Run(trainer, stream, new ContinualRunOptions { EvaluateBeforeTraining = false });
        var onePass = trainer.Fit(stream.TrainingInOrder());
        var schema = segments[0].Train.Schema;
        var expected = TestData.ZipEntries(ml, onePass, schema);
        var actual = TestData.ZipEntries(ml, result.Models[^1], schema);
        foreach (var (name, bytes) in expected) Assert.True(bytes.AsSpan().SequenceEqual(actual[name]), $"entry {name} differs");
        // R[i, j] after each segment i, the segment accuracies after the pass in the last row.
        for (int i = 1; i <= 3; i++)
            for (int j = 1; j <= 3; j++) Assert.InRange(result.Metrics.R(i, j), 0.0, 1.0);
        Assert.Equal(Enumerable.Range(1, 3).Average(j => result.Metrics.R(3, j)), result.Metrics.AverageAccuracy, 12);
    }

    [Fact]
    public void ContinueAcrossFits_RefusesWhatCannotContinue_AndKeepsTheRowsShortOfABatchWaiting()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1, 2], 55, seed: 4));
        var given = Options(ContinualBoundaries.Given);
        Assert.Contains("Boundaries = EverySteps", Assert.Throws<ArgumentOutOfRangeException>(() => ml.Continual().Trainers.Compose(given).Fit(data)).Message);
        var shuffled = Options(ContinualBoundaries.EverySteps);
        shuffled.ShuffleRows = true;
        Assert.Contains("ShuffleRows = false", Assert.Throws<ArgumentOutOfRangeException>(() => ml.Continual().Trainers.Compose(shuffled).Fit(data)).Message);
        var e = Assert.Throws<NotSupportedException>(() => ml.Continual().Trainers.Compose(Options(ContinualBoundaries.EverySteps), new UncapturedProgress()).Fit(data));
        Assert.Contains("SaveTaskProgress", e.Message);

        // 55 rows, batches of 10: 50 trained, 5 wait in the model.
        var model = ml.Continual().Trainers.Compose(Options(ContinualBoundaries.EverySteps)).Fit(data);
        Assert.Equal(50, model.State.RowsSeen);
        Assert.Equal(5, model.State.Continuation!.GetInt64("pending/rows"));

        // Continued by other plugins, whose progress would be misread: refused, naming both lists.
        var other = ml.Continual().Trainers.Compose(Options(ContinualBoundaries.EverySteps), new ErPlugin { MemorySize = 20 });
        Assert.Contains("plugins", Assert.Throws<ArgumentException>(() => other.Fit(data, model)).Message);
        // A smaller window than the one the model holds: refused with what to keep.
        var narrower = Options(ContinualBoundaries.EverySteps);
        narrower.BoundarySampleRows = 10;
        Assert.Contains("BoundarySampleRows", Assert.Throws<ArgumentException>(() => ml.Continual().Trainers.Compose(narrower).Fit(data, model)).Message);
    }

    [Fact]
    public void TheOptimizersStateInAContinuation_IsCheckedBeforeItIsRead_AndAnOldFormatStartsItAnew()
    {
        var ml = new MLContext(seed: 1);
        var messages = new List<string>();
        ml.Log += (_, e) => { lock (messages) messages.Add(e.Message); };
        var data = ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1, 2], 55, seed: 4));
        var trainer = ml.Continual().Trainers.Compose(Options(ContinualBoundaries.EverySteps));
        var model = trainer.Fit(data);
        var written = model.State.Continuation!;
        Assert.Equal("Adam", written.GetString("optimizer/kind"));
        Assert.True(written.GetInt64("optimizer/0/step") > 0);

        // A first moment of another shape (a damaged or hostile file): refused by name, nothing trained.
        var wrongShape = written.Copy();
        using (var moment = wrongShape.GetTensor("optimizer/0/exp_avg"))
        {
            wrongShape.Remove("optimizer/0/exp_avg");
            using var wider = TorchSharp.torch.zeros(moment.shape[0] + 1, moment.shape[1]);
            wrongShape.Set("optimizer/0/exp_avg", wider);
        }
        model.State.Continuation = wrongShape;
        var e = Assert.Throws<ContinualModelFormatException>(() => trainer.Fit(data, model));
        Assert.Contains("optimizer/0/exp_avg", e.Message);

        // A negative step count: refused.
        var negative = written.Copy();
        negative.Remove("optimizer/1/step");
        negative.Set("optimizer/1/step", -1L);
        model.State.Continuation = negative;
        Assert.Contains("negative", Assert.Throws<ContinualModelFormatException>(() => trainer.Fit(data, model)).Message);

        // Written before the optimizer's state had this form (TorchSharp's unbounded blob): not read; a fresh optimizer and a warning.
        var old = written.Copy();
        foreach (string name in old.Names.Where(n => n.StartsWith("optimizer/", StringComparison.Ordinal)).ToList()) old.Remove(name);
        using (var blob = TorchSharp.torch.zeros(16, dtype: TorchSharp.torch.ScalarType.Byte)) old.Set("optimizer", blob);
        model.State.Continuation = old;
        messages.Clear();
        trainer.Fit(data, model);
        Assert.Contains(messages, m => m.Contains("earlier version of this library"));
        model.State.Continuation = written;
    }
}
