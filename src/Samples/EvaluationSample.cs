using Microsoft.ML;
using Microsoft.ML.Continual;

namespace Samples;

/// <summary>
/// Sample for <see cref="ContinualCatalog.Run"/>, <see cref="ContinualCatalog.Evaluate"/>, <see cref="ContinualMetrics"/>,
/// the ready-made streams and the report: FineTune, Joint and Independent on a generated drift stream (no data files).
/// </summary>
public static class EvaluationSample
{
    public static void Run(string workDirectory)
    {
        var ml = new MLContext(seed: 1);
        TaskStream stream = ml.Continual().Benchmarks.RotatingHyperplane(numberOfTasks: 4);
        var options = new FineTuneTrainer.Options { HiddenLayerSizes = [32], NumberOfEpochs = 5 };

        // Run: fit, refit task after task, evaluate every task after each (and before the first).
        var fineTune = ml.Continual().Run(ml.Continual().Trainers.FineTune(options), stream);
        var joint = ml.Continual().Run(ml.Continual().Trainers.Joint(new JointTrainer.Options { HiddenLayerSizes = [32], NumberOfEpochs = 5 }), stream);
        var independent = ml.Continual().Run(ml.Continual().Trainers.Independent(new IndependentTrainer.Options { HiddenLayerSizes = [32], NumberOfEpochs = 5 }), stream);
        Console.WriteLine(fineTune.Metrics); // R, ACC, BWT, FWT, forgetting
        Console.WriteLine(ContinualExperimentResult.ComparisonTable([fineTune, joint, independent]));

        // Evaluate: metrics of models trained by hand.
        ContinualMetrics again = ml.Continual().Evaluate(fineTune.Models, stream);
        Console.WriteLine($"Evaluate on the same models: ACC {again.AverageAccuracy:F4} (row 0 not given, so FWT is {again.ForwardTransfer})");

        string report = Path.Combine(workDirectory, "evaluation-sample-report");
        ContinualCharts.SaveComparison([fineTune, joint, independent], report);
        Console.WriteLine($"Report written to {report}");
    }
}
