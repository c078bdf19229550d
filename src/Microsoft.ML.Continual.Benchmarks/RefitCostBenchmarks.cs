using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Continual;

/// <summary>
/// Refit cost across a long stream: each method's refit time for the 1st and the last task, and the alternative a user
/// would pick, ML.NET's SDCA (maximum entropy) and LightGBM retrained from scratch on every task seen so far, with
/// accuracy on all tasks beside the times.
/// </summary>
internal static class RefitCostBenchmarks
{
    public static void Run(int tasks, int rowsPerTask, string? only)
    {
        var ml = new MLContext(seed: 0);
        var stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: tasks, trainSamplesPerTask: rowsPerTask, testSamplesPerTask: 1000, seed: 0);
        T Protocol<T>(T o) where T : ContinualTrainerOptions
        {
            o.HiddenLayerSizes = [256, 256];
            o.NumberOfEpochs = 2;
            o.Seed = 0;
            o.NumberOfThreads = 2;
            return o;
        }
        var methods = new List<(string Name, Func<IEstimator<ITransformer>> Create)>
        {
            ("FineTune", () => ml.Continual().Trainers.FineTune(Protocol(new FineTuneTrainer.Options()))),
            ("EWC (separate)", () => ml.Continual().Trainers.Ewc(Protocol(new EwcTrainer.Options()))),
            ("Online EWC", () => ml.Continual().Trainers.Ewc(Protocol(new EwcTrainer.Options { Mode = EwcMode.Online }))),
            ("SI", () => ml.Continual().Trainers.Si(Protocol(new SiTrainer.Options()))),
            ("MAS", () => ml.Continual().Trainers.Mas(Protocol(new MasTrainer.Options()))),
            ("A-GEM", () => ml.Continual().Trainers.AGem(Protocol(new AGemTrainer.Options()))),
            ("GEM", () => ml.Continual().Trainers.Gem(Protocol(new GemTrainer.Options()))),
            ("Replay 2,000", () => ml.Continual().Trainers.Replay(Protocol(new ReplayTrainer.Options { MemorySize = 2000 }))),
            ("Joint", () => ml.Continual().Trainers.Joint(Protocol(new JointTrainer.Options()))),
            // The architecture family needs task ids (task-incremental): its ACC is not comparable with the rows above.
            ("PackNet (task ids)", () => ml.Continual().Trainers.PackNet(Protocol(new PackNetTrainer.Options { ExpectedTaskCount = tasks, RetrainEpochs = 1, TaskIdColumnName = "TaskId" }))),
            ("CPG (task ids)", () => ml.Continual().Trainers.Cpg(Protocol(new CpgTrainer.Options { CompactionSteps = 2, TaskIdColumnName = "TaskId" }))),
            ("Progressive networks (task ids)", () => ml.Continual().Trainers.ProgressiveNetworks(Protocol(new ProgressiveNetworksTrainer.Options { TaskIdColumnName = "TaskId" }))),
        };
        Console.WriteLine($"Permuted MNIST, {tasks} tasks of {rowsPerTask:N0} images (1,000 test images each), MLP 784-256-256-10, Adam, 2 epochs per task, 2 threads");
        Console.WriteLine("| method | 1st task s | 2nd task s | last task s | last / 2nd | refits 2–4 mean s | last 3 mean s | ratio of means | ACC on all tasks | peak resident memory during its fits |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var (name, create) in methods.Where(m => only is null || only.Split(',').Any(o => m.Name.StartsWith(o.Replace('_', ' ')))))
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            long before = ProcessMemory.ResidentBytes();
            ProcessMemory.ResetPeak();
            var result = ml.Continual().Run(create(), stream, new ContinualRunOptions { EvaluateBeforeTraining = false, Name = name });
            long peak = ProcessMemory.PeakResidentBytes();
            var t = result.Tasks;
            // Single fits of a second or less are noisy on a shared machine: the means of three refits at each end are steadier.
            double early = t.Skip(1).Take(3).Average(r => r.TrainingSeconds), late = t.TakeLast(3).Average(r => r.TrainingSeconds);
            Console.WriteLine($"| {name} | {t[0].TrainingSeconds:F2} | {t[1].TrainingSeconds:F2} | {t[^1].TrainingSeconds:F2} | {t[^1].TrainingSeconds / t[1].TrainingSeconds:F2} | " +
                $"{early:F2} | {late:F2} | {late / early:F2} | {result.Metrics.AverageAccuracy:F4} | {(peak - before) / 1048576.0:N0} MB above {before / 1048576.0:N0} MB |");
        }

        // The alternative: retrain from scratch on the union of all tasks so far, after each task (first and last shown).
        foreach (var (name, trainer) in new (string, IEstimator<ITransformer>)[]
        {
            ("SDCA (maximum entropy), retrained on all data", ml.MulticlassClassification.Trainers.SdcaMaximumEntropy(maximumNumberOfIterations: 10)),
            ("LightGBM, retrained on all data", ml.MulticlassClassification.Trainers.LightGbm(numberOfIterations: 50)),
        })
        {
            if (only is not null && !only.Split(',').Any(o => name.StartsWith(o.Replace('_', ' ')))) continue;
            double first = 0, second = 0, last = 0;
            ITransformer? model = null;
            foreach (int k in new[] { 1, 2, tasks }.Distinct()) // a user retrains after every task; the 1st, 2nd and last show the trend
            {
                IDataView union = stream.Take(k).Select(task => task.Train).Aggregate((a, b) => Concatenate(ml, a, b));
                var clock = Stopwatch.StartNew();
                model = trainer.Fit(ml.Data.Cache(union));
                double seconds = clock.Elapsed.TotalSeconds;
                if (k == 1) first = seconds;
                if (k == 2) second = seconds;
                if (k == tasks) last = seconds;
            }
            // Scored on test rows read back through the same row type as the training rows (same key convention).
            double acc = stream.Average(task => ml.MulticlassClassification.Evaluate(model!.Transform(
                ml.Data.LoadFromEnumerable(ml.Data.CreateEnumerable<Row>(task.Test, reuseRowObject: false)))).MicroAccuracy);
            Console.WriteLine($"| {name} | {first:F2} | {second:F2} | {last:F2} | {last / second:F2} | – | – | – | {acc:F4} | – |");
        }
    }

    /// <summary>Rows of <paramref name="a"/> then <paramref name="b"/> (same schema), through an enumerable of plain rows.</summary>
    private static IDataView Concatenate(MLContext ml, IDataView a, IDataView b) =>
        ml.Data.LoadFromEnumerable(ml.Data.CreateEnumerable<Row>(a, reuseRowObject: false).Concat(ml.Data.CreateEnumerable<Row>(b, reuseRowObject: false)));

    private sealed class Row
    {
        [Microsoft.ML.Data.VectorType(784)] public float[] Features { get; set; } = [];
        [Microsoft.ML.Data.KeyType(10)] public uint Label { get; set; }
    }
}
