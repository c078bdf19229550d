using Microsoft.ML.Data;
using Microsoft.ML;
using Microsoft.ML.Continual;
using Samples;

// The main demo: fine-tuning a model task after task forgets the earlier tasks. Each row of the table is the
// accuracy on every task after training one more (row 0: before any training).
// Usage: dotnet run --project src/Samples [-- finetune]   (a sample's name runs just that sample)
string work = Path.Combine(Path.GetTempPath(), "continual-samples");
Directory.CreateDirectory(work);

if (args.Length > 0)
{
    switch (args[0].ToLowerInvariant())
    {
        case "finetune": FineTuneSample.Run(work); return 0;
        default:
            Console.Error.WriteLine($"Unknown sample '{args[0]}'. Samples: finetune.");
            return 2;
    }
}

const int Tasks = 3;
var ml = new MLContext(seed: 1);
var train = Enumerable.Range(0, Tasks).Select(t => GeneratedTasks.Task(ml, t, rows: 3000, seed: 1)).ToArray();
var test = Enumerable.Range(0, Tasks).Select(t => GeneratedTasks.Task(ml, t, rows: 900, seed: 2)).ToArray();

var trainer = ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options
{
    LabelColumnName = "Label",
    HiddenLayerSizes = [64],
    NumberOfEpochs = 10,
});

Console.WriteLine("Fine-tuning on 3 generated tasks (same 3 classes, each task a new orientation of the data).");
Console.WriteLine("Accuracy on each task's test set after training each task:");
Console.WriteLine($"{"after",-14}" + string.Concat(Enumerable.Range(1, Tasks).Select(t => $"{"task " + t,10}")));
ContinualTransformer? model = null;
string path = Path.Combine(work, "demo-model.zip");
for (int t = 0; t < Tasks; t++)
{
    // First task: Fit. Later tasks: load yesterday's file and Refit, as a nightly job would.
    if (model is null) model = trainer.Fit(train[t]);
    else
    {
        ITransformer loaded = ml.Model.Load(path, out _);
        model = (ContinualTransformer)ml.Continual().Refit(loaded, train[t]);
    }
    ml.Model.Save(model, train[t].Schema, path);
    var row = test.Select(data => Accuracy(model, data));
    Console.WriteLine($"{"task " + (t + 1),-14}" + string.Concat(row.Select(a => $"{a,10:F3}")));
}
Console.WriteLine($"Model after {model!.TasksSeen} tasks saved to {path}.");
Console.WriteLine("The first task's accuracy falls as later tasks are learned: catastrophic forgetting, which the");
Console.WriteLine("continual trainers of this library (EWC, SI, replay, ...) exist to prevent.");
return 0;

static double Accuracy(ITransformer model, IDataView data)
{
    var scored = model.Transform(data);
    var labels = scored.GetColumn<ReadOnlyMemory<char>>("Label").Select(l => l.ToString()).ToArray();
    var predicted = scored.GetColumn<ReadOnlyMemory<char>>("PredictedLabel").Select(l => l.ToString()).ToArray();
    return labels.Zip(predicted).Count(p => p.First == p.Second) / (double)labels.Length;
}
