using Microsoft.ML;
using Microsoft.ML.Continual;

namespace Samples;

/// <summary>
/// Sample for the architecture family (<see cref="ContinualTrainers.PackNet"/>, <see cref="ContinualTrainers.Cpg"/>,
/// <see cref="ContinualTrainers.ProgressiveNetworks"/>): each beside FineTune on Permuted MNIST with task ids, then how the
/// capacity is shared, a PackNet model saved, loaded and refitted, and the error a model without task ids gives.
/// </summary>
public static class ArchitectureSample
{
    public static void Run(string workDirectory)
    {
        var ml = new MLContext(seed: 1);
        TaskStream stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: 4, trainSamplesPerTask: 10_000, testSamplesPerTask: 2_000);
        // The architecture family is task-incremental: every row carries its task id (streams name the column "TaskId").
        T Setup<T>(T options) where T : ContinualTrainerOptions
        {
            options.HiddenLayerSizes = [200, 200];
            options.NumberOfEpochs = 3;
            options.TaskIdColumnName = "TaskId";
            return options;
        }
        var trainers = new (string, IEstimator<ITransformer>)[]
        {
            ("FineTune", ml.Continual().Trainers.FineTune(Setup(new FineTuneTrainer.Options()))),
            // An equal share of every layer for each of the 4 tasks.
            ("PackNet", ml.Continual().Trainers.PackNet(Setup(new PackNetTrainer.Options { ExpectedTaskCount = 4, RetrainEpochs = 1 }))),
            // Grow by a quarter of the first widths when a task cannot reach 97% on its rows.
            ("CPG", ml.Continual().Trainers.Cpg(Setup(new CpgTrainer.Options { AccuracyGoal = 0.97 }))),
            ("Progressive networks", ml.Continual().Trainers.ProgressiveNetworks(Setup(new ProgressiveNetworksTrainer.Options()))),
        };
        var results = trainers.Select(t => ml.Continual().Run(t.Item2, stream, new ContinualRunOptions { Name = t.Item1 })).ToList();
        Console.WriteLine(ContinualExperimentResult.ComparisonTable(results)); // BWT is exactly 0 for the three architecture methods
        foreach (var result in results.Skip(1))
        {
            var model = ContinualCatalog.FindContinual(result.Models[^1])!;
            var capacity = model.Capacity!;
            Console.WriteLine($"{result.Name}: {model.ParameterCount:N0} parameters, hidden {string.Join("-", model.HiddenLayerSizes)}; "
                + string.Join(", ", capacity.Tasks.Select(t => $"{t.TaskId} {t.Fraction:P1}"))
                + (capacity.FreeWeights is null ? " (grows per task)" : $", free {capacity.FreeFraction:P1}"));
        }

        // Masks and capacity bookkeeping travel in the model zip; a later process continues with the next task.
        var packNet = ml.Continual().Trainers.PackNet(Setup(new PackNetTrainer.Options { ExpectedTaskCount = 4, RetrainEpochs = 1 }));
        string path = Path.Combine(workDirectory, "packnet-model.zip");
        ml.Model.Save(packNet.Fit(stream[0].Train), stream[0].Train.Schema, path);
        var next = (ContinualTransformer)ml.Continual().Refit(ml.Continual().LoadModel(path, out _), stream[1].Train);
        Console.WriteLine($"PackNet after {next.TasksSeen} tasks: {string.Join(", ", next.StateSizes.Select(kv => $"{kv.Key} {kv.Value:N0}"))}");

        // Without the task id, the model cannot know which weights to use, and says so.
        var withoutTaskId = ml.Transforms.DropColumns("TaskId").Fit(stream[0].Test).Transform(stream[0].Test);
        try { next.Transform(withoutTaskId); }
        catch (ContinualDataException e) { Console.WriteLine($"Without task ids: {e.Message}"); }
    }
}
