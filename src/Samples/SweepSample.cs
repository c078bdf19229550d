using Microsoft.ML;
using Microsoft.ML.Continual;

namespace Samples;

/// <summary>The parameters to sweep: EWC's λ on a log scale and the hidden-layer width among three choices.</summary>
public sealed class EwcSearch
{
    [Microsoft.ML.Continual.Range(1f, 1e5f, init: 100f, logBase: true)]
    public float Lambda { get; set; }

    [Choice(64, 128, 256)]
    public int Hidden { get; set; }
}

/// <summary>
/// Sample for <see cref="ContinualCatalog.CreateSweep"/>: a Bayesian sweep of EWC's λ and width on a small Permuted MNIST,
/// with a monitor, the objective on validation rows, the best trial's test metrics, the best parameters retrained on all
/// rows (the model to keep, saved) and the trials report.
/// </summary>
public static class SweepSample
{
    private sealed class ConsoleMonitor : ISweepMonitor
    {
        public void ReportCompletedTrial<T>(SweepTrial<T> trial) where T : class, new() =>
            Console.WriteLine($"  trial {trial.Index + 1}: {string.Join(", ", trial.ParameterValues.Select(kv => $"{kv.Key} = {kv.Value:G4}"))} → validation ACC {trial.Objective:F4} ({trial.Duration.TotalSeconds:F1} s)");
        public void ReportFailedTrial<T>(SweepTrial<T> trial, Exception exception) where T : class, new() =>
            Console.WriteLine($"  trial {trial.Index + 1} failed: {exception.Message}");
    }

    public static void Run(string workDirectory)
    {
        var ml = new MLContext(seed: 1);
        TaskStream stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: 3, trainSamplesPerTask: 5_000, testSamplesPerTask: 1_000);
        var sweep = ml.Continual().CreateSweep()
            .SetTrainer((ctx, p) => ctx.Continual().Trainers.Ewc(new EwcTrainer.Options { Lambda = p.Lambda, HiddenLayerSizes = [p.Hidden], NumberOfEpochs = 2 }),
                new SearchSpace<EwcSearch>())
            .SetTaskStream(stream)
            .SetObjective(ContinualObjective.AccuracyWithBackwardTransferFloor(-0.05))
            .SetMaxTrials(8)
            .SetTrainingTimeInSeconds(300)
            .SetTuner(SweepTuner.Bayesian)
            .SetRetrainBest(true) // the default: the best parameters are trained once more on all rows (result.BestModel)
            .SetMonitor(new ConsoleMonitor());
        SweepResult<EwcSearch> result = sweep.RunAsync().GetAwaiter().GetResult();
        var best = result.Best!;
        Console.WriteLine($"Best: λ = {best.Parameters.Lambda:G4}, hidden {best.Parameters.Hidden}; validation ACC {best.Metrics!.AverageAccuracy:F4}; " +
            $"its trial's model (80% of each task's rows) on the test sets: ACC {result.BestTestMetrics?.AverageAccuracy:F4}, BWT {result.BestTestMetrics?.BackwardTransfer:F4}");
        // The model to keep: the best parameters retrained on all rows (as ML.NET AutoML returns its best model).
        Console.WriteLine($"Retrained on all rows: test ACC {result.BestModelTestMetrics?.AverageAccuracy:F4}, BWT {result.BestModelTestMetrics?.BackwardTransfer:F4}");
        ml.Model.Save(result.BestModel!, stream[0].Train.Schema, Path.Combine(workDirectory, "sweep-best.zip"));
        string report = Path.Combine(workDirectory, "sweep-report");
        ContinualCharts.SaveReport(result, report);
        Console.WriteLine($"Trials table and plots: {report}");
    }
}
