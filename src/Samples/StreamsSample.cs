using Microsoft.ML;
using Microsoft.ML.Continual;

namespace Samples;

/// <summary>
/// Sample for <see cref="TaskStream"/>'s builders on your own <see cref="IDataView"/> (<see cref="TaskStream.Permuted"/>,
/// <see cref="TaskStream.Split"/>, <see cref="TaskStream.Rotated"/>) and for <see cref="MnistData"/>.
/// </summary>
public static class StreamsSample
{
    public static void Run()
    {
        var ml = new MLContext(seed: 1);
        IDataView train = GeneratedTasks.Task(ml, task: 0, rows: 900, seed: 1);
        IDataView test = GeneratedTasks.Task(ml, task: 0, rows: 300, seed: 2);

        // Any IDataView with a feature vector and a label: classes are numbered in sorted order (blue, green, red).
        TaskStream permuted = TaskStream.Permuted(train, test, numberOfTasks: 3, seed: 4);
        TaskStream split = TaskStream.Split(train, test, ContinualScenario.ClassIncremental, [[0], [1, 2]]);
        Console.WriteLine($"{permuted.Name}: {string.Join(", ", permuted.Select(t => t.Name))} ({permuted.Scenario})");
        Console.WriteLine($"{split.Name}: {string.Join(", ", split.Select(t => t.Name))}");

        // Images: rotate 28x28 MNIST digits (MnistData fetches and verifies the files once).
        string folder = MnistData.EnsureAvailable();
        var (mnistTrain, mnistTest) = MnistData.Load(folder);
        Console.WriteLine($"MNIST in {folder}: {mnistTrain.Count} training and {mnistTest.Count} test images");
        TaskStream rotated = ml.Continual().Benchmarks.RotatedMnist(numberOfTasks: 4, trainSamplesPerTask: 1000, testSamplesPerTask: 200);
        Console.WriteLine($"{rotated.Name}: {string.Join(", ", rotated.Select(t => t.Name))}");
    }
}
