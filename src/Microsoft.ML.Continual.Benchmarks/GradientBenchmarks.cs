using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Continual;

/// <summary>
/// GEM and A-GEM under the GEM paper's protocol (Lopez-Paz and Ranzato 2017, §5): 20 tasks of 1,000 MNIST training
/// images (tested on all 10,000 test images of each task), MLP 784-100-100-10, plain SGD lr 0.1, batch 10, one epoch,
/// 256 memories per task, memory strength 0.5; FineTune ("single") and EWC beside them in the same run.
/// </summary>
internal static class GradientBenchmarks
{
    private static readonly Dictionary<(string Stream, string Method), (double Acc, double Bwt)> Published = new()
    {
        [("rotated", "GEM")] = (0.86, 0.05), [("rotated", "EWC")] = (0.55, -0.19), [("rotated", "FineTune")] = (0.53, -0.08),
        [("permuted", "GEM")] = (0.83, double.NaN), [("permuted", "A-GEM")] = (0.81, double.NaN),
    };

    /// <param name="rowsPerTask">1,000 in the GEM paper; 60,000 (all of MNIST) in the A-GEM paper.</param>
    /// <param name="hidden">100,100 in the GEM paper; 256,256 in the A-GEM paper.</param>
    public static void Run(string streams, string? only, int seed, double learningRate, int rowsPerTask, int[] hidden, string reportDirectory)
    {
        foreach (string streamName in streams.Split(','))
        {
            var ml = new MLContext(seed: seed);
            var stream = streamName switch
            {
                "rotated" => ml.Continual().Benchmarks.RotatedMnist(numberOfTasks: 20, maxAngle: 180, trainSamplesPerTask: rowsPerTask, seed: seed),
                "permuted" => ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: 20, trainSamplesPerTask: rowsPerTask, seed: seed),
                _ => throw new ArgumentException($"Unknown stream '{streamName}' (rotated, permuted)."),
            };
            T Protocol<T>(T o) where T : ContinualTrainerOptions
            {
                o.HiddenLayerSizes = hidden;
                o.Optimizer = ContinualOptimizer.Sgd;
                o.LearningRate = learningRate;
                o.BatchSize = 10;
                o.NumberOfEpochs = 1;
                o.Seed = seed;
                o.NumberOfThreads = 2;
                return o;
            }
            var methods = new List<(string Name, Func<IEstimator<ITransformer>> Create)>
            {
                ("FineTune", () => ml.Continual().Trainers.FineTune(Protocol(new FineTuneTrainer.Options()))),
                ("A-GEM", () => ml.Continual().Trainers.AGem(Protocol(new AGemTrainer.Options { MemorySize = 256 * 20, ReferenceSampleSize = 256 }))),
                ("GEM", () => ml.Continual().Trainers.Gem(Protocol(new GemTrainer.Options { MemoriesPerTask = 256, MemoryStrength = 0.5 }))),
                ("EWC", () => ml.Continual().Trainers.Ewc(Protocol(new EwcTrainer.Options { Lambda = 1 }))), // with plain SGD at lr 0.1, λ = 100 overshoots (2·lr·λ·F > 2) and diverges
            };
            var results = new List<ContinualExperimentResult>();
            var clock = Stopwatch.StartNew();
            foreach (var (name, create) in methods.Where(m => only is null || only.Split(',').Contains(m.Name)))
            {
                var result = ml.Continual().Run(create(), stream, new ContinualRunOptions { Name = name });
                results.Add(result);
                Console.WriteLine($"{streamName} {name}: ACC {result.Metrics.AverageAccuracy:F4}  BWT {result.Metrics.BackwardTransfer:F4}  FWT {result.Metrics.ForwardTransfer:F4}  training {result.TotalTrainingSeconds:F1} s");
            }
            var fineTune = results.FirstOrDefault(r => r.Name == "FineTune");
            Console.WriteLine();
            Console.WriteLine($"{stream.Name}, 20 × {rowsPerTask:N0} images, MLP 784-{string.Join("-", hidden)}-10, SGD {learningRate}, batch 10, 1 epoch, seed {seed}; {clock.Elapsed.TotalMinutes:F1} min");
            Console.WriteLine("| method | ACC | BWT | FWT | published ACC / BWT | training s | time / FineTune | memory rows after last task |");
            Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            foreach (var r in results)
            {
                string published = Published.TryGetValue((streamName, r.Name), out var p) ? $"{p.Acc:F2} / {(double.IsNaN(p.Bwt) ? "–" : p.Bwt.ToString("+0.00;-0.00"))}" : "–";
                string ratio = fineTune is null ? "n/a" : $"{r.TotalTrainingSeconds / fineTune.TotalTrainingSeconds:F2}";
                var last = ContinualCatalog.FindContinual(r.Models[^1]);
                string memory = last is not null && last.StateSizes.TryGetValue("memory rows", out var rows) ? rows.ToString("N0") : "–";
                Console.WriteLine($"| {r.Name} | {r.Metrics.AverageAccuracy:F4} | {r.Metrics.BackwardTransfer:+0.0000;-0.0000} | {r.Metrics.ForwardTransfer:+0.0000;-0.0000} | {published} | {r.TotalTrainingSeconds:F1} | {ratio} | {memory} |");
            }
            ContinualCharts.SaveComparison(results, Path.Combine(reportDirectory, $"gem-protocol-{streamName}-seed{seed}-lr{learningRate}-rows{rowsPerTask}"));
        }
    }
}
