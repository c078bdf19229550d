using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Continual;
using Microsoft.ML.Data;

/// <summary>The architecture family (PackNet, progressive networks) beside FineTune on 10-task Permuted MNIST with task ids.</summary>
internal static class ArchitectureBenchmarks
{
    public static void PermutedMnist(int tasks, int epochs, int retrainEpochs, double cpgGoal, string? hiddenText, string? only, string reportDirectory)
    {
        int[] hidden = (hiddenText ?? "256,256").Split(',').Select(int.Parse).ToArray();
        var ml = new MLContext(seed: 0);
        var stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: tasks);
        T Protocol<T>(T o) where T : ContinualTrainerOptions
        {
            o.HiddenLayerSizes = hidden;
            o.Optimizer = ContinualOptimizer.Adam;
            o.LearningRate = 1e-3;
            o.BatchSize = 128;
            o.NumberOfEpochs = epochs;
            o.Seed = 0;
            o.NumberOfThreads = 2;
            o.TaskIdColumnName = "TaskId";
            return o;
        }
        var methods = new List<(string Name, IEstimator<ITransformer> Trainer)>
        {
            ("FineTune", ml.Continual().Trainers.FineTune(Protocol(new FineTuneTrainer.Options()))),
            ("PackNet", ml.Continual().Trainers.PackNet(Protocol(new PackNetTrainer.Options { ExpectedTaskCount = tasks, RetrainEpochs = retrainEpochs }))),
            ("Cpg", ml.Continual().Trainers.Cpg(Protocol(new CpgTrainer.Options { AccuracyGoal = cpgGoal }))),
            ("ProgressiveNetworks", ml.Continual().Trainers.ProgressiveNetworks(Protocol(new ProgressiveNetworksTrainer.Options()))),
        };
        var clock = Stopwatch.StartNew();
        var results = new List<ContinualExperimentResult>();
        var rows = new List<string>();
        foreach (var (name, trainer) in methods.Where(m => only is null || only.Split(',').Contains(m.Name)))
        {
            var result = ml.Continual().Run(trainer, stream, new ContinualRunOptions { Name = name });
            results.Add(result);
            var last = (ContinualTransformer)ContinualCatalog.FindContinual(result.Models[^1])!;
            // Every earlier task's test predictions, before and after all later tasks, compared bit for bit.
            int identical = 0;
            for (int t = 0; t < tasks - 1; t++)
                if (Scores(result.Models[t], stream[t].Test).SequenceEqual(Scores(result.Models[^1], stream[t].Test))) identical++;
            string capacity = last.Capacity switch
            {
                null => "n/a",
                { FreeWeights: null } => "grows",
                var c => $"{c.FreeFraction:P1} free, hidden {string.Join("-", last.HiddenLayerSizes)}",
            };
            double perTask = result.Tasks.Average(t => t.TrainingSeconds);
            rows.Add($"| {name} | {result.Metrics.AverageAccuracy:F4} | {result.Metrics.BackwardTransfer:F4} | {identical}/{tasks - 1} | {last.ParameterCount:N0} | {capacity} | {perTask:F1} | {result.Tasks[0].TrainingSeconds:F1} / {result.Tasks[^1].TrainingSeconds:F1} |");
            Console.WriteLine(rows[^1]);
        }
        double fineTunePerTask = results.FirstOrDefault(r => r.Name == "FineTune")?.Tasks.Average(t => t.TrainingSeconds) ?? double.NaN;
        Console.WriteLine();
        Console.WriteLine($"Permuted MNIST, {tasks} tasks of 60,000 images with task ids, MLP 784-{string.Join("-", hidden)}-10 (per column for progressive networks), Adam lr 1e-3, batch 128, {epochs} epoch(s) per task (+{retrainEpochs} retraining for PackNet; CPG: goal {cpgGoal} on the task's rows, 4 compaction epochs), 2 threads; {clock.Elapsed.TotalMinutes:F1} min");
        Console.WriteLine("| Method | ACC | BWT | earlier tasks bit-identical | parameters after all tasks | capacity | training s per task | first / last task s |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (string row in rows) Console.WriteLine(row);
        foreach (var r in results)
            Console.WriteLine($"{r.Name}: training time per task {r.Tasks.Average(t => t.TrainingSeconds) / fineTunePerTask:F2}x FineTune's");
        ContinualCharts.SaveComparison(results, Path.Combine(reportDirectory, "permuted-mnist-architecture"));
    }

    private static byte[] Scores(ITransformer model, IDataView data)
    {
        var scored = model.Transform(data);
        var scores = scored.GetColumn<VBuffer<float>>(scored.Schema["Score"]).SelectMany(v => v.DenseValues()).ToArray();
        return System.Runtime.InteropServices.MemoryMarshal.AsBytes(scores.AsSpan()).ToArray();
    }
}
