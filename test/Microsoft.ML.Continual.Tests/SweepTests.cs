using Microsoft.ML.Data;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

public class SweepTests(Xunit.Abstractions.ITestOutputHelper output)
{
    public class MixedSearch
    {
        [Range(1e-2, 1e4, init: 1.0, logBase: true)] public double Lambda { get; set; }
        [Range(0.1f, 0.9f)] public float Share { get; set; }
        [Range(8, 64, init: 16)] public int Memory { get; set; }
        [Choice("Reservoir", "ClassBalanced", "TaskBalanced")] public ReplayBufferPolicy Policy { get; set; }
        public int NotSwept { get; set; } = 7;
    }

    public class LambdaSearch
    {
        [Range(1e-2f, 1e4f, init: 1f, logBase: true)] public float Lambda { get; set; }
    }

    [Fact]
    public void SearchSpace_MapsTheUnitCube_ToEachRangeAndScale()
    {
        var space = new SearchSpace<MixedSearch>();
        Assert.Equal(["Lambda", "Share", "Memory", "Policy"], space.Dimensions.Select(d => d.Name));
        var low = space.Create([0, 0, 0, 0]);
        var high = space.Create([1, 1, 1, 1]);
        Assert.Equal(1e-2, low.Lambda, 12);
        Assert.Equal(1e4, high.Lambda, 6);
        Assert.Equal(1.0, space.Create([1.0 / 3, 0, 0, 0]).Lambda, 9); // log scale: a third of the way from 1e-2 to 1e4 is 1
        Assert.Equal(0.1f, low.Share);
        Assert.Equal(0.5f, space.Create([0, 0.5, 0, 0]).Share, 6);
        Assert.Equal((8, 64), (low.Memory, high.Memory));
        Assert.Equal(ReplayBufferPolicy.Reservoir, low.Policy);
        Assert.Equal(ReplayBufferPolicy.ClassBalanced, space.Create([0, 0, 0, 0.5]).Policy);
        Assert.Equal(ReplayBufferPolicy.TaskBalanced, high.Policy);
        Assert.Equal(7, high.NotSwept);
        var random = new Random(1);
        for (int i = 0; i < 1000; i++)
        {
            var p = space.Create(Enumerable.Range(0, 4).Select(_ => random.NextDouble()).ToArray());
            Assert.InRange(p.Lambda, 1e-2, 1e4);
            Assert.InRange(p.Share, 0.1f, 0.9f);
            Assert.InRange(p.Memory, 8, 64);
        }
        // Log-uniform: about half of the draws fall below the geometric midpoint of [1e-2, 1e4], which is 10.
        int below = Enumerable.Range(0, 4000).Count(_ => space.Create([random.NextDouble(), 0, 0, 0]).Lambda < 10);
        Assert.InRange(below, 1800, 2200);
    }

    public class SmallIntegers { [Range(1, 3, 2)] public int Layers { get; set; } }

    [Fact]
    public void IntegerRanges_GiveEveryValueAnEqualShare_AndTheGridEachValueOnce()
    {
        var space = new SearchSpace<SmallIntegers>();
        var random = new Random(4);
        var counts = Enumerable.Range(0, 30_000).Select(_ => space.Create([random.NextDouble()]).Layers).GroupBy(v => v).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal([1, 2, 3], counts.Keys.Order());
        Assert.All(counts.Values, c => Assert.InRange(c, 9_400, 10_600)); // 10,000 each expected
        var grid = new GridTuner(space.Dimensions, 10);
        Assert.Equal([1, 2, 3], grid.Points.Select(p => space.Create(p).Layers).Order());
    }

    [Fact]
    public void SearchSpace_FromDimensions_FillsTheParameterObjectThroughItsSetter()
    {
        var space = new SearchSpace<Dictionary<string, object>>(
            [new SearchDimension("Lambda", SearchDimensionKind.Real, 1, 1e4, true, []), new SearchDimension("Policy", SearchDimensionKind.Choice, 0, 1, false, ["a", "b"])],
            (p, name, value) => p[name] = value);
        var low = space.Create([0, 0]);
        var high = space.Create([1, 1]);
        Assert.Equal((1.0, "a"), ((double)low["Lambda"], (string)low["Policy"]));
        Assert.Equal(1e4, (double)high["Lambda"], 6);
        Assert.Equal("b", high["Policy"]);
        Assert.Equal(100, (double)space.Create([0.5, 0])["Lambda"], 9);
        Assert.Throws<ArgumentException>(() => new SearchSpace<Dictionary<string, object>>(
            [new SearchDimension("X", SearchDimensionKind.Real, 0, 1, true, [])], (p, n, v) => p[n] = v)); // log scale from 0
    }

    public class Bad1 { [Range(0.0, 1.0, logBase: true)] public double X { get; set; } }
    public class Bad2 { [Range(1, 10, 5)] public string X { get; set; } = ""; }
    public class Bad3 { public double X { get; set; } }

    [Fact]
    public void SearchSpace_RejectsAttributesThatCannotWork_WithTheirReason()
    {
        Assert.Contains("min > 0", Assert.Throws<ArgumentException>(() => new SearchSpace<Bad1>()).Message);
        Assert.Contains("ranges need int", Assert.Throws<ArgumentException>(() => new SearchSpace<Bad2>()).Message);
        Assert.Contains("nothing to search", Assert.Throws<ArgumentException>(() => new SearchSpace<Bad3>()).Message);
    }

    [Fact]
    public void Grid_CoversTheSpace_EvenlyAndEndToEnd_CoarseFirst()
    {
        var one = new GridTuner(new SearchSpace<LambdaSearch>().Dimensions, 5);
        Assert.Equal(new[] { 0, 1, 0.5, 0.25, 0.75 }, one.Points.Select(p => p[0]));
        var dims = new SearchSpace<MixedSearch>().Dimensions.Take(2).ToList();
        var two = new GridTuner(dims, 9);
        var points = two.Points.Select(p => (p[0], p[1])).ToHashSet();
        Assert.Equal(9, points.Count);
        foreach (double a in new[] { 0, 0.5, 1 }) foreach (double b in new[] { 0, 0.5, 1 }) Assert.Contains((a, b), points);
    }

    [Fact]
    public void Random_IsReproducibleWithTheSeed()
    {
        var history = new List<(double[], double)>();
        var a = new RandomTuner(3, 42);
        var b = new RandomTuner(3, 42);
        var c = new RandomTuner(3, 43);
        for (int i = 0; i < 10; i++)
        {
            var pa = a.Propose(history);
            Assert.Equal(pa, b.Propose(history));
            Assert.NotEqual(pa, c.Propose(history));
        }
    }

    /// <summary>Best value found after <paramref name="trials"/> trials, as the regret against the known maximum.</summary>
    private static double Regret(IUnitTuner tuner, Func<double[], double> f, double maximum, int trials)
    {
        var history = new List<(double[] Point, double Objective)>();
        for (int i = 0; i < trials; i++)
        {
            var p = tuner.Propose(history);
            history.Add((p, f(p)));
        }
        return maximum - history.Max(h => h.Objective);
    }

    [Fact]
    public void Bayesian_BeatsRandom_OnAverage_OnKnown1DAnd2DFunctions()
    {
        // 1-D: a smooth peak with a side lobe (Forrester-like); maximum 1 at u = 0.73.
        double Bump(double[] p) => Math.Exp(-Math.Pow((p[0] - 0.73) / 0.2, 2)) + 0.4 * Math.Exp(-Math.Pow((p[0] - 0.15) / 0.1, 2));
        // 2-D: the negated Branin function on [-5, 10] × [0, 15]; maximum −0.397887.
        double Branin(double[] p)
        {
            double x = -5 + 15 * p[0], y = 15 * p[1];
            double a = y - 5.1 / (4 * Math.PI * Math.PI) * x * x + 5 / Math.PI * x - 6;
            return -(a * a + 10 * (1 - 1 / (8 * Math.PI)) * Math.Cos(x) + 10);
        }
        const int seeds = 20;
        double bayes1 = 0, random1 = 0, bayes2 = 0, random2 = 0;
        for (int s = 0; s < seeds; s++)
        {
            bayes1 += Regret(new GaussianProcessTuner(1, [0.5], s), Bump, 1, 10) / seeds;
            random1 += Regret(new RandomTuner(1, s), Bump, 1, 10) / seeds;
            bayes2 += Regret(new GaussianProcessTuner(2, [0.5, 0.5], s), Branin, -0.397887, 15) / seeds;
            random2 += Regret(new RandomTuner(2, s), Branin, -0.397887, 15) / seeds;
        }
        string figures = $"mean regret after 10 (1-D) / 15 (2-D) trials: Bayesian {bayes1:F4} / {bayes2:F4}, random {random1:F4} / {random2:F4}";
        output.WriteLine(figures);
        Assert.True(bayes1 < random1 * 0.5, figures);
        Assert.True(bayes2 < random2 * 0.5, figures);
    }

    private static TaskStream SmallStream(MLContext ml, Func<IDataView, IDataView>? wrapTest = null)
    {
        var stream = ml.Continual().Benchmarks.RotatingHyperplane(numberOfTasks: 3, trainRowsPerTask: 300, testRowsPerTask: 200, seed: 3);
        return new TaskStream(stream.Name, stream.Scenario, stream.Select(t => new ContinualTask(t.Name, t.Train, wrapTest?.Invoke(t.Test) ?? t.Test)));
    }

    private static EwcTrainer SmallEwc(MLContext ml, double lambda) => ml.Continual().Trainers.Ewc(new EwcTrainer.Options
    {
        Lambda = lambda, HiddenLayerSizes = [8], NumberOfEpochs = 2, BatchSize = 32, LearningRate = 0.01, Seed = 1,
    });

    private sealed class Recorder : ISweepMonitor
    {
        public List<string> Events { get; } = new();
        public Action? OnCompleted { get; set; }
        public void ReportRunningTrial<T>(SweepTrial<T> trial) where T : class, new() => Events.Add($"running {trial.Index}");
        public void ReportCompletedTrial<T>(SweepTrial<T> trial) where T : class, new() { Events.Add($"completed {trial.Index}"); OnCompleted?.Invoke(); }
        public void ReportFailedTrial<T>(SweepTrial<T> trial, Exception exception) where T : class, new() => Events.Add($"failed {trial.Index}");
        public void ReportBestTrial<T>(SweepTrial<T> trial) where T : class, new() => Events.Add($"best {trial.Index}");
    }

    [Fact]
    public async Task FailingTrial_IsRecorded_AndTheSweepGoesOn()
    {
        var ml = new MLContext(seed: 1);
        var monitor = new Recorder();
        var result = await ml.Continual().CreateSweep()
            .SetTrainer((ctx, p) => p.Lambda > 20 ? throw new InvalidOperationException("λ too large for this test") : SmallEwc(ctx, p.Lambda), new SearchSpace<LambdaSearch>())
            .SetTaskStream(SmallStream(ml)).SetTuner(SweepTuner.Grid).SetMaxTrials(5).SetMonitor(monitor)
            .RunAsync();
        Assert.Equal(5, result.Trials.Count);
        Assert.Equal(2, result.Trials.Count(t => t.Status == SweepTrialStatus.Failed)); // grid u = 0, 1, .5, .25, .75 gives λ = 0.01, 1e4, 10, 0.32, 316: the 2nd and 5th fail
        Assert.Equal(3, result.Trials.Count(t => t.Status == SweepTrialStatus.Completed));
        Assert.Contains("λ too large", result.Trials.First(t => t.Status == SweepTrialStatus.Failed).Error);
        Assert.Contains("failed 1", monitor.Events);
        Assert.NotNull(result.Best);
        Assert.Equal(result.Trials.Where(t => t.Status == SweepTrialStatus.Completed).Max(t => t.Objective), result.Best!.Objective);
        Assert.NotNull(result.Best.Model);
        Assert.NotNull(result.BestTestMetrics);
    }

    /// <summary>An IDataView that records whether anything read its rows.</summary>
    private sealed class ReadRecorder(IDataView inner, Action onRead) : IDataView
    {
        public bool CanShuffle => inner.CanShuffle;
        public DataViewSchema Schema => inner.Schema;
        public long? GetRowCount() => inner.GetRowCount();
        public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) { onRead(); return inner.GetRowCursor(columnsNeeded, rand); }
        public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) { onRead(); return inner.GetRowCursorSet(columnsNeeded, n, rand); }
    }

    [Fact]
    public void Objective_UsesValidationRowsOnly_TestSetsAreReadAfterTheSweep()
    {
        var ml = new MLContext(seed: 1);
        int testReads = 0;
        var monitor = new Recorder();
        monitor.OnCompleted = () => Assert.Equal(0, testReads); // while trials run, no test set has been read
        var result = ml.Continual().CreateSweep()
            .SetTrainer((ctx, p) => SmallEwc(ctx, p.Lambda), new SearchSpace<LambdaSearch>())
            .SetTaskStream(SmallStream(ml, test => new ReadRecorder(test, () => testReads++)))
            .SetTuner(SweepTuner.Random).SetMaxTrials(3).SetMonitor(monitor).Run();
        Assert.Equal(3, result.Trials.Count(t => t.Status == SweepTrialStatus.Completed));
        Assert.True(testReads > 0); // the best trial is evaluated on the test sets at the end
        Assert.NotNull(result.BestTestMetrics);
        // Validation metrics come from held-out training rows, so they differ from the test metrics.
        Assert.NotEqual(result.Best!.Metrics!.AverageAccuracy, result.BestTestMetrics!.AverageAccuracy);
    }

    [Fact]
    public void TheBestParameters_AreRetrainedOnAllRows_TheModelToKeep_ScoredOnTheTestSets()
    {
        var ml = new MLContext(seed: 1);
        var stream = SmallStream(ml);
        var result = ml.Continual().CreateSweep()
            .SetTrainer((ctx, p) => SmallEwc(ctx, p.Lambda), new SearchSpace<LambdaSearch>())
            .SetTaskStream(stream).SetTuner(SweepTuner.Random).SetMaxTrials(2).Run();
        var best = result.Best!;
        Assert.NotNull(result.BestModel);
        Assert.Equal(stream.Count, result.BestModelsAfterEachTask!.Count);
        // The retrained model is the best parameters through the whole stream, every training row: the same run by hand gives the same figures.
        var byHand = ml.Continual().Run(SmallEwc(ml, best.Parameters.Lambda), stream, new ContinualRunOptions { EvaluateBeforeTraining = false });
        Assert.Equal(byHand.Metrics.AverageAccuracy, result.BestModelTestMetrics!.AverageAccuracy);
        Assert.Equal(TestData.Bytes(TestData.Scores(byHand.Models[^1], stream[0].Test)), TestData.Bytes(TestData.Scores(result.BestModel!, stream[0].Test)));
        // ...and not the trial's model, which trained on 80% of each task's rows.
        Assert.NotEqual(TestData.Bytes(TestData.Scores(best.Model!, stream[0].Test)), TestData.Bytes(TestData.Scores(result.BestModel!, stream[0].Test)));
        var skipped = ml.Continual().CreateSweep()
            .SetTrainer((ctx, p) => SmallEwc(ctx, p.Lambda), new SearchSpace<LambdaSearch>())
            .SetTaskStream(stream).SetTuner(SweepTuner.Random).SetMaxTrials(1).SetRetrainBest(false).Run();
        Assert.Null(skipped.BestModel);
        Assert.Null(skipped.BestModelTestMetrics);
        Assert.NotNull(skipped.BestTestMetrics);
    }

    [Fact]
    public void Cancellation_ReturnsTheBestSoFar_AndSavesTheReport()
    {
        var ml = new MLContext(seed: 1);
        using var cts = new CancellationTokenSource();
        var monitor = new Recorder { OnCompleted = () => cts.Cancel() };
        var result = ml.Continual().CreateSweep()
            .SetTrainer((ctx, p) => SmallEwc(ctx, p.Lambda), new SearchSpace<LambdaSearch>())
            .SetTaskStream(SmallStream(ml)).SetMaxTrials(10).SetMonitor(monitor).Run(cts.Token);
        Assert.Single(result.Trials);
        Assert.Equal(SweepTrialStatus.Completed, result.Trials[0].Status);
        Assert.Same(result.Trials[0], result.Best);
        Assert.Equal(1.0, result.Best!.Parameters.Lambda, 5); // the Bayesian tuner starts at the space's init
        using var temp = new TempFolder();
        ContinualCharts.SaveReport(result, temp.Path);
        var lines = File.ReadAllLines(Path.Combine(temp.Path, "trials.csv"));
        Assert.Equal("trial,Lambda,status,objective,ACC,BWT,FWT,seconds,error", lines[0]);
        Assert.Equal(2, lines.Length);
        Assert.True(new FileInfo(Path.Combine(temp.Path, "sweep-Lambda.png")).Length > 1000);
    }
}
