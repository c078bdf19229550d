using Microsoft.ML;
using Microsoft.ML.Continual;

namespace Samples;

/// <summary>
/// Sample for the distillation methods: <see cref="ContinualTrainers.Lwf"/> (keeps no rows), <see cref="ContinualTrainers.Icarl"/>
/// (herding exemplars and nearest-mean-of-exemplars prediction) and <see cref="ContinualTrainers.Bic"/> (a bias
/// correction of the newest classes) on class-incremental Split MNIST, next to fine-tuning; then iCaRL's class means carried
/// through a save, a load in a fresh <see cref="MLContext"/> and a refit.
/// </summary>
public static class DistillationSample
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
            ("LwF (no rows kept)", ml.Continual().Trainers.Lwf(Setup(new LwfTrainer.Options()))),
            ("iCaRL, 500 exemplars", ml.Continual().Trainers.Icarl(Setup(new IcarlTrainer.Options { MemorySize = 500 }))),
            ("BiC, 500 exemplars", ml.Continual().Trainers.Bic(Setup(new BicTrainer.Options { MemorySize = 500 }))),
        };
        var results = trainers.Select(t => ml.Continual().Run(t.Item2, stream, new ContinualRunOptions { Name = t.Item1 })).ToList();
        Console.WriteLine(ContinualExperimentResult.ComparisonTable(results));

        var icarl = ml.Continual().Trainers.Icarl(Setup(new IcarlTrainer.Options { MemorySize = 500 }));
        string path = Path.Combine(workDirectory, "icarl-model.zip");
        ml.Model.Save(icarl.Fit(stream[0].Train), stream[0].Train.Schema, path);
        var later = new MLContext(seed: 2);
        var next = (ContinualTransformer)later.Continual().Refit(later.Continual().LoadModel(path, out _), stream[1].Train);
        Console.WriteLine($"iCaRL after {next.TasksSeen} tasks: {string.Join(", ", next.StateSizes.Select(kv => $"{kv.Key} {kv.Value:N0}"))}");
    }
}
