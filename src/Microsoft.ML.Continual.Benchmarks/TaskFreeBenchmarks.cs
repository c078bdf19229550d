using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Continual;

/// <summary>
/// Task-free continual learning: MNIST-360 under the Dark Experience Replay paper's protocol (Buzzega et al. 2020, table
/// "MNIST-360"; Mammoth's general-continual setting): one pass over the stream in its order (ShuffleRows false, one epoch),
/// MLP 100-100, plain SGD, the hyperparameters of Mammoth's <c>utils/best_args.py</c> for 'mnist-360', accuracy over the
/// test images of 0 to 8 (argmax over every output: no task ids, no boundaries). The prequential accuracy is the share of
/// the stream's rows predicted right when they arrived, before the step on them (<see cref="ContinualFitStatistics.EpochTrainingAccuracy"/>).
/// </summary>
internal static class TaskFreeBenchmarks
{
    private static readonly Dictionary<string, Dictionary<int, double>> Published = new()
    {
        ["DER++"] = new() { [200] = 54.16, [500] = 69.62, [1000] = 76.03 },
        ["ER"] = new() { [200] = 49.27, [500] = 65.04, [1000] = 75.18 },
    };

    public static void Mnist360(string? only, string buffers, int firstSeed, int seeds, int threads)
    {
        var results = new List<(string Method, int Buffer, double Accuracy, double Prequential)>();
        for (int seed = firstSeed; seed < firstSeed + seeds; seed++) results.AddRange(Mnist360(only, buffers, seed, threads));
        if (seeds < 2) return;
        Console.WriteLine($"Mean ± standard deviation over seeds {firstSeed}..{firstSeed + seeds - 1}:");
        Console.WriteLine("| method | buffer | accuracy | published (mean of 10) | prequential accuracy |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: |");
        foreach (var group in results.GroupBy(r => (r.Method, r.Buffer)))
        {
            static (double Mean, double Sd) Stats(IEnumerable<double> values)
            {
                var list = values.ToList();
                double mean = list.Average();
                return (mean, Math.Sqrt(list.Sum(v => (v - mean) * (v - mean)) / Math.Max(1, list.Count - 1)));
            }
            var (accuracy, accuracySd) = Stats(group.Select(r => r.Accuracy));
            var (prequential, prequentialSd) = Stats(group.Select(r => r.Prequential));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {group.Key.Method} | {group.Key.Buffer} | {accuracy:F2} ± {accuracySd:F2} | {Published[group.Key.Method][group.Key.Buffer]:F2} | {prequential:F2} ± {prequentialSd:F2} |"));
        }
    }

    private static List<(string Method, int Buffer, double Accuracy, double Prequential)> Mnist360(string? only, string buffers, int seed, int threads)
    {
        var rows = new List<(string, int, double, double)>();
        Console.WriteLine($"MNIST-360, seed {seed}: one pass, MLP 100-100, SGD; Mammoth best_args (lr, batch, minibatch, alpha, beta)");
        Console.WriteLine("| method | buffer | lr | batch | minibatch | accuracy | published | prequential accuracy | training s |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (string method in (only ?? "DER++,ER").Split(','))
            foreach (int buffer in buffers.Split(',').Select(int.Parse))
            {
                // best_args['mnist-360']: er (0.2, 1, 16) for 200 and 500, (0.2, 4, 16) for 1000; derpp (0.2, 16, 16, 0.5, 1.0)
                // for 200 and 500, (0.2, 16, 128, 0.2, 1.0) for 1000.
                var (lr, batch, minibatch, alpha, beta) = (method, buffer) switch
                {
                    ("ER", 1000) => (0.2, 4, 16, 0.0, 0.0),
                    ("ER", _) => (0.2, 1, 16, 0.0, 0.0),
                    ("DER++", 1000) => (0.2, 16, 128, 0.2, 1.0),
                    ("DER++", _) => (0.2, 16, 16, 0.5, 1.0),
                    _ => throw new ArgumentException($"Unknown method '{method}' (DER++, ER)."),
                };
                var ml = new MLContext(seed: seed);
                TaskStream stream = ml.Continual().Benchmarks.Mnist360(batchSize: batch, seed: seed);
                T Protocol<T>(T o) where T : ContinualTrainerOptions
                {
                    o.HiddenLayerSizes = [100, 100];
                    o.Optimizer = ContinualOptimizer.Sgd;
                    o.LearningRate = lr;
                    o.BatchSize = batch;
                    o.NumberOfEpochs = 1;
                    o.ShuffleRows = false;
                    o.ShiftReferenceRows = 0;
                    o.Seed = seed;
                    o.NumberOfThreads = threads;
                    return o;
                }
                ContinualTrainer trainer = method == "ER"
                    ? ml.Continual().Trainers.Er(Protocol(new ErTrainer.Options { MemorySize = buffer, MinibatchSize = minibatch }))
                    : ml.Continual().Trainers.DerPlusPlus(Protocol(new DerPlusPlusTrainer.Options { MemorySize = buffer, MinibatchSize = minibatch, Alpha = alpha, Beta = beta }));
                var clock = Stopwatch.StartNew();
                ContinualFitStatistics? statistics = null;
                ITransformer model = trainer.Fit(stream[0].Train, null, new ContinualFitOptions { Completed = s => statistics = s });
                double seconds = clock.Elapsed.TotalSeconds;
                double accuracy = ml.Continual().Score(model, stream[0].Test);
                rows.Add((method, buffer, 100 * accuracy, 100 * statistics!.EpochTrainingAccuracy[0]));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {method} | {buffer} | {lr} | {batch} | {minibatch} | {100 * accuracy:F2} | {Published[method][buffer]:F2} | {100 * statistics!.EpochTrainingAccuracy[0]:F2} | {seconds:F0} |"));
            }
        return rows;
    }

    /// <summary>
    /// Boundaries inside a fit against given boundaries, on fuzzy-boundary Split MNIST (<see cref="TaskStream.FuzzySplit"/>):
    /// each method with its default options (EWC in Online mode: its Separate mode refuses boundaries inside a fit), MLP
    /// 400-400, Adam, batch 128, one pass. Given: one fit per task on sharp Split MNIST (all its rows; the fuzzy stream takes as many whole batches from
    /// each pair as the smallest pair fills), one epoch each.
    /// Given, too: one fit per stretch of the fuzzy stream, in its order (the target's reference: the same rows in the
    /// same order, the consolidations at the stretches' ends). Task-free: one fit over the fuzzy stream in its order, consolidating every N steps, N = the steps one pair of digits
    /// fills (about as many consolidations as tasks) and N / 10 (ten times as many), and where the loss reaches a plateau
    /// after a peak (Aljundi et al. 2019, the default thresholds) and where the inputs shift (the default block and level); ACC is the mean test accuracy over
    /// the five pairs after the pass, and the state sizes after both show whether state grows with the consolidations.
    /// </summary>
    public static void FuzzySplit(ContinualScenario scenario, string? only, int fuzzy, int seed, int threads, bool? resetOptimizer)
    {
        const int batch = 128;
        var ml = new MLContext(seed: seed);
        var sharp = ml.Continual().Benchmarks.SplitMnist(scenario, seed: seed);
        var stream = ml.Continual().Benchmarks.FuzzySplitMnist(scenario, fuzzyBatches: fuzzy, batchSize: batch, seed: seed);
        long streamRows = stream.TrainingInOrder().GetRowCount() ?? 0;
        int stepsPerPair = (int)(streamRows / batch / stream.Count);
        Console.WriteLine($"{stream.Name}: {streamRows:N0} rows, {stepsPerPair} steps per pair; seed {seed}; MLP 400-400, Adam, batch {batch}, one pass{resetOptimizer switch { true => "; each boundary resets the optimizer", false => "; no boundary resets the optimizer", null => "; each trainer's default BoundaryResetsOptimizer" }}");
        Console.WriteLine($"| method | given, sharp stream | given, fuzzy stream | every {stepsPerPair} steps (Δ) | every {stepsPerPair / 10} steps (Δ) | on a loss plateau (Δ) | on an input shift (Δ) | boundaries passed | state, given | state, every {stepsPerPair} | state, every {stepsPerPair / 10} | seconds (given / every {stepsPerPair / 10}) |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | ---: |");
        foreach (string method in (only ?? "FineTune,L2,EWC,SI,MAS,RWalk,SCP,Gem,AGem,Replay,Er,ErAce,Mir,DER,DER++,Lwf,Icarl").Split(','))
        {
            ContinualTrainer Trainer(ContinualBoundaries boundaries, int every, bool shuffle)
            {
                var entry = TrainerRegistry.Find(method.Replace("++", "PlusPlus"))
                    ?? throw new ArgumentException($"Unknown trainer '{method}'.");
                var options = entry.CreateDefaultOptions();
                options.HiddenLayerSizes = [400, 400];
                options.BatchSize = batch;
                options.NumberOfEpochs = 1;
                options.Seed = seed;
                options.NumberOfThreads = threads;
                options.ShiftReferenceRows = 0;
                options.Boundaries = boundaries;
                options.BoundaryEverySteps = every;
                if (resetOptimizer is bool reset) options.BoundaryResetsOptimizer = reset; // else the trainer's default (true for SCP and A-GEM)
                options.ShuffleRows = shuffle;
                if (options is EwcTrainer.Options ewc) ewc.Mode = EwcMode.Online;
                return entry.CreateTrainer(ml, options);
            }
            static string Sizes(ITransformer model) => string.Join(", ", ((ContinualTransformer)model).StateSizes.Where(kv => kv.Key != "parameters").Select(kv => $"{kv.Key} {kv.Value:N0}"));
            var clock = Stopwatch.StartNew();
            // Given boundaries: one fit per task of the sharp stream (shuffled within it, as usual), and one fit per stretch of
            // the fuzzy stream in its order (the same rows, in the same order, as the task-free pass: only the
            // consolidations' places differ). The second is the reference of the target.
            var sharpRun = ml.Continual().Run(Trainer(ContinualBoundaries.Given, 1, true), sharp, new ContinualRunOptions { EvaluateBeforeTraining = false });
            double sharpAccuracy = 100 * sharpRun.Metrics.AverageAccuracy;
            clock.Restart();
            var given = ml.Continual().Run(Trainer(ContinualBoundaries.Given, 1, false), stream, new ContinualRunOptions { EvaluateBeforeTraining = false });
            double givenSeconds = clock.Elapsed.TotalSeconds;
            double givenAccuracy = 100 * given.Metrics.AverageAccuracy;
            var rows = new List<(double Accuracy, int Passed, string Sizes, double Seconds)>();
            foreach (var (mode, every) in new[] { (ContinualBoundaries.EverySteps, stepsPerPair), (ContinualBoundaries.EverySteps, stepsPerPair / 10), (ContinualBoundaries.OnLossPlateau, 1), (ContinualBoundaries.OnInputShift, 1) })
            {
                clock.Restart();
                ContinualFitStatistics? statistics = null;
                var model = Trainer(mode, every, false).Fit(stream.TrainingInOrder(), null, new ContinualFitOptions { Completed = s => statistics = s });
                double seconds = clock.Elapsed.TotalSeconds;
                double accuracy = 100 * stream.Average(t => ml.Continual().Score(model, t.Test));
                rows.Add((accuracy, statistics!.BoundariesPassed, Sizes(model), seconds));
            }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {method} | {sharpAccuracy:F2} | {givenAccuracy:F2} | {rows[0].Accuracy:F2} ({Math.Round(rows[0].Accuracy - givenAccuracy, 2):+0.00;-0.00;0.00}) | {rows[1].Accuracy:F2} ({Math.Round(rows[1].Accuracy - givenAccuracy, 2):+0.00;-0.00;0.00}) | {rows[2].Accuracy:F2} ({Math.Round(rows[2].Accuracy - givenAccuracy, 2):+0.00;-0.00;0.00}) | {rows[3].Accuracy:F2} ({Math.Round(rows[3].Accuracy - givenAccuracy, 2):+0.00;-0.00;0.00}) | {rows[0].Passed} / {rows[1].Passed} / {rows[2].Passed} / {rows[3].Passed} | {Sizes(given.Models[^1])} | {rows[0].Sizes} | {rows[1].Sizes} | {givenSeconds:F0} / {rows[1].Seconds:F0} |"));
        }
    }

    /// <summary>
    /// The in-fit optimizer-reset default of SCP and A-GEM (chosen on fuzzy Split MNIST) on two streams it was not chosen
    /// on: domain-incremental Rotated MNIST (5 tasks, 0°–180°, 2,000 rows a task) and the rotating hyperplane. One pass
    /// over each stream's tasks in order as one fit (one epoch), a boundary after each task's steps, every other option at its
    /// default; FineTune beside them. ACC is the mean test accuracy over the tasks after the pass.
    /// </summary>
    public static void InFitDefaults(int seed, int threads)
    {
        var ml = new MLContext(seed: seed);
        var streams = new[]
        {
            ml.Continual().Benchmarks.RotatedMnist(numberOfTasks: 5, maxAngle: 180, trainSamplesPerTask: 2000, testSamplesPerTask: 1000, seed: seed),
            ml.Continual().Benchmarks.RotatingHyperplane(seed: seed),
        };
        Console.WriteLine($"In-fit boundaries after each task's steps, one pass, defaults; seed {seed}");
        Console.WriteLine("| stream | FineTune | SCP (default: reset) | SCP, no reset | A-GEM (default: reset) | A-GEM, no reset |\n| --- | ---: | ---: | ---: | ---: | ---: |");
        foreach (var stream in streams)
        {
            long rows = stream.TrainingInOrder().GetRowCount() ?? 0;
            var cells = new List<string>();
            foreach (var (method, reset) in new (string, bool?)[] { ("FineTune", null), ("Scp", null), ("Scp", false), ("AGem", null), ("AGem", false) })
            {
                var entry = TrainerRegistry.Find(method)!;
                var options = entry.CreateDefaultOptions();
                options.Seed = seed;
                options.NumberOfThreads = threads;
                options.ShuffleRows = false;
                options.NumberOfEpochs = 1; // one pass: a second epoch would revisit the earlier tasks
                options.Boundaries = ContinualBoundaries.EverySteps;
                options.BoundaryEverySteps = Math.Max(1, (int)(rows / options.BatchSize / stream.Count));
                if (reset is bool r) options.BoundaryResetsOptimizer = r;
                var model = entry.CreateTrainer(ml, options).Fit(stream.TrainingInOrder());
                cells.Add((100 * stream.Average(t => ml.Continual().Score(model, t.Test))).ToString("F2", CultureInfo.InvariantCulture));
            }
            Console.WriteLine($"| {stream.Name} | {string.Join(" | ", cells)} |");
        }
    }
}
