using Microsoft.ML;
using Microsoft.ML.Continual;

namespace Samples;

/// <summary>
/// Sample for the replay methods that update their memory at every step: <see cref="ContinualTrainers.Der"/>,
/// <see cref="ContinualTrainers.DerPlusPlus"/>, <see cref="ContinualTrainers.ErAce"/>, <see cref="ContinualTrainers.Mir"/>
/// and <see cref="ContinualTrainers.GDumb"/> on class-incremental Split MNIST (one output layer for all ten digits, no task
/// ids), next to fine-tuning; then DER++'s memory and its stored logits carried through a save and a refit.
/// </summary>
public static class OnlineReplaySample
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
            ("DER, 500 rows", ml.Continual().Trainers.Der(Setup(new DerTrainer.Options { MemorySize = 500 }))),
            ("DER++, 500 rows", ml.Continual().Trainers.DerPlusPlus(Setup(new DerPlusPlusTrainer.Options { MemorySize = 500 }))),
            ("ER-ACE, 500 rows", ml.Continual().Trainers.ErAce(Setup(new ErAceTrainer.Options { MemorySize = 500 }))),
            ("MIR, 500 rows", ml.Continual().Trainers.Mir(Setup(new MirTrainer.Options { MemorySize = 500 }))),
            // GDumb trains from scratch on its memory only: its own defaults are more epochs of smaller batches (30 of 16).
            ("GDumb, 500 rows", ml.Continual().Trainers.GDumb(new GDumbTrainer.Options { MemorySize = 500, HiddenLayerSizes = [200, 200] })),
        };
        var results = trainers.Select(t => ml.Continual().Run(t.Item2, stream, new ContinualRunOptions { Name = t.Item1 })).ToList();
        Console.WriteLine(ContinualExperimentResult.ComparisonTable(results));

        // The rows, their labels and the logits they were given travel in the model zip and continue after a load.
        var der = ml.Continual().Trainers.DerPlusPlus(Setup(new DerPlusPlusTrainer.Options { MemorySize = 500 }));
        string path = Path.Combine(workDirectory, "der-model.zip");
        ml.Model.Save(der.Fit(stream[0].Train), stream[0].Train.Schema, path);
        var next = (ContinualTransformer)ml.Continual().Refit(ml.Continual().LoadModel(path, out _), stream[1].Train);
        Console.WriteLine($"DER++ after {next.TasksSeen} tasks: {string.Join(", ", next.StateSizes.Select(kv => $"{kv.Key} {kv.Value:N0}"))}");
    }
}
