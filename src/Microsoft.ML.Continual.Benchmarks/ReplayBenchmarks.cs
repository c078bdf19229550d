using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Continual;

/// <summary>
/// Experience replay on Split MNIST under Hsu et al. (2018)'s protocol (MLP 784-400-400, Adam 1e-3, batch 128, 4 epochs per
/// task), beside FineTune and Joint; and replay's throughput over ten tasks as its memory fills.
/// </summary>
internal static class ReplayBenchmarks
{
    // Hsu et al. 2018, Table 2, naive rehearsal (%), task- / domain- / class-incremental.
    private static readonly Dictionary<ContinualScenario, double> NaiveRehearsal = new()
    {
        [ContinualScenario.TaskIncremental] = 99.40, [ContinualScenario.DomainIncremental] = 95.16, [ContinualScenario.ClassIncremental] = 90.78,
    };

    public static void SplitMnist(string? only, string? scenarios, int seed, string reportDirectory)
    {
        var chosen = scenarios is null ? Enum.GetValues<ContinualScenario>() : scenarios.Split(',').Select(Enum.Parse<ContinualScenario>).ToArray();
        foreach (var scenario in chosen)
        {
            var ml = new MLContext(seed: seed);
            var stream = ml.Continual().Benchmarks.SplitMnist(scenario, seed: seed);
            T Protocol<T>(T o) where T : ContinualTrainerOptions
            {
                o.HiddenLayerSizes = [400, 400];
                o.Optimizer = ContinualOptimizer.Adam;
                o.LearningRate = 1e-3;
                o.BatchSize = 128;
                o.NumberOfEpochs = 4;
                o.TaskIdColumnName = scenario == ContinualScenario.TaskIncremental ? "TaskId" : null;
                o.Seed = seed;
                o.NumberOfThreads = 2;
                return o;
            }
            var methods = new List<(string Name, Func<IEstimator<ITransformer>> Create)>
            {
                ("FineTune", () => ml.Continual().Trainers.FineTune(Protocol(new FineTuneTrainer.Options()))),
                // Hsu et al.'s naive rehearsal: task-balanced random memory, old:new = 1:1; their script's two budgets.
                ("Replay 1100 task-balanced", () => ml.Continual().Trainers.Replay(Protocol(new ReplayTrainer.Options { MemorySize = 1100, BufferPolicy = ReplayBufferPolicy.TaskBalanced }))),
                ("Replay 4400 task-balanced", () => ml.Continual().Trainers.Replay(Protocol(new ReplayTrainer.Options { MemorySize = 4400, BufferPolicy = ReplayBufferPolicy.TaskBalanced }))),
                ("Replay 500 reservoir", () => ml.Continual().Trainers.Replay(Protocol(new ReplayTrainer.Options { MemorySize = 500 }))),
                ("Replay 500 class-balanced herding", () => ml.Continual().Trainers.Replay(Protocol(new ReplayTrainer.Options { MemorySize = 500, BufferPolicy = ReplayBufferPolicy.ClassBalanced, Selection = ExemplarSelection.Herding }))),
                ("Replay 500 + online EWC", () => ml.Continual().Trainers.Replay(Protocol(new ReplayTrainer.Options { MemorySize = 500, Regularization = ReplayRegularization.OnlineEwc }))),
                ("Joint", () => ml.Continual().Trainers.Joint(Protocol(new JointTrainer.Options()))),
            };
            var results = new List<ContinualExperimentResult>();
            var clock = Stopwatch.StartNew();
            foreach (var (name, create) in methods.Where(m => only is null || only.Split(',').Any(o => m.Name.StartsWith(o.Replace('_', ' ')))))
            {
                var result = ml.Continual().Run(create(), stream, new ContinualRunOptions { Name = name });
                results.Add(result);
                Console.WriteLine($"{scenario} {name}: ACC {result.Metrics.AverageAccuracy:F4}  BWT {result.Metrics.BackwardTransfer:F4}  training {result.TotalTrainingSeconds:F1} s");
            }
            Console.WriteLine();
            Console.WriteLine($"Split MNIST {scenario}, Hsu et al. 2018 protocol, seed {seed}; {clock.Elapsed.TotalMinutes:F1} min; naive rehearsal published {NaiveRehearsal[scenario]:F2}");
            Console.WriteLine("| method | ACC | BWT | training s |");
            Console.WriteLine("| --- | ---: | ---: | ---: |");
            foreach (var r in results)
                Console.WriteLine($"| {r.Name} | {100 * r.Metrics.AverageAccuracy:F2} | {100 * r.Metrics.BackwardTransfer:+0.00;-0.00} | {r.TotalTrainingSeconds:F1} |");
            if (results.Count > 0) ContinualCharts.SaveComparison(results, Path.Combine(reportDirectory, $"split-mnist-replay-{scenario}"));
        }
    }

    /// <summary>
    /// Generative replay on Split MNIST beside FineTune and Joint, under van de Ven and Tolias (2019)'s protocol: MLP
    /// 784-400-400, VAE with two 400-unit layers each way and a 100-unit latent, Adam, batch 128, about 2,000 iterations
    /// per task (<paramref name="epochs"/> epochs of ~12,000 images).
    /// </summary>
    public static void Generative(string? scenarios, int epochs, double learningRate, int seed, string reportDirectory)
    {
        var chosen = scenarios is null ? [ContinualScenario.ClassIncremental] : scenarios.Split(',').Select(Enum.Parse<ContinualScenario>).ToArray();
        foreach (var scenario in chosen)
        {
            var ml = new MLContext(seed: seed);
            var stream = ml.Continual().Benchmarks.SplitMnist(scenario, seed: seed);
            T Protocol<T>(T o) where T : ContinualTrainerOptions
            {
                o.HiddenLayerSizes = [400, 400];
                o.LearningRate = learningRate;
                o.BatchSize = 128;
                o.NumberOfEpochs = epochs;
                o.TaskIdColumnName = scenario == ContinualScenario.TaskIncremental ? "TaskId" : null;
                o.Seed = seed;
                o.NumberOfThreads = 2;
                return o;
            }
            var methods = new List<(string Name, Func<IEstimator<ITransformer>> Create)>
            {
                ("FineTune", () => ml.Continual().Trainers.FineTune(Protocol(new FineTuneTrainer.Options()))),
                ("Generative replay + distillation", () => ml.Continual().Trainers.GenerativeReplay(Protocol(new GenerativeReplayTrainer.Options()))),
                ("Generative replay (hard labels)", () => ml.Continual().Trainers.GenerativeReplay(Protocol(new GenerativeReplayTrainer.Options { Distillation = false }))),
                ("Joint", () => ml.Continual().Trainers.Joint(Protocol(new JointTrainer.Options()))),
            };
            var results = new List<ContinualExperimentResult>();
            var clock = Stopwatch.StartNew();
            foreach (var (name, create) in methods)
            {
                var result = ml.Continual().Run(create(), stream, new ContinualRunOptions { Name = name });
                results.Add(result);
                Console.WriteLine($"{scenario} {name}: ACC {result.Metrics.AverageAccuracy:F4}  BWT {result.Metrics.BackwardTransfer:F4}  training {result.TotalTrainingSeconds:F1} s");
            }
            Console.WriteLine();
            Console.WriteLine($"Split MNIST {scenario}, van de Ven and Tolias 2019 protocol (MLP 784-400-400, VAE 400-400/100, Adam {learningRate}, batch 128, {epochs} epochs ≈ {epochs * 94} iterations per task), seed {seed}; {clock.Elapsed.TotalMinutes:F1} min");
            Console.WriteLine("| method | ACC | BWT | training s |");
            Console.WriteLine("| --- | ---: | ---: | ---: |");
            foreach (var r in results)
                Console.WriteLine($"| {r.Name} | {100 * r.Metrics.AverageAccuracy:F2} | {100 * r.Metrics.BackwardTransfer:+0.00;-0.00} | {r.TotalTrainingSeconds:F1} |");
            ContinualCharts.SaveComparison(results, Path.Combine(reportDirectory, $"split-mnist-generative-{scenario}"));
        }
    }

    /// <summary>Replay's throughput task by task while its memory fills (10-task Permuted MNIST; by default 10,000 images per task, 2 epochs, budget 20,000, class-balanced).</summary>
    public static void Throughput(string policyName, int memory, int rowsPerTask, int epochs, string reportDirectory)
    {
        var policy = Enum.Parse<ReplayBufferPolicy>(policyName);
        var ml = new MLContext(seed: 0);
        var stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: 10, trainSamplesPerTask: rowsPerTask, testSamplesPerTask: 1000);
        var options = new ReplayTrainer.Options
        {
            MemorySize = memory, BufferPolicy = policy, HiddenLayerSizes = [400, 400], NumberOfEpochs = epochs, Seed = 0, NumberOfThreads = 2,
        };
        var result = ml.Continual().Run(ml.Continual().Trainers.Replay(options), stream, new ContinualRunOptions { EvaluateBeforeTraining = false, Name = "Replay" });
        Console.WriteLine($"Replay throughput, 10-task Permuted MNIST ({rowsPerTask:N0} images per task, {epochs} epoch(s), MLP 784-400-400, batch 128), memory {memory:N0} {policy}, share 0.5");
        Console.WriteLine("| task | memory rows before | task rows/s | rows processed/s (task + replayed) |");
        Console.WriteLine("| ---: | ---: | ---: | ---: |");
        for (int t = 0; t < result.Tasks.Count; t++)
        {
            var record = result.Tasks[t];
            long before = t == 0 ? 0 : Math.Min(memory, (long)rowsPerTask * t);
            double processed = record.SamplesPerSecond * (t == 0 ? 1 : 1 + options.ReplayShare / (1 - options.ReplayShare));
            Console.WriteLine($"| {t + 1} | {before:N0} | {record.SamplesPerSecond:N0} | {processed:N0} |");
        }
        double second = result.Tasks[1].SamplesPerSecond, tenth = result.Tasks[^1].SamplesPerSecond;
        Console.WriteLine($"10th task / 2nd task (both replaying): {tenth / second:F3}; 10th / 1st in rows processed: {tenth * 2 / result.Tasks[0].SamplesPerSecond:F3}");
    }
}
