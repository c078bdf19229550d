using Microsoft.ML;
using Microsoft.ML.Continual;

/// <summary>
/// The convolutional backbone beside the default perceptron, same trainers, same streams: Split MNIST (task- and
/// class-incremental) and Rotated MNIST (domain-incremental, where spatial structure is kept), with FineTune, EWC and
/// replay. One line per (stream, trainer, backbone): ACC, BWT, training seconds, parameters.
/// </summary>
internal static class BackboneBenchmarks
{
    public static void Run(int trainRows, int epochs, int seed, string? only)
    {
        var ml = new MLContext(seed: seed);
        var streams = new (string Name, TaskStream Stream, bool TaskIds)[]
        {
            ("Split MNIST task-IL", ml.Continual().Benchmarks.SplitMnist(ContinualScenario.TaskIncremental, trainSamplesPerTask: trainRows, testSamplesPerTask: 2000, seed: seed), true),
            ("Split MNIST class-IL", ml.Continual().Benchmarks.SplitMnist(ContinualScenario.ClassIncremental, trainSamplesPerTask: trainRows, testSamplesPerTask: 2000, seed: seed), false),
            ("Rotated MNIST (5 tasks, 0–90°)", ml.Continual().Benchmarks.RotatedMnist(numberOfTasks: 5, maxAngle: 90, trainSamplesPerTask: trainRows, testSamplesPerTask: 2000, seed: seed), false),
        };
        var filter = only?.Split(',').ToHashSet(StringComparer.OrdinalIgnoreCase);
        Console.WriteLine($"{trainRows:N0} training rows per task, {epochs} epoch(s), Adam 1e-3, batch 128, seed {seed}");
        Console.WriteLine("| stream | trainer | backbone | ACC | BWT | training s | parameters |");
        Console.WriteLine("| --- | --- | --- | ---: | ---: | ---: | ---: |");
        foreach (var (streamName, stream, taskIds) in streams)
            foreach (string trainer in new[] { "FineTune", "Ewc", "Replay" })
            {
                if (filter is not null && !filter.Contains(trainer)) continue;
                foreach (var (backboneName, backbone) in new (string, ContinualBackbone?)[] { ("MLP 100-100", null), ("Conv 32-64, dense 128", new ConvBackbone { InputShape = [1, 28, 28] }) })
                {
                    var options = new Dictionary<string, string> { ["NumberOfEpochs"] = epochs.ToString(System.Globalization.CultureInfo.InvariantCulture), ["Seed"] = seed.ToString(System.Globalization.CultureInfo.InvariantCulture), ["HiddenLayerSizes"] = "100,100" };
                    if (taskIds) options["TaskIdColumnName"] = "TaskId";
                    if (trainer == "Replay") options["MemorySize"] = "1000";
                    var estimator = ml.Continual().Trainers.Create(trainer, options);
                    var configured = backbone is null ? estimator : WithBackbone(ml, trainer, estimator, backbone);
                    var result = ml.Continual().Run(configured, stream, new ContinualRunOptions { EvaluateBeforeTraining = false });
                    var model = (ContinualTransformer)result.Models[^1];
                    Console.WriteLine($"| {streamName} | {trainer} | {backboneName} | {result.Metrics.AverageAccuracy:F4} | {result.Metrics.BackwardTransfer:+0.0000;-0.0000} | {result.TotalTrainingSeconds:F0} | {model.ParameterCount:N0} |");
                }
            }
    }

    /// <summary>The same trainer and options with the backbone set (options objects carry it; text options do not).</summary>
    private static ContinualTrainer WithBackbone(MLContext ml, string trainer, ContinualTrainer estimator, ContinualBackbone backbone)
    {
        var options = estimator.GetOptions();
        options.Backbone = backbone;
        return trainer switch
        {
            "Ewc" => ml.Continual().Trainers.Ewc((EwcTrainer.Options)options),
            "Replay" => ml.Continual().Trainers.Replay((ReplayTrainer.Options)options),
            _ => ml.Continual().Trainers.FineTune((FineTuneTrainer.Options)options),
        };
    }
}
