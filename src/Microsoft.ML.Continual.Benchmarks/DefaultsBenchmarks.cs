using Microsoft.ML;
using Microsoft.ML.Continual;
using Microsoft.ML.Data;

/// <summary>
/// Every trainer with its default options, as a new user's first try, beside fine-tuning (also with its defaults) in each
/// scenario the trainer applies to, on two streams per scenario: domain-incremental Rotated MNIST and the rotating
/// hyperplane (generated drift); class- and task-incremental Split MNIST and a split of generated Gaussian classes. A
/// trainer passes a stream when its ACC is at least 3 points above fine-tuning's and its BWT above fine-tuning's. The
/// λ defaults were chosen on Split and Permuted MNIST (docs/benchmarks.md): Rotated MNIST, the rotating hyperplane and
/// the Gaussian classes were used to choose no default, so every scenario has at least one stream its defaults were not chosen on.
/// </summary>
internal static class DefaultsBenchmarks
{
    private const double AccuracyMargin = 0.03;

    // Methods that need the task id (one head per task) and methods made for one head of growing classes.
    private static readonly HashSet<string> TaskIdOnly = ["PackNet", "Cpg", "ProgressiveNetworks", "Independent"];
    private static readonly HashSet<string> ClassIncrementalOnly = ["Icarl", "Bic"];

    public static void Run(string? only, string scenarios, int rowsPerTask, int seed, int threads)
    {
        var names = ContinualTrainers.Names.Where(n => n is not "Composed" and not "FineTune")
            .Where(n => only is null || only.Split(',').Contains(n, StringComparer.OrdinalIgnoreCase)).ToList();
        var failures = new List<string>();
        int passes = 0;
        foreach (string scenario in scenarios.Split(','))
        {
            var ml = new MLContext(seed: seed);
            foreach (var stream in Streams(ml, scenario, rowsPerTask, seed))
            {
                var settings = new Dictionary<string, string> { ["Seed"] = seed.ToString(), ["NumberOfThreads"] = threads.ToString() };
                if (stream.Scenario == ContinualScenario.TaskIncremental) settings["TaskIdColumnName"] = stream.TaskIdColumnName!;
                var fineTune = Run(ml, "FineTune", settings, stream);
                Console.WriteLine($"{stream.Name}: FineTune ACC {100 * fineTune.AverageAccuracy:F2}, BWT {100 * fineTune.BackwardTransfer:+0.00;-0.00}");
                Console.WriteLine("| trainer | ACC | ΔACC | BWT | ΔBWT | beats FineTune |\n| --- | ---: | ---: | ---: | ---: | --- |");
                foreach (string name in names.Where(n => Applies(n, stream.Scenario)))
                {
                    var metrics = Run(ml, name, settings, stream);
                    bool beats = metrics.AverageAccuracy >= fineTune.AverageAccuracy + AccuracyMargin && metrics.BackwardTransfer > fineTune.BackwardTransfer;
                    if (beats) passes++;
                    else failures.Add($"{name} on {stream.Name}: ACC {100 * metrics.AverageAccuracy:F2} vs {100 * fineTune.AverageAccuracy:F2}, BWT {100 * metrics.BackwardTransfer:F2} vs {100 * fineTune.BackwardTransfer:F2}");
                    Console.WriteLine($"| {name} | {100 * metrics.AverageAccuracy:F2} | {100 * (metrics.AverageAccuracy - fineTune.AverageAccuracy):+0.00;-0.00} | {100 * metrics.BackwardTransfer:+0.00;-0.00} | {100 * (metrics.BackwardTransfer - fineTune.BackwardTransfer):+0.00;-0.00} | {(beats ? "yes" : "**no**")} |");
                }
                Console.WriteLine();
            }
        }
        Console.WriteLine($"{passes} of {passes + failures.Count} trainer-stream pairs beat FineTune (ACC +{100 * AccuracyMargin:F0} points and BWT).");
        foreach (string failure in failures) Console.WriteLine($"  short: {failure}");
    }

    private static bool Applies(string trainer, ContinualScenario scenario) =>
        scenario == ContinualScenario.TaskIncremental ? !ClassIncrementalOnly.Contains(trainer)
        : !TaskIdOnly.Contains(trainer) && (scenario == ContinualScenario.ClassIncremental || !ClassIncrementalOnly.Contains(trainer));

    private static ContinualMetrics Run(MLContext ml, string trainer, Dictionary<string, string> settings, TaskStream stream) =>
        ml.Continual().Run(ml.Continual().Trainers.Create(trainer, settings), stream, new ContinualRunOptions { Name = trainer }).Metrics;

    private static IEnumerable<TaskStream> Streams(MLContext ml, string scenario, int rows, int seed)
    {
        int test = Math.Max(500, rows / 4);
        switch (scenario)
        {
            case "domain":
                yield return ml.Continual().Benchmarks.RotatedMnist(5, 180, rows, test, seed);
                yield return ml.Continual().Benchmarks.RotatingHyperplane(5, rows, test, seed: seed);
                break;
            case "class":
                yield return ml.Continual().Benchmarks.SplitMnist(ContinualScenario.ClassIncremental, 5, rows, test, seed);
                yield return GaussianClasses(ml, ContinualScenario.ClassIncremental, rows, test, seed);
                break;
            case "task":
                yield return ml.Continual().Benchmarks.SplitMnist(ContinualScenario.TaskIncremental, 5, rows, test, seed);
                yield return GaussianClasses(ml, ContinualScenario.TaskIncremental, rows, test, seed);
                break;
            default:
                throw new ArgumentException($"Unknown scenario '{scenario}' (domain, class, task).");
        }
    }

    private sealed class Blob
    {
        [VectorType(Dimensions)]
        public float[] Features { get; set; } = [];

        public int Label { get; set; }
    }

    private const int Dimensions = 20, Classes = 10;

    /// <summary>
    /// Ten overlapping Gaussian classes in 20 dimensions (centres N(0, 1.5²I), unit noise), split into five tasks of two
    /// classes: not an image, nothing any default was chosen on.
    /// </summary>
    private static TaskStream GaussianClasses(MLContext ml, ContinualScenario scenario, int rowsPerTask, int testRowsPerTask, int seed)
    {
        var centres = new Random(1000 + seed);
        var means = Enumerable.Range(0, Classes).Select(_ => Enumerable.Range(0, Dimensions).Select(_ => 1.5 * Gaussian(centres)).ToArray()).ToArray();
        IDataView Rows(int count, int salt)
        {
            var random = new Random(seed * 7919 + salt);
            var rows = Enumerable.Range(0, count).Select(i => new Blob
            {
                Label = i % Classes,
                Features = means[i % Classes].Select(m => (float)(m + Gaussian(random))).ToArray(),
            }).ToList();
            return ml.Data.LoadFromEnumerable(rows);
        }
        var groups = Enumerable.Range(0, 5).Select(t => new[] { 2 * t, 2 * t + 1 }).ToArray();
        var stream = TaskStream.Split(Rows(rowsPerTask * 5, 1), Rows(testRowsPerTask * 5, 2), scenario, groups, rowsPerTask, testRowsPerTask, seed);
        return stream;
    }

    private static double Gaussian(Random random) => Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}
