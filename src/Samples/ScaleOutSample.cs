using Microsoft.ML;
using Microsoft.ML.Continual;

namespace Samples;

/// <summary>
/// Sample for <see cref="ContinualCommunicator"/> and <see cref="ContinualFitOptions.Communicator"/>: data-parallel
/// training under OpenMPI. The same program runs alone (one process) or under <c>mpirun</c>:
/// <code>
/// mpirun -np 2 dotnet src/Samples/bin/Release/net10.0/Samples.dll scale-out                       # two processes on this machine
/// mpirun -np 4 -H host1:2,host2:2 dotnet /shared/app/Samples.dll scale-out                        # two machines, two processes each
/// </code>
/// Every process reads the same tasks, trains its share of each minibatch and takes the same optimizer step on the
/// summed gradients, so every process ends with the same model; only rank 0 writes it.
/// </summary>
public static class ScaleOutSample
{
    public static void Run(string work)
    {
        var ml = new MLContext(seed: 1);
        ContinualCommunicator world = ContinualCommunicator.World; // MPI's world under mpirun, one process otherwise
        TaskStream stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: 2, trainSamplesPerTask: 10_000, testSamplesPerTask: 2_000);
        var trainer = ml.Continual().Trainers.Ewc(new EwcTrainer.Options
        {
            HiddenLayerSizes = [256, 256], NumberOfEpochs = 2, BatchSize = 256, NumberOfThreads = 1, Seed = 0,
        });

        // Plain Fit and Refit use ContinualCommunicator.World; ContinualFitOptions.Communicator chooses explicitly
        // (ContinualCommunicator.SingleProcess trains alone even under mpirun).
        var fit = new ContinualFitOptions { Communicator = world };
        var clock = System.Diagnostics.Stopwatch.StartNew();
        ContinualTransformer model;
        try
        {
            model = trainer.Fit(stream[0].Train, previousModel: null, fit);
            model = (ContinualTransformer)ml.Continual().Refit(model, stream[1].Train, fit);
        }
        catch (ContinualDistributedException e)
        {
            // Another process failed while reading its data (its own error is in its output), or the processes were given
            // different models or data: every process gets an error at the same point, and none waits for the others.
            Console.Error.WriteLine($"rank {world.Rank}: {e.Message}");
            return;
        }
        double seconds = clock.Elapsed.TotalSeconds;

        if (world.Rank != 0) return; // every process holds the same model: one writes it and reports
        string path = Path.Combine(work, "scale-out-model.zip");
        ml.Model.Save(model, stream[1].Train.Schema, path);
        var accuracies = stream.Select(task => ml.MulticlassClassification.Evaluate(model.Transform(task.Test)).MacroAccuracy);
        Console.WriteLine($"{world.Description}: EWC on 2 Permuted MNIST tasks in {seconds:F1} s; accuracy per task " +
            $"{string.Join(", ", accuracies.Select(a => a.ToString("F4", System.Globalization.CultureInfo.InvariantCulture)))}; wrote {path}");
    }
}
