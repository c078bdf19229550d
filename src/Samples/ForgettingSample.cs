using Microsoft.ML;
using Microsoft.ML.Continual;
using Microsoft.ML.Data;

namespace Samples;

/// <summary>
/// Catastrophic forgetting, shown with the saved-model workflow of a nightly job: fit task 1, save; then each night
/// load yesterday's file, refit on the new task and save again. The first task's accuracy falls as later tasks are learned.
/// </summary>
public static class ForgettingSample
{
    public static void Run(string workDirectory)
    {
        const int Tasks = 3;
        var ml = new MLContext(seed: 1);
        var train = Enumerable.Range(0, Tasks).Select(t => GeneratedTasks.Task(ml, t, rows: 3000, seed: 1)).ToArray();
        var test = Enumerable.Range(0, Tasks).Select(t => GeneratedTasks.Task(ml, t, rows: 900, seed: 2)).ToArray();
        var trainer = ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options { HiddenLayerSizes = [64], NumberOfEpochs = 10 });

        Console.WriteLine($"{"after",-10}" + string.Concat(Enumerable.Range(1, Tasks).Select(t => $"{"task " + t,10}")));
        string path = Path.Combine(workDirectory, "forgetting-model.zip");
        ITransformer? model = null;
        for (int t = 0; t < Tasks; t++)
        {
            model = model is null ? trainer.Fit(train[t]) : ml.Continual().Refit(ml.Continual().LoadModel(path, out _), train[t]);
            ml.Model.Save(model, train[t].Schema, path);
            Console.WriteLine($"{"task " + (t + 1),-10}" + string.Concat(test.Select(data => $"{Accuracy(model, data),10:F3}")));
        }
    }

    private static double Accuracy(ITransformer model, IDataView data)
    {
        var scored = model.Transform(data);
        var labels = scored.GetColumn<ReadOnlyMemory<char>>("Label").Select(l => l.ToString()).ToArray();
        var predicted = scored.GetColumn<ReadOnlyMemory<char>>("PredictedLabel").Select(l => l.ToString()).ToArray();
        return labels.Zip(predicted).Count(p => p.First == p.Second) / (double)labels.Length;
    }
}
