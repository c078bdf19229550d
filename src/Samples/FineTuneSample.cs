using Microsoft.ML;
using Microsoft.ML.Continual;

namespace Samples;

/// <summary>
/// Sample for <see cref="ContinualTrainers.FineTune(FineTuneTrainer.Options?)"/>, <see cref="ContinualCatalog.Refit"/>,
/// saving and loading: fit on a first task, save the ordinary ML.NET zip, load it, refit on the next task, predict.
/// </summary>
public static class FineTuneSample
{
    public static void Run(string workDirectory)
    {
        var ml = new MLContext(seed: 1);
        IDataView task1 = GeneratedTasks.Task(ml, task: 0, rows: 1500, seed: 1);
        IDataView task2 = GeneratedTasks.Task(ml, task: 1, rows: 1500, seed: 1);

        var pipeline = ml.Transforms.NormalizeMinMax("Features")
            .Append(ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options
            {
                LabelColumnName = "Label",
                FeatureColumnName = "Features",
                HiddenLayerSizes = [32],
                NumberOfEpochs = 10,
            }));
        ITransformer model = pipeline.Fit(task1);

        string path = Path.Combine(workDirectory, "finetune-model.zip");
        ml.Model.Save(model, task1.Schema, path);

        // Later (another process, another day): load and continue on the next task.
        ITransformer loaded = ml.Continual().LoadModel(path, out _);
        ITransformer next = ml.Continual().Refit(loaded, task2);

        var engine = ml.Model.CreatePredictionEngine<Example, Prediction>(next);
        Example example = GeneratedTasks.Examples(task: 1, rows: 1, seed: 99).First();
        Prediction prediction = engine.Predict(example);
        Console.WriteLine($"FineTune sample: true label {example.Label}, predicted {prediction.PredictedLabel} " +
                          $"(scores {string.Join(", ", prediction.Score.Select(s => s.ToString("F3")))})");
    }
}
