using Microsoft.ML;
using Microsoft.ML.Continual;

namespace Samples;

/// <summary>
/// Sample for the pieces a batch job uses (<see cref="ContinualTrainers.Create"/>, <see cref="ContinualFitOptions"/>,
/// <see cref="ContinualCatalog.LoadModel(string, out DataViewSchema)"/>, <see cref="ContinualCatalog.Score"/>): a trainer chosen by name with
/// text options, a fit with progress and checkpoints that is interrupted and resumed to the same model, a safe load and a score.
/// </summary>
public static class ProductionSample
{
    public static void Run(string workDirectory)
    {
        var ml = new MLContext(seed: 1);
        TaskStream stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: 2, trainSamplesPerTask: 5_000, testSamplesPerTask: 1_000);
        // A trainer from configuration text, as a job would read it.
        var settings = new Dictionary<string, string> { ["Lambda"] = "100", ["Mode"] = "Online", ["HiddenLayerSizes"] = "100", ["NumberOfEpochs"] = "4" };
        var trainer = (EwcTrainer)ml.Continual().Trainers.Create("ewc", settings);
        var first = trainer.Fit(stream[0].Train);

        // Train the second task with a checkpoint after every epoch; stop it after epoch 2 as a crash would.
        string checkpoint = Path.Combine(workDirectory, "task2.ckpt");
        using var stop = new CancellationTokenSource();
        var interrupted = new ContinualFitOptions
        {
            CheckpointPath = checkpoint,
            Progress = p => { if (p.EpochCompleted) { Console.WriteLine($"  epoch {p.Epoch + 1}/{p.Epochs}: loss {p.Loss:F4}"); if (p.Epoch == 1) stop.Cancel(); } },
        };
        try { trainer.Fit(stream[1].Train, first, interrupted, stop.Token); }
        catch (OperationCanceledException) { Console.WriteLine($"Interrupted; checkpoint kept at {checkpoint}."); }

        // The job runs again with Resume: it continues after epoch 2 and ends with the model an uninterrupted fit makes.
        var resumed = trainer.Fit(stream[1].Train, first, new ContinualFitOptions
        {
            CheckpointPath = checkpoint, Resume = true,
            Progress = p => { if (p.EpochCompleted) Console.WriteLine($"  epoch {p.Epoch + 1}/{p.Epochs}: loss {p.Loss:F4}{(p.ResumedFromCheckpoint ? " (resumed)" : "")}"); },
        });
        string path = Path.Combine(workDirectory, "production-model.zip");
        ml.Model.Save(resumed, stream[1].Train.Schema, path);

        // Loading reports any damaged or foreign file as ContinualModelFormatException.
        var loaded = ml.Continual().LoadModel(path, out _);
        for (int t = 0; t < stream.Count; t++)
            Console.WriteLine($"Accuracy on {stream[t].Name}: {ml.Continual().Score(loaded, stream[t].Test):F4}");
        File.WriteAllBytes(Path.Combine(workDirectory, "damaged.zip"), File.ReadAllBytes(path)[..1000]);
        try { ml.Continual().LoadModel(Path.Combine(workDirectory, "damaged.zip"), out _); }
        catch (ContinualModelFormatException e) { Console.WriteLine($"A damaged file: {e.Message}"); }
    }
}
