using Microsoft.ML;
using Microsoft.ML.Continual;

namespace Samples;

/// <summary>
/// Sample for the gradient family (<see cref="ContinualTrainers.Gem"/>, <see cref="ContinualTrainers.AGem"/>): both beside
/// FineTune on a small Rotated MNIST under the GEM paper's optimisation (plain SGD, batch 10, one epoch), then a GEM model
/// saved, loaded and refitted with its episodic memory carried along.
/// </summary>
public static class GemSample
{
    public static void Run(string workDirectory)
    {
        var ml = new MLContext(seed: 1);
        TaskStream stream = ml.Continual().Benchmarks.RotatedMnist(numberOfTasks: 5, maxAngle: 180, trainSamplesPerTask: 1_000, testSamplesPerTask: 1_000);
        T Setup<T>(T options) where T : ContinualTrainerOptions
        {
            options.HiddenLayerSizes = [100, 100];
            options.Optimizer = ContinualOptimizer.Sgd;
            options.LearningRate = 0.1;
            options.BatchSize = 10;
            options.NumberOfEpochs = 1;
            return options;
        }
        var trainers = new (string, IEstimator<ITransformer>)[]
        {
            ("FineTune", ml.Continual().Trainers.FineTune(Setup(new FineTuneTrainer.Options()))),
            ("A-GEM", ml.Continual().Trainers.AGem(Setup(new AGemTrainer.Options { MemorySize = 1_000, ReferenceSampleSize = 256 }))),
            ("GEM", ml.Continual().Trainers.Gem(Setup(new GemTrainer.Options { MemoriesPerTask = 256, MemoryStrength = 0.5 }))),
        };
        var results = trainers.Select(t => ml.Continual().Run(t.Item2, stream, new ContinualRunOptions { Name = t.Item1 })).ToList();
        Console.WriteLine(ContinualExperimentResult.ComparisonTable(results));

        // GEM's episodic memory (rows, labels, task of each row) travels in the model zip and continues after a load.
        var gem = ml.Continual().Trainers.Gem(Setup(new GemTrainer.Options()));
        string path = Path.Combine(workDirectory, "gem-model.zip");
        ml.Model.Save(gem.Fit(stream[0].Train), stream[0].Train.Schema, path);
        var next = (ContinualTransformer)ml.Continual().Refit(ml.Continual().LoadModel(path, out _), stream[1].Train);
        Console.WriteLine($"GEM after {next.TasksSeen} tasks: {string.Join(", ", next.StateSizes.Select(kv => $"{kv.Key} {kv.Value:N0}"))}");
    }
}
