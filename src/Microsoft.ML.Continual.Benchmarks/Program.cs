using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Continual;

// Benchmarks that reproduce published figures under the source's protocol; results go to docs/benchmarks.md.
// Usage: dotnet run -c Release --project src/Microsoft.ML.Continual.Benchmarks -- <benchmark> [--seeds N] [--report DIR]
//   split-mnist                      Hsu et al. 2018 baselines (FineTune, Joint) on Split MNIST in the three scenarios
//   split-mnist-regularization       L2, EWC, online EWC, SI, MAS, RWalk, SCP beside FineTune and Joint, same protocol
//   permuted-mnist-regularization    the same methods on 10-task Permuted MNIST, with per-epoch time against FineTune
//   split-mnist-replay               experience replay (several budgets and policies) beside FineTune and Joint, Hsu et al. protocol
//   replay-throughput                replay's samples/s task by task while its memory fills [--policy ClassBalanced --memory 20000 --rows 10000 --epochs 2]
//   split-mnist-generative           generative replay (with and without distillation) beside FineTune and Joint [--scenario ClassIncremental --epochs 21 --lr 0.001]
//   sweep-ewc-lambda                 a Bayesian sweep of EWC's λ (8 trials) against a dense 24-point grid on the test sets
//   drift                            shift detection on MNIST: false alarms at α 0.05 over many seeds, power on permuted, rotated and class-prior shifts [--seeds 1000 --power-seeds 200 --rows 500]
//   fuzzy                            boundaries inside a fit vs given, fuzzy-boundary Split MNIST [--scenario domain|class --only --fuzzy --seed --reset-optimizer true|false (default: each trainer's own)]
//   performance                      FineTune vs a raw TorchSharp loop, Transform vs a raw forward, prediction-engine latency [--rows --epochs --repeats --hidden]
//   refit-cost                       each method's refit time for the 2nd and the last of 20 tasks, beside SDCA and LightGBM retrained on all data [--tasks --rows --only]
//   permuted-mnist-architecture      PackNet, CPG and progressive networks beside FineTune, 10 tasks with task ids [--epochs 2 --retrain 1 --cpg-goal 0.97 --hidden 256,256 --only ...]
//   streaming                        a generated 10-million-row task within MemoryBudgetMegabytes, beside reading it into memory [--rows 10000000 --budget 256 --stream-only]
//   file-reading                     the tool's CSV reading beside LoadFromTextFile (rows/s, memory), then `continual train` with and without MemoryBudgetMegabytes, peak memory [--rows 5000000 --budget 128 --limit-mb 0 (a cgroup cap, root) --read-only --limited-only --trees ROWS (lightgbm with MaximumRowsPerPeriod too) --trees-only]
//   gem-protocol                     GEM, A-GEM, EWC and FineTune under the GEM paper's protocol [--streams rotated,permuted] [--only GEM,...] [--rows 1000 --hidden 100,100]
//   backbones                        ConvBackbone beside the default perceptron: FineTune, EWC, replay on Split MNIST (task-, class-IL) and Rotated MNIST [--rows 5000 --epochs 1 --seed 0 --only ...]
//   tabular                          a real time-ordered table in monthly periods: continual trainers (featurizer + tabular backbone) vs LightGBM retrained on all history / last period, ML.NET warm starts [--dataset flights|birdstrikes --rows 100000 (flights) --seed 0 --only ... --set Name=Value --set trees.Name=Value]
//   mnist-360                        DER++ and ER on MNIST-360 in one pass (task-free), the DER paper's protocol (Mammoth best_args) [--buffers 200,500,1000 --only DER++,ER --seed 0 --seeds N (mean ± sd)]
//   der-tables                       DER, DER++, ER (Replay; Er: per-step ER), GEM, A-GEM under the DER paper's protocol (Mammoth best_args) [--settings seq,perm,rot,rot-random (Mammoth's random angles) --buffers 200,500,5120 --only ... (DER++,DER,ER,Er,GEM,A-GEM) --rows N --threads 2]
//   van-de-ven                       LwF (class-, task-IL) and iCaRL (budget 2,000) beside FineTune on split MNIST, van de Ven and Tolias 2019 protocol [--epochs 21 --only ...]
//   in-fit-defaults                  SCP's and A-GEM's in-fit optimizer reset (their default) against no reset and FineTune on Rotated MNIST and the rotating hyperplane [--seed 0]
//   mir-tables                       MIR and ER under the MIR authors' Split MNIST protocol and Avalanche's (1,000 rows a task, batch 10, memory 500) [--protocols paper,avalanche --only MIR,ER --seeds 20 --seed 0]
//   same-buffer                      GDumb under Avalanche's protocol; ER-ACE, MIR, BiC, DER++, GDumb beside Replay at one buffer, class-IL Split MNIST [--buffer 500 --only ... --rows N --normalize true (Avalanche's pixel mean and std)]
//   defaults                         every trainer with its defaults beside FineTune, two streams per scenario it applies to (ACC +3 points and BWT) [--scenarios domain,class,task --rows 2000 --only ...]
//   parity                           bit-for-bit parity of two builds: every trainer's weights and scores on 3 small tasks [--out DIR] [--compare DIR-OF-OTHER-BUILD] [--only ...]
//   scale-out                        data-parallel training under mpirun: 1 process vs 2 over shared memory and TCP loopback, 1 thread each; allreduce times [--trainer FineTune --tasks 1 --rows 60000 --batch 256 --hidden 1000,1000 --repeats 3]
var arguments = args.ToList();
string? benchmark = arguments.FirstOrDefault(a => !a.StartsWith("--"));
int seeds = Option("--seeds", 1);
string report = OptionText("--report") ?? Path.Combine("artifacts", "benchmarks");

switch (benchmark)
{
    case "split-mnist":
        SplitMnistBenchmark.Run(seeds, report);
        return 0;
    case "permuted-mnist-regularization":
        RegularizationBenchmarks.PermutedMnist(Option("--tasks", 10), Option("--epochs", 1), OptionText("--only"), OptionText("--lambda"), OptionText("--hidden"), report);
        return 0;
    case "lambda-grid":
        LambdaGrid.Run(OptionText("--only") ?? "EWC", OptionText("--values") ?? "1,10,100,1000,10000");
        return 0;
    case "split-mnist-regularization":
        RegularizationBenchmarks.SplitMnist(OptionText("--only"), OptionText("--lambda"), OptionText("--scenario"), Option("--seed", 0), report);
        return 0;
    case "split-mnist-replay":
        ReplayBenchmarks.SplitMnist(OptionText("--only"), OptionText("--scenario"), Option("--seed", 0), report);
        return 0;
    case "replay-throughput":
        ReplayBenchmarks.Throughput(OptionText("--policy") ?? "ClassBalanced", Option("--memory", 20000), Option("--rows", 10000), Option("--epochs", 2), report);
        return 0;
    case "split-mnist-generative":
        ReplayBenchmarks.Generative(OptionText("--scenario"), Option("--epochs", 21), double.Parse(OptionText("--lr") ?? "0.001", CultureInfo.InvariantCulture), Option("--seed", 0), report);
        return 0;
    case "sweep-ewc-lambda":
        SweepBenchmarks.EwcLambda(Option("--trials", 8), Option("--grid", 24), report);
        return 0;
    case "drift":
        DriftBenchmarks.Run(Option("--seeds", 1000), Option("--power-seeds", 200), Option("--rows", 500));
        return 0;
    case "performance":
        PerformanceBenchmarks.Run(Option("--rows", 60000), Option("--epochs", 2), Option("--repeats", 3), (OptionText("--hidden") ?? "256,256").Split(',').Select(int.Parse).ToArray());
        return 0;
    case "refit-cost":
        RefitCostBenchmarks.Run(Option("--tasks", 20), Option("--rows", 1000), OptionText("--only"));
        return 0;
    case "permuted-mnist-architecture":
        ArchitectureBenchmarks.PermutedMnist(Option("--tasks", 10), Option("--epochs", 2), Option("--retrain", 1),
            double.Parse(OptionText("--cpg-goal") ?? "0.97", CultureInfo.InvariantCulture), OptionText("--hidden"), OptionText("--only"), report);
        return 0;
    case "file-reading":
        FileReadingBenchmarks.Run(long.Parse(OptionText("--rows") ?? "5000000", CultureInfo.InvariantCulture), Option("--budget", 128), Option("--limit-mb", 0), arguments.Contains("--read-only"), arguments.Contains("--limited-only"), Option("--trees", 0), arguments.Contains("--trees-only"), report);
        return 0;
    case "streaming":
        StreamingBenchmarks.Run(long.Parse(OptionText("--rows") ?? "10000000", CultureInfo.InvariantCulture), Option("--budget", 256), !arguments.Contains("--stream-only"));
        return 0;
    case "gem-protocol":
        GradientBenchmarks.Run(OptionText("--streams") ?? "rotated,permuted", OptionText("--only"), Option("--seed", 0), double.Parse(OptionText("--lr") ?? "0.1", CultureInfo.InvariantCulture),
            Option("--rows", 1000), (OptionText("--hidden") ?? "100,100").Split(',').Select(int.Parse).ToArray(), report);
        return 0;
    case "backbones":
        BackboneBenchmarks.Run(Option("--rows", 5000), Option("--epochs", 1), Option("--seed", 0), OptionText("--only"));
        return 0;
    case "tabular":
        TabularBenchmarks.Run(OptionText("--dataset") ?? "flights", Option("--rows", 100_000), Option("--seed", 0), OptionText("--only"),
            arguments.Select((a, i) => (a, i)).Where(p => p.a == "--set" && p.i + 1 < arguments.Count).Select(p => arguments[p.i + 1]).ToList());
        return 0;
    case "fuzzy":
        TaskFreeBenchmarks.FuzzySplit(OptionText("--scenario") == "class" ? ContinualScenario.ClassIncremental : ContinualScenario.DomainIncremental,
            OptionText("--only"), Option("--fuzzy", 10), Option("--seed", 0), Option("--threads", 2), OptionText("--reset-optimizer") is string reset ? bool.Parse(reset) : null);
        return 0;
    case "mnist-360":
        TaskFreeBenchmarks.Mnist360(OptionText("--only"), OptionText("--buffers") ?? "200,500,1000", Option("--seed", 0), seeds, Option("--threads", 2));
        return 0;
    case "der-tables":
        MethodBenchmarks.DerTables(OptionText("--settings") ?? "seq,perm,rot", OptionText("--buffers") ?? "200,500,5120", OptionText("--only"), Option("--seed", 0),
            OptionText("--rows") is string rows ? int.Parse(rows, CultureInfo.InvariantCulture) : null, Option("--threads", 2));
        return 0;
    case "van-de-ven":
        MethodBenchmarks.VanDeVen(OptionText("--only"), Option("--epochs", 21), Option("--seed", 1), Option("--threads", 2));
        return 0;
    case "in-fit-defaults":
        TaskFreeBenchmarks.InFitDefaults(Option("--seed", 0), Option("--threads", 2));
        return 0;
    case "mir-tables":
        MethodBenchmarks.MirTables(OptionText("--protocols") ?? "paper,avalanche", OptionText("--only"), Option("--seeds", 20), Option("--seed", 0), Option("--threads", 2));
        return 0;
    case "same-buffer":
        MethodBenchmarks.SameBuffer(OptionText("--only"), Option("--buffer", 500), Option("--seed", 0), Option("--threads", 2),
            OptionText("--rows") is string sameRows ? int.Parse(sameRows, CultureInfo.InvariantCulture) : null, OptionText("--normalize") is string normalize && bool.Parse(normalize));
        return 0;
    case "defaults":
        DefaultsBenchmarks.Run(OptionText("--only"), OptionText("--scenarios") ?? "domain,class,task", Option("--rows", 2000), Option("--seed", 0), Option("--threads", 2));
        return 0;
    case "parity":
        ParityBenchmarks.Run(OptionText("--out") ?? Path.Combine(report, "parity"), OptionText("--compare"), OptionText("--only"));
        return 0;
    case "scale-out":
        ScaleOutBenchmarks.Run(OptionText("--trainer") ?? "FineTune", Option("--tasks", 1), Option("--rows", 60000), Option("--epochs", 1), Option("--batch", 256),
            (OptionText("--hidden") ?? "1000,1000").Split(',').Select(int.Parse).ToArray(), Option("--repeats", 3));
        return 0;
    case "scale-out-worker": // one process of the scale-out benchmark (run by it, under mpirun or alone)
        ScaleOutBenchmarks.Worker(OptionText("--trainer")!, Option("--tasks", 1), Option("--rows", 60000), Option("--epochs", 1), Option("--batch", 256),
            OptionText("--hidden")!.Split(',').Select(int.Parse).ToArray());
        return 0;
    case "scale-out-allreduce":
        ScaleOutBenchmarks.AllReduce(long.Parse(OptionText("--floats")!, CultureInfo.InvariantCulture), Option("--reps", 200));
        return 0;
    default:
        Console.Error.WriteLine("usage: Microsoft.ML.Continual.Benchmarks <split-mnist|permuted-mnist-regularization|split-mnist-regularization|lambda-grid|gem-protocol|permuted-mnist-architecture|streaming|split-mnist-replay|split-mnist-generative|replay-throughput|sweep-ewc-lambda|performance|refit-cost|scale-out|file-reading|...> (the list is at the top of Program.cs)");
        Console.Error.WriteLine("  [--seeds N] [--report DIR] [--tasks N] [--epochs N] [--only FineTune,EWC,...] [--lambda EWC=100,SI=1,...] [--scenario TaskIncremental,...] [--seed N] [--hidden 400,400]");
        return 2;
}

int Option(string name, int fallback) =>
    arguments.IndexOf(name) is int i and >= 0 && i + 1 < arguments.Count ? int.Parse(arguments[i + 1], CultureInfo.InvariantCulture) : fallback;

string? OptionText(string name) =>
    arguments.IndexOf(name) is int i and >= 0 && i + 1 < arguments.Count ? arguments[i + 1] : null;

/// <summary>
/// Hsu, Liu, Ramasamy and Kira (2018), "Re-evaluating continual learning scenarios", Table 2, Split MNIST:
/// MLP 784-400-400, Adam, lr 0.001, batch 128, 4 epochs per task; task-IL with one 2-output head per task,
/// domain-IL with one 2-output head, class-IL with one 10-output head.
/// </summary>
internal static class SplitMnistBenchmark
{
    // The paper's figures (%): Adam and SGD baselines and the offline (joint) upper bound.
    private static readonly Dictionary<(string, ContinualScenario), double> Published = new()
    {
        [("FineTune", ContinualScenario.TaskIncremental)] = 93.46, [("FineTune", ContinualScenario.DomainIncremental)] = 55.16, [("FineTune", ContinualScenario.ClassIncremental)] = 19.71,
        [("FineTune SGD", ContinualScenario.TaskIncremental)] = 97.98, [("FineTune SGD", ContinualScenario.DomainIncremental)] = 63.20, [("FineTune SGD", ContinualScenario.ClassIncremental)] = 19.46,
        [("Joint", ContinualScenario.TaskIncremental)] = 99.52, [("Joint", ContinualScenario.DomainIncremental)] = 98.59, [("Joint", ContinualScenario.ClassIncremental)] = 97.53,
    };

    public static void Run(int seeds, string reportDirectory)
    {
        var rows = new List<string>();
        var clock = Stopwatch.StartNew();
        foreach (var scenario in new[] { ContinualScenario.TaskIncremental, ContinualScenario.DomainIncremental, ContinualScenario.ClassIncremental })
        {
            var results = new Dictionary<string, List<double>>();
            var all = new List<ContinualExperimentResult>();
            for (int seed = 0; seed < seeds; seed++)
            {
                var ml = new MLContext(seed: seed);
                var stream = ml.Continual().Benchmarks.SplitMnist(scenario, seed: seed);
                string? taskId = scenario == ContinualScenario.TaskIncremental ? "TaskId" : null;
                T Protocol<T>(T o) where T : ContinualTrainerOptions
                {
                    o.HiddenLayerSizes = [400, 400];
                    o.Optimizer = ContinualOptimizer.Adam;
                    o.LearningRate = 1e-3;
                    o.BatchSize = 128;
                    o.NumberOfEpochs = 4;
                    o.TaskIdColumnName = taskId;
                    o.Seed = seed;
                    return o;
                }
                var trainers = new (string, IEstimator<ITransformer>)[]
                {
                    ("FineTune", ml.Continual().Trainers.FineTune(Protocol(new FineTuneTrainer.Options()))),
                    ("FineTune SGD", ml.Continual().Trainers.FineTune(Sgd(Protocol(new FineTuneTrainer.Options())))),
                    ("Joint", ml.Continual().Trainers.Joint(Protocol(new JointTrainer.Options()))),
                };
                foreach (var (name, trainer) in trainers)
                {
                    var result = ml.Continual().Run(trainer, stream, new ContinualRunOptions { Name = name, EvaluateBeforeTraining = true });
                    all.Add(result);
                    (results.TryGetValue(name, out var list) ? list : results[name] = new()).Add(result.Metrics.AverageAccuracy * 100);
                    Console.WriteLine($"{scenario} seed {seed} {name}: ACC {result.Metrics.AverageAccuracy * 100:F2}  BWT {result.Metrics.BackwardTransfer * 100:F2}  ({result.TotalTrainingSeconds:F0} s)");
                }
            }
            ContinualCharts.SaveComparison(all.Take(3), Path.Combine(reportDirectory, $"split-mnist-{scenario}"));
            foreach (var (name, values) in results)
            {
                double mean = values.Average();
                double published = Published[(name, scenario)];
                rows.Add($"| {scenario} | {name} | {mean:F2} | {published:F2} | {mean - published:+0.00;-0.00} |");
            }
        }
        Console.WriteLine();
        Console.WriteLine($"Split MNIST, Hsu et al. 2018 protocol, mean ACC over {seeds} seed(s), {clock.Elapsed.TotalMinutes:F1} min in all:");
        Console.WriteLine("| scenario | trainer | ACC % (ours) | published % | difference |");
        Console.WriteLine("| --- | --- | ---: | ---: | ---: |");
        rows.ForEach(Console.WriteLine);
    }

    // Hsu et al.'s SGD baseline: plain SGD; the paper does not restate its learning rate in the table, 0.01 is used here.
    private static FineTuneTrainer.Options Sgd(FineTuneTrainer.Options o)
    {
        o.Optimizer = ContinualOptimizer.Sgd;
        o.LearningRate = 0.01;
        return o;
    }
}
