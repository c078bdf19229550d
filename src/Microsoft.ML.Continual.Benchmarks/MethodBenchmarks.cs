using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Continual;
using Microsoft.ML.Data;

/// <summary>
/// The methods of the methods issue under their sources' protocols: the Dark Experience Replay paper's MNIST tables
/// (Buzzega et al. 2020, Table 2; hyperparameters of Mammoth's <c>utils/best_args.py</c>), van de Ven and Tolias (2019)'s
/// split MNIST for LwF and iCaRL, Avalanche's continual-learning-baselines for GDumb, and a same-buffer comparison with
/// <c>Replay</c> in class-incremental Split MNIST for the methods no MNIST figure is published for (ER-ACE, MIR, BiC).
/// </summary>
internal static class MethodBenchmarks
{
    private sealed record Published(double Buffer200, double Buffer500, double Buffer5120)
    {
        public double this[int buffer] => buffer switch { 200 => Buffer200, 500 => Buffer500, _ => Buffer5120 };
    }

    // Buzzega et al. 2020, Table 2 (%): S-MNIST class-IL, S-MNIST task-IL, P-MNIST, R-MNIST; buffers 200 / 500 / 5120.
    private static readonly Dictionary<string, Published[]> DerTable = new()
    {
        ["DER++"] = [new(85.61, 91.00, 95.30), new(98.76, 98.94, 99.47), new(83.58, 88.21, 92.26), new(90.43, 92.77, 94.65)],
        ["DER"] = [new(84.55, 90.54, 94.90), new(98.80, 98.84, 99.29), new(81.74, 87.29, 91.66), new(90.04, 92.24, 94.14)],
        ["ER"] = [new(80.43, 86.12, 93.40), new(97.86, 99.04, 99.33), new(72.37, 80.60, 89.90), new(85.01, 88.91, 93.45)],
        ["GEM"] = [new(80.11, 85.99, 95.11), new(97.78, 98.71, 99.44), new(66.93, 76.88, 87.42), new(80.80, 81.15, 88.57)],
        ["A-GEM"] = [new(45.72, 46.66, 54.24), new(98.61, 98.93, 98.93), new(66.42, 67.56, 73.32), new(81.91, 80.31, 80.18)],
    };

    /// <summary>One method's options under Mammoth's best arguments for <paramref name="setting"/> and <paramref name="buffer"/>.</summary>
    private static IEstimator<ITransformer>? DerProtocolTrainer(MLContext ml, string method, string setting, int buffer, int seed, int threads)
    {
        bool seq = setting == "seq";
        T Protocol<T>(T o, double lr) where T : ContinualTrainerOptions
        {
            o.HiddenLayerSizes = [100, 100];
            o.Optimizer = ContinualOptimizer.Sgd;
            o.LearningRate = lr;
            o.BatchSize = seq ? 10 : 128;
            o.NumberOfEpochs = 1;
            o.Seed = seed;
            o.NumberOfThreads = threads;
            return o;
        }
        // (lr, minibatch, alpha, beta) per buffer 200 / 500 / 5120, from best_args.py (see docs/benchmarks.md for the lines).
        (double Lr, int Mbs, double Alpha, double Beta) Der(int b) => (setting, b) switch
        {
            ("seq", 200) => (0.03, 10, 0.2, 0), ("seq", 500) => (0.03, 128, 1.0, 0), ("seq", _) => (0.1, 128, 0.5, 0),
            ("perm", 5120) => (0.2, 128, 0.5, 0), ("perm", _) => (0.2, 128, 1.0, 0),
            ("rot", 200) => (0.2, 128, 1.0, 0), _ => (0.2, 128, 0.5, 0),
        };
        (double Lr, int Mbs, double Alpha, double Beta) DerPlusPlus(int b) => (setting, b) switch
        {
            ("seq", 200) => (0.03, 128, 0.2, 1.0), ("seq", 500) => (0.03, 10, 1.0, 0.5), ("seq", _) => (0.1, 64, 0.2, 0.5),
            ("perm", 200) => (0.1, 128, 1.0, 1.0), ("perm", 500) => (0.2, 128, 1.0, 0.5), ("perm", _) => (0.2, 128, 0.5, 1.0),
            ("rot", 200) => (0.1, 128, 1.0, 0.5), ("rot", 500) => (0.2, 128, 0.5, 1.0), _ => (0.2, 128, 0.5, 0.5),
        };
        switch (method)
        {
            case "DER":
            {
                var (lr, mbs, alpha, _) = Der(buffer);
                return ml.Continual().Trainers.Der(Protocol(new DerTrainer.Options { MemorySize = buffer, MinibatchSize = mbs, Alpha = alpha }, lr));
            }
            case "DER++":
            {
                var (lr, mbs, alpha, beta) = DerPlusPlus(buffer);
                return ml.Continual().Trainers.DerPlusPlus(Protocol(new DerPlusPlusTrainer.Options { MemorySize = buffer, MinibatchSize = mbs, Alpha = alpha, Beta = beta }, lr));
            }
            case "ER":
            {
                // Mammoth's ER: minibatch_size rows of the memory with every batch (old:new = 1:1 at these settings).
                double lr = seq ? (buffer == 200 ? 0.01 : 0.1) : 0.2;
                return ml.Continual().Trainers.Replay(Protocol(new ReplayTrainer.Options { MemorySize = buffer, ReplayShare = 0.5 }, lr));
            }
            case "Er":
            {
                // Mammoth's ER as it is: a reservoir updated at every step, minibatch_size (= the batch size) memory rows
                // joined with every batch (ErTrainer); "ER" above is the library's Replay, filled at task ends.
                double lr = seq ? (buffer == 200 ? 0.01 : 0.1) : 0.2;
                return ml.Continual().Trainers.Er(Protocol(new ErTrainer.Options { MemorySize = buffer }, lr));
            }
            case "GEM":
            {
                (double lr, double gamma) = (setting, buffer) switch
                {
                    ("seq", 200) => (0.01, 1.0), ("seq", 500) => (0.03, 0.5), ("seq", _) => (0.1, 1.0),
                    ("perm", _) => (0.1, 0.5), _ => (0.01, 0.5),
                };
                int tasks = seq ? 5 : 20;
                return ml.Continual().Trainers.Gem(Protocol(new GemTrainer.Options { MemoriesPerTask = Math.Max(1, buffer / tasks), MemoryStrength = gamma }, lr));
            }
            case "A-GEM":
            {
                double lr = setting == "rot" && buffer != 200 ? 0.3 : 0.1;
                return ml.Continual().Trainers.AGem(Protocol(new AGemTrainer.Options { MemorySize = buffer, ReferenceSampleSize = 128 }, lr));
            }
            default:
                return null;
        }
    }

    /// <summary>The DER paper's tables: every chosen method and buffer in every chosen setting, beside the published figure.</summary>
    public static void DerTables(string settings, string buffers, string? only, int seed, int? rowsPerTask, int threads)
    {
        var chosenMethods = (only ?? "DER++,DER,ER,GEM,A-GEM").Split(',');
        foreach (string setting in settings.Split(','))
        {
            var ml = new MLContext(seed: seed);
            TaskStream stream = setting switch
            {
                "seq" => ml.Continual().Benchmarks.SplitMnist(ContinualScenario.ClassIncremental, trainSamplesPerTask: rowsPerTask, seed: seed),
                "perm" => ml.Continual().Benchmarks.PermutedMnist(20, rowsPerTask, null, seed),
                "rot" => ml.Continual().Benchmarks.RotatedMnist(20, 180, rowsPerTask, null, seed),
                // Mammoth's rot-mnist: each task's angle drawn once, uniformly in [0°, 180°).
                "rot-random" => ml.Continual().Benchmarks.RotatedMnist(RandomAngles(20, seed), rowsPerTask, null, seed),
                _ => throw new ArgumentException($"Unknown setting '{setting}' (seq, perm, rot, rot-random)."),
            };
            Console.WriteLine($"{stream.Name}: seed {seed}{(rowsPerTask is int r ? $", {r:N0} training rows per task" : ", every training row")}");
            Console.WriteLine(setting == "seq"
                ? "| method | buffer | class-IL | published | task-IL | published | training s |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
                : "| method | buffer | domain-IL | published | training s |\n| --- | ---: | ---: | ---: | ---: |");
            foreach (string method in chosenMethods)
                foreach (int buffer in buffers.Split(',').Select(int.Parse))
                {
                    var trainer = DerProtocolTrainer(ml, method, setting == "rot-random" ? "rot" : setting, buffer, seed, threads) ?? throw new ArgumentException($"Unknown method '{method}'.");
                    var (classIl, taskIl, seconds) = RunMasked(ml, trainer, stream);
                    var published = DerTable[method == "Er" ? "ER" : method];
                    Console.WriteLine(setting == "seq"
                        ? $"| {method} | {buffer} | {100 * classIl:F2} | {published[0][buffer]:F2} | {100 * taskIl:F2} | {published[1][buffer]:F2} | {seconds:F0} |"
                        : $"| {method} | {buffer} | {100 * classIl:F2} | {published[setting == "perm" ? 2 : 3][buffer]:F2} | {seconds:F0} |");
                }
            Console.WriteLine();
        }
    }

    private static double[] RandomAngles(int tasks, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, tasks).Select(_ => random.NextDouble() * 180).ToArray();
    }

    /// <summary>
    /// Trains on every task in order and then scores each task's test rows: the mean over tasks of the accuracy with the
    /// argmax over every class (class- or domain-incremental), and with the argmax over the task's own classes only (the
    /// task-incremental figure of the same model, as Mammoth's <c>mask_classes</c>).
    /// </summary>
    private static (double All, double WithinTask, double Seconds) RunMasked(MLContext ml, IEstimator<ITransformer> trainer, TaskStream stream)
    {
        var clock = Stopwatch.StartNew();
        ITransformer model = trainer.Fit(stream[0].Train);
        for (int t = 1; t < stream.Count; t++) model = ml.Continual().Refit(model, stream[t].Train);
        double seconds = clock.Elapsed.TotalSeconds;
        double all = 0, within = 0;
        for (int t = 0; t < stream.Count; t++)
        {
            var scored = model.Transform(stream[t].Test);
            uint[] labels = scored.GetColumn<uint>(stream.LabelColumnName).ToArray();
            float[][] scores = scored.GetColumn<float[]>("Score").ToArray();
            var own = labels.Distinct().Select(k => (int)k - 1).ToHashSet();
            int right = 0, rightWithin = 0;
            for (int i = 0; i < labels.Length; i++)
            {
                int truth = (int)labels[i] - 1;
                if (ArgMax(scores[i], _ => true) == truth) right++;
                if (ArgMax(scores[i], own.Contains) == truth) rightWithin++;
            }
            all += right / (double)labels.Length;
            within += rightWithin / (double)labels.Length;
        }
        return (all / stream.Count, within / stream.Count, seconds);
    }

    private static int ArgMax(float[] scores, Func<int, bool> allowed)
    {
        int best = -1;
        for (int k = 0; k < scores.Length; k++)
            if (allowed(k) && (best < 0 || scores[k] > scores[best])) best = k;
        return best;
    }

    /// <summary>
    /// van de Ven and Tolias (2019)'s split MNIST: MLP 784-400-400-10, Adam 1e-3, batch 128, about 2,000 iterations a task
    /// (<paramref name="epochs"/> epochs of ~12,000 rows); LwF in the class- and task-incremental scenarios, iCaRL with a
    /// budget of 2,000 in the class-incremental one; FineTune beside them.
    /// </summary>
    public static void VanDeVen(string? only, int epochs, int seed, int threads)
    {
        var runs = new List<(string Name, ContinualScenario Scenario, double Published, Func<MLContext, ContinualScenario, IEstimator<ITransformer>> Create)>
        {
            ("FineTune", ContinualScenario.ClassIncremental, 19.90, (ml, s) => ml.Continual().Trainers.FineTune(Protocol(new FineTuneTrainer.Options(), s))),
            ("LwF", ContinualScenario.ClassIncremental, 23.85, (ml, s) => ml.Continual().Trainers.Lwf(Protocol(new LwfTrainer.Options(), s))),
            ("iCaRL 2000", ContinualScenario.ClassIncremental, 94.57, (ml, s) => ml.Continual().Trainers.Icarl(Protocol(new IcarlTrainer.Options { MemorySize = 2000 }, s))),
            ("FineTune", ContinualScenario.TaskIncremental, double.NaN, (ml, s) => ml.Continual().Trainers.FineTune(Protocol(new FineTuneTrainer.Options(), s))),
            ("LwF", ContinualScenario.TaskIncremental, double.NaN, (ml, s) => ml.Continual().Trainers.Lwf(Protocol(new LwfTrainer.Options(), s))),
        };
        T Protocol<T>(T o, ContinualScenario scenario) where T : ContinualTrainerOptions
        {
            o.HiddenLayerSizes = [400, 400];
            o.Optimizer = ContinualOptimizer.Adam;
            o.LearningRate = 1e-3;
            o.BatchSize = 128;
            o.NumberOfEpochs = epochs;
            o.TaskIdColumnName = scenario == ContinualScenario.TaskIncremental ? "TaskId" : null;
            o.Seed = seed;
            o.NumberOfThreads = threads;
            return o;
        }
        Console.WriteLine($"Split MNIST, van de Ven and Tolias (2019) protocol, {epochs} epochs a task, seed {seed}");
        Console.WriteLine("| method | scenario | ACC | BWT | published ACC | training s |\n| --- | --- | ---: | ---: | ---: | ---: |");
        foreach (var (name, scenario, published, create) in runs.Where(r => only is null || only.Split(',').Contains(r.Name.Split(' ')[0])))
        {
            var ml = new MLContext(seed: seed);
            var stream = ml.Continual().Benchmarks.SplitMnist(scenario, seed: seed);
            var result = ml.Continual().Run(create(ml, scenario), stream, new ContinualRunOptions { Name = name, EvaluateBeforeTraining = false });
            Console.WriteLine($"| {name} | {scenario} | {100 * result.Metrics.AverageAccuracy:F2} | {100 * result.Metrics.BackwardTransfer:+0.00;-0.00} | {(double.IsNaN(published) ? "–" : published.ToString("F2"))} | {result.TotalTrainingSeconds:F0} |");
        }
    }

    /// <summary>
    /// Avalanche's continual-learning-baselines GDumb on Split MNIST (<c>experiments/split_mnist/gdumb.py</c>: MLP two
    /// layers of 400, memory 4,400, SGD 0.1, 10 epochs of batch 16; target 0.97 in <c>tests/target_results.csv</c>, the
    /// accuracy over the whole test stream); and ER-ACE, MIR, BiC, DER++ and GDumb beside <c>Replay</c> at the same
    /// buffer on class-incremental Split MNIST (MLP 100-100, SGD 0.03, batch 10, one epoch: the DER paper's setting).
    /// </summary>
    /// <param name="normalize">Standardise the pixels with MNIST's mean 0.1307 and standard deviation 0.3081, as
    /// Avalanche's <c>SplitMNIST</c> transforms them (ours are in [0, 1] otherwise).</param>
    public static void SameBuffer(string? only, int buffer, int seed, int threads, int? rowsPerTask, bool normalize = false)
    {
        var ml = new MLContext(seed: seed);
        var stream = normalize ? NormalizedSplitMnist(rowsPerTask, seed)
            : ml.Continual().Benchmarks.SplitMnist(ContinualScenario.ClassIncremental, trainSamplesPerTask: rowsPerTask, seed: seed);
        T Online<T>(T o) where T : ContinualTrainerOptions
        {
            o.HiddenLayerSizes = [100, 100];
            o.Optimizer = ContinualOptimizer.Sgd;
            o.LearningRate = 0.03;
            o.BatchSize = 10;
            o.NumberOfEpochs = 1;
            o.Seed = seed;
            o.NumberOfThreads = threads;
            return o;
        }
        var runs = new List<(string Name, Func<IEstimator<ITransformer>> Create)>
        {
            ("GDumb (Avalanche protocol, 4400)", () => ml.Continual().Trainers.GDumb(new GDumbTrainer.Options
                { HiddenLayerSizes = [400, 400], MemorySize = 4400, Optimizer = ContinualOptimizer.Sgd, LearningRate = 0.1, NumberOfEpochs = 10, BatchSize = 16, Seed = seed, NumberOfThreads = threads })),
            ("FineTune", () => ml.Continual().Trainers.FineTune(Online(new FineTuneTrainer.Options()))),
            ("Replay", () => ml.Continual().Trainers.Replay(Online(new ReplayTrainer.Options { MemorySize = buffer }))),
            ("ER-ACE", () => ml.Continual().Trainers.ErAce(Online(new ErAceTrainer.Options { MemorySize = buffer, MinibatchSize = 10 }))),
            ("MIR", () => ml.Continual().Trainers.Mir(Online(new MirTrainer.Options { MemorySize = buffer, Candidates = 50, MinibatchSize = 10 }))),
            ("BiC", () => ml.Continual().Trainers.Bic(Online(new BicTrainer.Options { MemorySize = buffer }))),
            ("DER++", () => ml.Continual().Trainers.DerPlusPlus(Online(new DerPlusPlusTrainer.Options { MemorySize = buffer, MinibatchSize = 10 }))),
            ("GDumb", () => ml.Continual().Trainers.GDumb(new GDumbTrainer.Options { HiddenLayerSizes = [100, 100], MemorySize = buffer, Seed = seed, NumberOfThreads = threads })),
        };
        Console.WriteLine($"Class-incremental Split MNIST, buffer {buffer}, seed {seed}{(rowsPerTask is int r ? $", {r:N0} rows per task" : "")}{(normalize ? ", pixels standardised (0.1307, 0.3081)" : "")}");
        Console.WriteLine("| method | ACC (mean over tasks) | accuracy over the whole test stream | BWT | training s |\n| --- | ---: | ---: | ---: | ---: |");
        foreach (var (name, create) in runs.Where(r => only is null || only.Split(',').Any(o => r.Name.StartsWith(o, StringComparison.OrdinalIgnoreCase))))
        {
            var result = ml.Continual().Run(create(), stream, new ContinualRunOptions { Name = name, EvaluateBeforeTraining = false });
            double whole = StreamAccuracy(stream, result.Metrics.AccuracyMatrix[result.Metrics.TaskCount]);
            Console.WriteLine($"| {name} | {100 * result.Metrics.AverageAccuracy:F2} | {100 * whole:F2} | {100 * result.Metrics.BackwardTransfer:+0.00;-0.00} | {result.TotalTrainingSeconds:F0} |");
        }
    }

    /// <summary>Class-incremental Split MNIST with the pixels standardised as torchvision's <c>Normalize((0.1307,), (0.3081,))</c>
    /// in Avalanche's <c>SplitMNIST</c>.</summary>
    private static TaskStream NormalizedSplitMnist(int? rowsPerTask, int seed)
    {
        var (train, test) = MnistData.Load();
        LabeledArrays Standardised(MnistSplit split) => new(split.Pixels.Select(p => (p - 0.1307f) / 0.3081f).ToArray(), MnistData.Side * MnistData.Side,
            split.Labels.Select(l => (int)l).ToArray(), Enumerable.Range(0, 10).Select(d => d.ToString(CultureInfo.InvariantCulture)).ToArray());
        return StreamBuilders.Split(Standardised(train), Standardised(test), "Split MNIST", ContinualScenario.ClassIncremental, ContinualBenchmarks.SplitMnistGroups,
            rowsPerTask, null, seed);
    }

    /// <summary>
    /// MIR and ER on class-incremental Split MNIST under two published protocols, over many seeds.
    /// <list type="bullet">
    /// <item><c>paper</c>: the MIR authors' code (<c>optimass/Maximally_Interfered_Retrieval</c>, <c>Scripts/ER_experiments.sh</c>
    /// with <c>--mem_size 50</c>): MLP 784-400-400, SGD 0.1 without momentum, batch 10, 1,000 training rows a task, one
    /// pass, memory 50 per class (500), 50 candidates, 10 replayed; reported as mean ± 2·sd/√n over 20 runs.</item>
    /// <item><c>avalanche</c>: continual-learning-baselines' <c>experiments/split_mnist/mir.py</c> (target 0.87 in
    /// <c>tests/target_results.csv</c>, the accuracy over the whole test stream): Avalanche's <c>SimpleMLP</c> with one
    /// hidden layer of 400 and dropout 0.5, SGD 0.05, the same batch, rows, memory and candidates.</item>
    /// </list>
    /// ER is <c>Er</c> (a reservoir updated at every step, 10 replayed; the authors' <c>rand_replay</c>).
    /// </summary>
    public static void MirTables(string protocols, string? only, int seeds, int firstSeed, int threads)
    {
        if (protocols.Split(',').FirstOrDefault(p => p is not ("paper" or "avalanche")) is string unknown)
            throw new ArgumentException($"Unknown protocol '{unknown}': paper or avalanche.");
        foreach (string protocol in protocols.Split(','))
        {
            T Setting<T>(T o, int seed) where T : ContinualTrainerOptions
            {
                bool paper = protocol == "paper";
                o.HiddenLayerSizes = paper ? [400, 400] : [400];
                o.Dropout = paper ? 0 : 0.5f;
                o.Optimizer = ContinualOptimizer.Sgd;
                o.Momentum = 0;
                o.LearningRate = paper ? 0.1 : 0.05;
                o.BatchSize = 10;
                o.NumberOfEpochs = 1;
                o.Seed = seed;
                o.NumberOfThreads = threads;
                return o;
            }
            var runs = new List<(string Name, Func<MLContext, int, IEstimator<ITransformer>> Create)>
            {
                ("MIR", (ml, seed) => ml.Continual().Trainers.Mir(Setting(new MirTrainer.Options { MemorySize = 500, Candidates = 50, MinibatchSize = 10 }, seed))),
                ("ER", (ml, seed) => ml.Continual().Trainers.Er(Setting(new ErTrainer.Options { MemorySize = 500, MinibatchSize = 10 }, seed))),
            };
            Console.WriteLine($"Class-incremental Split MNIST, {protocol} protocol, 1,000 rows a task, memory 500, seeds {firstSeed}–{firstSeed + seeds - 1}");
            Console.WriteLine("| method | ACC mean | ± 2·sd/√n | accuracy over the test stream, mean | min | max | training s, mean |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
            foreach (var (name, create) in runs.Where(r => only is null || only.Split(',').Contains(r.Name)))
            {
                var acc = new List<double>();
                var whole = new List<double>();
                double seconds = 0;
                for (int seed = firstSeed; seed < firstSeed + seeds; seed++)
                {
                    var ml = new MLContext(seed: seed);
                    var stream = ml.Continual().Benchmarks.SplitMnist(ContinualScenario.ClassIncremental, trainSamplesPerTask: 1000, seed: seed);
                    var result = ml.Continual().Run(create(ml, seed), stream, new ContinualRunOptions { Name = name, EvaluateBeforeTraining = false });
                    acc.Add(100 * result.Metrics.AverageAccuracy);
                    whole.Add(100 * StreamAccuracy(stream, result.Metrics.AccuracyMatrix[result.Metrics.TaskCount]));
                    seconds += result.TotalTrainingSeconds;
                    Console.Error.WriteLine($"{protocol} {name} seed {seed}: ACC {acc[^1]:F2}, test stream {whole[^1]:F2}");
                }
                double mean = acc.Average();
                double sd = Math.Sqrt(acc.Sum(a => (a - mean) * (a - mean)) / Math.Max(1, acc.Count - 1));
                Console.WriteLine($"| {name} | {mean:F2} | {2 * sd / Math.Sqrt(acc.Count):F2} | {whole.Average():F2} | {whole.Min():F2} | {whole.Max():F2} | {seconds / seeds:F1} |");
            }
        }
    }

    /// <summary>Accuracy over the whole test stream: each task's accuracy weighted by its test rows.</summary>
    private static double StreamAccuracy(TaskStream stream, IReadOnlyList<double> lastRow)
    {
        long rows = 0;
        double weighted = 0;
        for (int t = 0; t < stream.Count; t++)
        {
            long n = stream[t].Test.GetRowCount() ?? stream[t].Test.GetColumn<uint>(stream.LabelColumnName).LongCount();
            rows += n;
            weighted += lastRow[t] * n;
        }
        return weighted / rows;
    }
}
