using System.Collections.Concurrent;

namespace Microsoft.ML.Continual;

/// <summary><c>mlContext.Continual().Benchmarks</c>: the benchmark streams, from the package Microsoft.ML.Continual.Datasets.</summary>
public static class ContinualDatasetsCatalogExtensions
{
    extension(ContinualCatalog catalog)
    {
        /// <summary>Ready-made task streams (Permuted, Rotated and Split MNIST, a generated drift stream).</summary>
        public ContinualBenchmarks Benchmarks => ContinualBenchmarks.Instance;
    }
}

/// <summary>Ready-made task streams: <c>mlContext.Continual().Benchmarks</c> (package Microsoft.ML.Continual.Datasets).</summary>
public sealed class ContinualBenchmarks
{
    private static readonly ConcurrentDictionary<string, (LabeledArrays Train, LabeledArrays Test)> MnistCache = new();

    internal static ContinualBenchmarks Instance { get; } = new();

    private ContinualBenchmarks() { }

    /// <summary>The five pairs of Split MNIST (Zenke et al. 2017): 0/1, 2/3, 4/5, 6/7, 8/9.</summary>
    public static IReadOnlyList<int[]> SplitMnistGroups { get; } = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]];

    /// <summary>Permuted MNIST: each task a fixed pixel permutation of MNIST (domain-incremental, 10 classes).</summary>
    /// <param name="numberOfTasks">How many tasks. Default 10.</param>
    /// <param name="trainSamplesPerTask">Training images per task (seeded sample); null (default): all 60,000.</param>
    /// <param name="testSamplesPerTask">Test images per task; null (default): all 10,000.</param>
    /// <param name="seed">Seed of the permutations and samples. Default 0.</param>
    /// <param name="dataDirectory">Where the MNIST IDX files are (fetched there when missing); default <see cref="MnistData.DefaultDirectory"/>.</param>
    public TaskStream PermutedMnist(int numberOfTasks = 10, int? trainSamplesPerTask = null, int? testSamplesPerTask = null, int seed = 0, string? dataDirectory = null)
    {
        var (train, test) = Mnist(dataDirectory);
        return StreamBuilders.Permuted(train, test, "Permuted MNIST", numberOfTasks, trainSamplesPerTask, testSamplesPerTask, seed);
    }

    /// <summary>Rotated MNIST: task t rotates every digit by an angle spread evenly over [0°, <paramref name="maxAngle"/>) (domain-incremental).</summary>
    public TaskStream RotatedMnist(int numberOfTasks = 10, double maxAngle = 180, int? trainSamplesPerTask = null, int? testSamplesPerTask = null,
        int seed = 0, string? dataDirectory = null)
    {
        var (train, test) = Mnist(dataDirectory);
        return StreamBuilders.Rotated(train, test, "Rotated MNIST", MnistData.Side, MnistData.Side, numberOfTasks, 0, maxAngle, trainSamplesPerTask, testSamplesPerTask, seed);
    }

    /// <summary>Rotated MNIST with the given angle of each task, in degrees, in order (e.g. angles drawn uniformly in
    /// [0°, 180°) once per task, as Mammoth's <c>rot-mnist</c> draws them).</summary>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public TaskStream RotatedMnist(IReadOnlyList<double> angles, int? trainSamplesPerTask = null, int? testSamplesPerTask = null, int seed = 0, string? dataDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(angles);
        var (train, test) = Mnist(dataDirectory);
        return StreamBuilders.Rotated(train, test, "Rotated MNIST", MnistData.Side, MnistData.Side, angles, trainSamplesPerTask, testSamplesPerTask, seed);
    }

    /// <summary>Split MNIST in the given scenario: five tasks of two digits each (<see cref="SplitMnistGroups"/>), or <paramref name="numberOfTasks"/> of them.</summary>
    public TaskStream SplitMnist(ContinualScenario scenario, int numberOfTasks = 5, int? trainSamplesPerTask = null, int? testSamplesPerTask = null,
        int seed = 0, string? dataDirectory = null)
    {
        if (numberOfTasks < 1 || numberOfTasks > 5) throw new ArgumentOutOfRangeException(nameof(numberOfTasks), "Split MNIST has 1 to 5 tasks.");
        var (train, test) = Mnist(dataDirectory);
        return StreamBuilders.Split(train, test, "Split MNIST", scenario, SplitMnistGroups.Take(numberOfTasks).ToList(), trainSamplesPerTask, testSamplesPerTask, seed);
    }

    /// <summary>Split MNIST (<see cref="SplitMnistGroups"/>) with fuzzy boundaries (<see cref="TaskStream.FuzzySplit"/>): the
    /// five pairs of digits one after another, blended over <paramref name="fuzzyBatches"/> batches each side of a boundary;
    /// train on <see cref="TaskStream.TrainingInOrder"/> in one pass for the task-free setting.</summary>
    /// <param name="scenario">Domain- or class-incremental.</param>
    /// <param name="fuzzyBatches">Batches on each side of a boundary over which two pairs blend. Default 10.</param>
    /// <param name="batchSize">The stream's batch size (the trainer's, so the blend is per step). Default 128.</param>
    /// <param name="trainSamplesPerTask">Rows per pair drawn; null: all.</param>
    /// <param name="testSamplesPerTask">Test rows per pair drawn; null: all.</param>
    /// <param name="seed">Seed. Default 0.</param>
    /// <param name="dataDirectory">Where the MNIST IDX files are (fetched there when missing).</param>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public TaskStream FuzzySplitMnist(ContinualScenario scenario, int fuzzyBatches = 10, int batchSize = 128, int? trainSamplesPerTask = null,
        int? testSamplesPerTask = null, int seed = 0, string? dataDirectory = null)
    {
        var (train, test) = Mnist(dataDirectory);
        return StreamBuilders.FuzzySplit(train, test, "Split MNIST", scenario, SplitMnistGroups, fuzzyBatches, batchSize, trainSamplesPerTask, testSamplesPerTask, seed);
    }

    /// <summary>
    /// MNIST-360 (Buzzega et al. 2020): a task-free stream with no boundaries. Two neighbouring digits of 0 to 8 at a time,
    /// (0,1), (1,2), ..., (8,0), three rounds, while each digit turns through 360° over the stream; one task whose training
    /// rows are the stream in order (train it in one pass with <see cref="ContinualTrainerOptions.ShuffleRows"/> false and
    /// one epoch) and whose test rows are the test images of 0 to 8, each digit rotated through 360°.
    /// </summary>
    /// <param name="batchSize">The stream's batch size: each batch mixes the two current digits in proportion to what is
    /// left of them (Mammoth builds the stream with the method's batch size). Default 16.</param>
    /// <param name="seed">The order within each digit's chunks. Default 0.</param>
    /// <param name="dataDirectory">Where the MNIST IDX files are (fetched there when missing).</param>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public TaskStream Mnist360(int batchSize = 16, int seed = 0, string? dataDirectory = null)
    {
        var (train, test) = Mnist(dataDirectory);
        return StreamBuilders.Mnist360(train, test, MnistData.Side, MnistData.Side, batchSize, seed);
    }

    /// <summary>A generated tabular drift stream that needs no data files: a rotating hyperplane (Hulten et al. 2001), two classes.</summary>
    /// <param name="numberOfTasks">How many tasks (the hyperplane turns by 180°/T per task). Default 5.</param>
    /// <param name="trainRowsPerTask">Training rows per task. Default 2,000.</param>
    /// <param name="testRowsPerTask">Test rows per task. Default 1,000.</param>
    /// <param name="dimensions">Features. Default 10.</param>
    /// <param name="noise">Share of labels flipped. Default 0.05.</param>
    /// <param name="seed">Seed. Default 0.</param>
    public TaskStream RotatingHyperplane(int numberOfTasks = 5, int trainRowsPerTask = 2000, int testRowsPerTask = 1000, int dimensions = 10,
        double noise = 0.05, int seed = 0) =>
        StreamBuilders.RotatingHyperplane(numberOfTasks, trainRowsPerTask, testRowsPerTask, dimensions, noise, seed);

    private static (LabeledArrays Train, LabeledArrays Test) Mnist(string? directory)
    {
        string folder = MnistData.EnsureAvailable(directory);
        return MnistCache.GetOrAdd(Path.GetFullPath(folder), f =>
        {
            var (train, test) = MnistData.Load(f);
            return (train.ToArrays(), test.ToArrays());
        });
    }
}
