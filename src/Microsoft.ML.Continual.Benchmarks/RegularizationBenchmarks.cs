using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Continual;

/// <summary>The regularization family against FineTune and Joint, on Split MNIST (Hsu et al. 2018) and Permuted MNIST.</summary>
internal static class RegularizationBenchmarks
{
    internal sealed record Method(string Name, Func<MLContext, Func<ContinualTrainerOptions, ContinualTrainerOptions>, IEstimator<ITransformer>> Create);

    /// <summary>The methods with the λ used in the benchmarks (chosen as docs/benchmarks.md says).</summary>
    internal static List<Method> Methods(IReadOnlyDictionary<string, double> lambdas) =>
    [
        new("FineTune", (ml, p) => ml.Continual().Trainers.FineTune((FineTuneTrainer.Options)p(new FineTuneTrainer.Options()))),
        new("L2", (ml, p) => ml.Continual().Trainers.L2((L2Trainer.Options)p(new L2Trainer.Options { Lambda = lambdas["L2"] }))),
        new("EWC", (ml, p) => ml.Continual().Trainers.Ewc((EwcTrainer.Options)p(new EwcTrainer.Options { Lambda = lambdas["EWC"] }))),
        new("Online EWC", (ml, p) => ml.Continual().Trainers.Ewc((EwcTrainer.Options)p(new EwcTrainer.Options { Lambda = lambdas["Online EWC"], Mode = EwcMode.Online }))),
        new("SI", (ml, p) => ml.Continual().Trainers.Si((SiTrainer.Options)p(new SiTrainer.Options { Lambda = lambdas["SI"] }))),
        new("MAS", (ml, p) => ml.Continual().Trainers.Mas((MasTrainer.Options)p(new MasTrainer.Options { Lambda = lambdas["MAS"] }))),
        new("RWalk", (ml, p) => ml.Continual().Trainers.RWalk((RWalkTrainer.Options)p(new RWalkTrainer.Options { Lambda = lambdas["RWalk"] }))),
        new("SCP", (ml, p) => ml.Continual().Trainers.Scp((ScpTrainer.Options)p(new ScpTrainer.Options { Lambda = lambdas["SCP"] }))),
        new("Joint", (ml, p) => ml.Continual().Trainers.Joint((JointTrainer.Options)p(new JointTrainer.Options()))),
    ];

    internal static Dictionary<string, double> ParseLambdas(string? text, Dictionary<string, double> defaults)
    {
        var result = new Dictionary<string, double>(defaults);
        foreach (string pair in (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var parts = pair.Split('=');
            result[parts[0].Replace('_', ' ')] = double.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture);
        }
        return result;
    }

    public static void PermutedMnist(int tasks, int epochs, string? only, string? lambdaText, string? hiddenText, string reportDirectory)
    {
        int[] hidden = (hiddenText ?? "400,400").Split(',').Select(int.Parse).ToArray();
        var lambdas = ParseLambdas(lambdaText, new() { ["L2"] = 0.01, ["EWC"] = 100, ["Online EWC"] = 100, ["SI"] = 100, ["MAS"] = 0.1, ["RWalk"] = 1, ["SCP"] = 1e6 });
        var ml = new MLContext(seed: 0);
        var stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: tasks);
        ContinualTrainerOptions Protocol(ContinualTrainerOptions o)
        {
            o.HiddenLayerSizes = hidden;
            o.Optimizer = ContinualOptimizer.Adam;
            o.LearningRate = 1e-3;
            o.BatchSize = 128;
            o.NumberOfEpochs = epochs;
            o.Seed = 0;
            o.NumberOfThreads = 2;
            return o;
        }
        var results = new List<ContinualExperimentResult>();
        var clock = Stopwatch.StartNew();
        foreach (var method in Methods(lambdas).Where(m => only is null || only.Split(',').Contains(m.Name.Replace(' ', '_'))))
        {
            if (method.Name == "Joint" && only is null) continue; // the joint bound costs T(T+1)/2 task-trainings; run it by name
            var result = ml.Continual().Run(method.Create(ml, Protocol), stream, new ContinualRunOptions { Name = method.Name });
            results.Add(result);
            Console.WriteLine($"{method.Name}: ACC {result.Metrics.AverageAccuracy:F4}  BWT {result.Metrics.BackwardTransfer:F4}  epoch {MeanEpoch(result):F2} s  (λ {(lambdas.TryGetValue(method.Name, out var l) ? l : 0)})");
        }
        Print($"Permuted MNIST, {tasks} tasks of 60,000 images, MLP 784-{string.Join("-", hidden)}-10, Adam lr 1e-3, batch 128, {epochs} epoch(s) per task, 2 threads; {clock.Elapsed.TotalMinutes:F1} min", results, lambdas);
        ContinualCharts.SaveComparison(results, Path.Combine(reportDirectory, $"permuted-mnist-regularization-{string.Join("-", hidden)}"));
    }

    public static void SplitMnist(string? only, string? lambdaText, string? scenarios, int seed, string reportDirectory)
    {
        var lambdas = ParseLambdas(lambdaText, new() { ["L2"] = 0.01, ["EWC"] = 100, ["Online EWC"] = 100, ["SI"] = 100, ["MAS"] = 0.1, ["RWalk"] = 1, ["SCP"] = 1e6 });
        var chosen = scenarios is null ? Enum.GetValues<ContinualScenario>() : scenarios.Split(',').Select(Enum.Parse<ContinualScenario>).ToArray();
        foreach (var scenario in chosen)
        {
            var ml = new MLContext(seed: seed);
            var stream = ml.Continual().Benchmarks.SplitMnist(scenario, seed: seed);
            ContinualTrainerOptions Protocol(ContinualTrainerOptions o)
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
            var results = new List<ContinualExperimentResult>();
            foreach (var method in Methods(lambdas).Where(m => only is null || only.Split(',').Contains(m.Name.Replace(' ', '_'))))
            {
                var result = ml.Continual().Run(method.Create(ml, Protocol), stream, new ContinualRunOptions { Name = method.Name });
                results.Add(result);
                Console.WriteLine($"{scenario} {method.Name}: ACC {result.Metrics.AverageAccuracy:F4}  BWT {result.Metrics.BackwardTransfer:F4}");
            }
            Print($"Split MNIST {scenario}, Hsu et al. 2018 protocol (MLP 784-400-400, Adam 1e-3, batch 128, 4 epochs)", results, lambdas);
            if (results.Count > 0) ContinualCharts.SaveComparison(results, Path.Combine(reportDirectory, $"split-mnist-regularization-{scenario}"));
        }
    }

    private static double MeanEpoch(ContinualExperimentResult r) => r.Tasks.Average(t => t.MeanEpochSeconds);

    private static void Print(string title, List<ContinualExperimentResult> results, Dictionary<string, double> lambdas)
    {
        var fineTune = results.FirstOrDefault(r => r.Name == "FineTune");
        Console.WriteLine();
        Console.WriteLine(title);
        Console.WriteLine("| method | λ | ACC | BWT | FWT | mean epoch s | epoch time / FineTune | state floats after last task |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var r in results)
        {
            var last = ContinualExperimentModels.Last(r);
            string ratio = fineTune is null ? "n/a" : $"{MeanEpoch(r) / MeanEpoch(fineTune):F2}";
            string lambda = lambdas.TryGetValue(r.Name, out var l) ? l.ToString("G4") : "–";
            Console.WriteLine($"| {r.Name} | {lambda} | {r.Metrics.AverageAccuracy:F4} | {r.Metrics.BackwardTransfer:F4} | {r.Metrics.ForwardTransfer:F4} | {MeanEpoch(r):F2} | {ratio} | {last} |");
        }
    }
}

internal static class ContinualExperimentModels
{
    public static string Last(ContinualExperimentResult r)
    {
        var continual = ContinualCatalog.FindContinual(r.Models[^1]);
        if (continual is null) return "–";
        var sizes = continual.StateSizes;
        return sizes.TryGetValue("penalty floats", out var f) ? f.ToString("N0") : sizes.TryGetValue("stored floats", out var s) ? s.ToString("N0") : "0";
    }
}

/// <summary>A coarse λ grid per method on a small Permuted MNIST (3 tasks of 20,000 images, 1 epoch, Adam 1e-3): how λ was chosen.</summary>
internal static class LambdaGrid
{
    public static void Run(string methods, string values)
    {
        var ml = new MLContext(seed: 0);
        var stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: 3, trainSamplesPerTask: 20_000, testSamplesPerTask: 2_000, seed: 7);
        ContinualTrainerOptions Protocol(ContinualTrainerOptions o)
        {
            o.HiddenLayerSizes = [400, 400];
            o.LearningRate = 1e-3;
            o.NumberOfEpochs = 1;
            o.Seed = 0;
            return o;
        }
        foreach (string method in methods.Split(','))
            foreach (double lambda in values.Split(',').Select(v => double.Parse(v, System.Globalization.CultureInfo.InvariantCulture)))
            {
                var lambdas = new[] { "L2", "EWC", "Online EWC", "SI", "MAS", "RWalk", "SCP" }.ToDictionary(m => m, _ => lambda);
                var m = RegularizationBenchmarks.Methods(lambdas).Single(x => x.Name.Replace(' ', '_') == method);
                var r = ml.Continual().Run(m.Create(ml, Protocol), stream, new ContinualRunOptions { EvaluateBeforeTraining = false });
                Console.WriteLine($"{method} λ={lambda:G3}: ACC {r.Metrics.AverageAccuracy:F4} BWT {r.Metrics.BackwardTransfer:F4} last-task {r.Metrics.FinalScores[^1]:F4}");
            }
    }
}
