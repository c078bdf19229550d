using Microsoft.ML;
using Microsoft.ML.Continual;

namespace Samples;

/// <summary>
/// Sample for the regularization family (<see cref="ContinualTrainers.L2"/>, <see cref="ContinualTrainers.Ewc"/>
/// separate and online, <see cref="ContinualTrainers.Si"/>, <see cref="ContinualTrainers.Mas"/>,
/// <see cref="ContinualTrainers.RWalk"/>, <see cref="ContinualTrainers.Scp"/>): each beside FineTune on a small
/// Permuted MNIST, then an EWC model saved, loaded and refitted with its Fisher information carried along.
/// </summary>
public static class RegularizationSample
{
    public static void Run(string workDirectory)
    {
        var ml = new MLContext(seed: 1);
        TaskStream stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: 3, trainSamplesPerTask: 5_000, testSamplesPerTask: 1_000);
        T Setup<T>(T options) where T : ContinualTrainerOptions
        {
            options.HiddenLayerSizes = [200, 200];
            options.NumberOfEpochs = 2;
            return options;
        }
        var trainers = new (string, IEstimator<ITransformer>)[]
        {
            ("FineTune", ml.Continual().Trainers.FineTune(Setup(new FineTuneTrainer.Options()))),
            ("L2", ml.Continual().Trainers.L2(Setup(new L2Trainer.Options()))),
            ("EWC", ml.Continual().Trainers.Ewc(Setup(new EwcTrainer.Options()))),
            ("Online EWC", ml.Continual().Trainers.Ewc(Setup(new EwcTrainer.Options { Mode = EwcMode.Online, Gamma = 1.0 }))),
            ("SI", ml.Continual().Trainers.Si(Setup(new SiTrainer.Options()))),
            ("MAS", ml.Continual().Trainers.Mas(Setup(new MasTrainer.Options()))),
            ("RWalk", ml.Continual().Trainers.RWalk(Setup(new RWalkTrainer.Options()))),
            ("SCP", ml.Continual().Trainers.Scp(Setup(new ScpTrainer.Options()))),
        };
        var results = trainers.Select(t => ml.Continual().Run(t.Item2, stream, new ContinualRunOptions { Name = t.Item1 })).ToList();
        Console.WriteLine(ContinualExperimentResult.ComparisonTable(results));

        // EWC's state (anchors and Fisher information) travels in the model zip and continues after a load.
        var ewc = ml.Continual().Trainers.Ewc(Setup(new EwcTrainer.Options()));
        string path = Path.Combine(workDirectory, "ewc-model.zip");
        ml.Model.Save(ewc.Fit(stream[0].Train), stream[0].Train.Schema, path);
        var next = (ContinualTransformer)ml.Continual().Refit(ml.Continual().LoadModel(path, out _), stream[1].Train);
        Console.WriteLine($"EWC after {next.TasksSeen} tasks: {string.Join(", ", next.StateSizes.Select(kv => $"{kv.Key} {kv.Value:N0}"))}");
    }
}
