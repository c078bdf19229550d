using Microsoft.ML;
using Microsoft.ML.Continual;

namespace Samples;

/// <summary>
/// Sample for <see cref="ContinualTrainers.Replay"/>: class-incremental Split MNIST (one growing output layer, no task
/// ids), where fine-tuning forgets every earlier class and a memory of 500 rows brings most of them back; with a
/// class-balanced memory chosen by herding, with online EWC added, and generative replay (no rows kept); then the memory
/// carried through a save and a refit.
/// </summary>
public static class ReplaySample
{
    public static void Run(string workDirectory)
    {
        var ml = new MLContext(seed: 1);
        TaskStream stream = ml.Continual().Benchmarks.SplitMnist(ContinualScenario.ClassIncremental, trainSamplesPerTask: 4_000, testSamplesPerTask: 1_000);
        T Setup<T>(T options) where T : ContinualTrainerOptions
        {
            options.HiddenLayerSizes = [200, 200];
            options.NumberOfEpochs = 2;
            return options;
        }
        var trainers = new (string, IEstimator<ITransformer>)[]
        {
            ("FineTune", ml.Continual().Trainers.FineTune(Setup(new FineTuneTrainer.Options()))),
            ("Replay 500 reservoir", ml.Continual().Trainers.Replay(Setup(new ReplayTrainer.Options { MemorySize = 500 }))),
            ("Replay 500 class-balanced, herding", ml.Continual().Trainers.Replay(Setup(new ReplayTrainer.Options
                { MemorySize = 500, BufferPolicy = ReplayBufferPolicy.ClassBalanced, Selection = ExemplarSelection.Herding }))),
            ("Replay 500 + online EWC", ml.Continual().Trainers.Replay(Setup(new ReplayTrainer.Options
                { MemorySize = 500, Regularization = ReplayRegularization.OnlineEwc }))),
            // Keeps no rows: a VAE regenerates the earlier digits (needs more epochs than rehearsal to learn them).
            ("Generative replay", ml.Continual().Trainers.GenerativeReplay(Setup(new GenerativeReplayTrainer.Options { NumberOfEpochs = 20 }))),
        };
        var results = trainers.Select(t => ml.Continual().Run(t.Item2, stream, new ContinualRunOptions { Name = t.Item1 })).ToList();
        Console.WriteLine(ContinualExperimentResult.ComparisonTable(results));

        // The memory (rows, labels, task of each row) travels in the model zip and continues after a load.
        var replay = ml.Continual().Trainers.Replay(Setup(new ReplayTrainer.Options { MemorySize = 500, BufferPolicy = ReplayBufferPolicy.ClassBalanced }));
        string path = Path.Combine(workDirectory, "replay-model.zip");
        ml.Model.Save(replay.Fit(stream[0].Train), stream[0].Train.Schema, path);
        var next = (ContinualTransformer)ml.Continual().Refit(ml.Continual().LoadModel(path, out _), stream[1].Train);
        Console.WriteLine($"Replay after {next.TasksSeen} tasks: {string.Join(", ", next.StateSizes.Select(kv => $"{kv.Key} {kv.Value:N0}"))}");
    }
}
