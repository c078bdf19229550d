using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Microsoft.ML.Continual;

/// <summary>
/// The outcome of <see cref="ContinualCatalog.Run"/>: the metrics (with the matrix R), the model after each task and,
/// per task, the training time, throughput and peak memory. <see cref="SaveReport"/> writes it as JSON, CSV and Markdown
/// (<c>ContinualCharts</c> in Microsoft.ML.Continual.Reports adds PNG plots); <see cref="SaveComparison"/> puts several results side by side.
/// </summary>
public sealed class ContinualExperimentResult
{
    internal ContinualExperimentResult(string name, string streamName, ContinualScenario scenario, ContinualMetrics metrics,
        IReadOnlyList<ITransformer> models, IReadOnlyList<ContinualTaskRecord> tasks)
    {
        Name = name;
        StreamName = streamName;
        Scenario = scenario;
        Metrics = metrics;
        Models = models;
        Tasks = tasks;
    }

    /// <summary>The run's name (the trainer's, unless given).</summary>
    public string Name { get; }

    /// <summary>The stream's name.</summary>
    public string StreamName { get; }

    /// <summary>The stream's scenario.</summary>
    public ContinualScenario Scenario { get; }

    /// <summary>ACC, BWT, FWT, forgetting and the matrix R.</summary>
    public ContinualMetrics Metrics { get; }

    /// <summary>The model after each task (index t: after task t+1).</summary>
    public IReadOnlyList<ITransformer> Models { get; }

    /// <summary>Per task: training time, throughput, peak memory.</summary>
    public IReadOnlyList<ContinualTaskRecord> Tasks { get; }

    /// <summary>Total training seconds over all tasks.</summary>
    public double TotalTrainingSeconds => Tasks.Sum(t => t.TrainingSeconds);

    /// <summary>Writes <c>metrics.json</c>, <c>matrix.csv</c>, <c>tasks.csv</c> and <c>summary.md</c> into
    /// <paramref name="directory"/>; <c>ContinualCharts.SaveReport</c> (package Microsoft.ML.Continual.Reports) adds
    /// <c>matrix.png</c> (a heatmap of R) and <c>curves.png</c> (each task's score across the sequence).</summary>
    public void SaveReport(string directory)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "metrics.json"), JsonSerializer.Serialize(ToJson(), JsonOptions));
        File.WriteAllText(Path.Combine(directory, "matrix.csv"), MatrixCsv());
        File.WriteAllText(Path.Combine(directory, "tasks.csv"), TasksCsv());
        File.WriteAllText(Path.Combine(directory, "summary.md"), Summary());
    }

    /// <summary>Writes <c>comparison.md</c> and <c>comparison.csv</c> for several runs on the same stream, and each run's
    /// own report in a sub-folder; <c>ContinualCharts.SaveComparison</c> (package Microsoft.ML.Continual.Reports) adds
    /// <c>comparison.png</c> (average accuracy over the tasks seen so far, per run) and each run's charts.</summary>
    public static void SaveComparison(IEnumerable<ContinualExperimentResult> results, string directory)
    {
        var list = results.ToList();
        if (list.Count == 0) throw new ArgumentException("Nothing to compare.", nameof(results));
        Directory.CreateDirectory(directory);
        foreach (var r in list) r.SaveReport(Path.Combine(directory, Sanitize(r.Name)));
        File.WriteAllText(Path.Combine(directory, "comparison.md"), ComparisonTable(list));
        var csv = new StringBuilder("run,stream,ACC,BWT,FWT,forgetting,training_seconds\n");
        foreach (var r in list)
            csv.AppendLine(string.Join(",", Quote(r.Name), Quote(r.StreamName), F(r.Metrics.AverageAccuracy), F(r.Metrics.BackwardTransfer),
                F(r.Metrics.ForwardTransfer), F(r.Metrics.AverageForgetting), F(r.TotalTrainingSeconds)));
        File.WriteAllText(Path.Combine(directory, "comparison.csv"), csv.ToString());
    }

    /// <summary>The Markdown table of several runs: ACC, BWT, FWT, forgetting and training time.</summary>
    public static string ComparisonTable(IEnumerable<ContinualExperimentResult> results)
    {
        var list = results.ToList();
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"| run | stream | ACC | BWT | FWT | forgetting | training s |");
        sb.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
        foreach (var r in list)
            sb.AppendLine(CultureInfo.InvariantCulture,
                $"| {r.Name} | {r.StreamName} | {F(r.Metrics.AverageAccuracy)} | {F(r.Metrics.BackwardTransfer)} | {F(r.Metrics.ForwardTransfer)} | {F(r.Metrics.AverageForgetting)} | {r.TotalTrainingSeconds:F1} |");
        return sb.ToString();
    }

    /// <summary>A Markdown summary of this run.</summary>
    public string Summary()
    {
        var m = Metrics;
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"# {Name} on {StreamName}");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Scenario: {Scenario}. Score: {m.Score}.");
        sb.AppendLine();
        sb.AppendLine(CultureInfo.InvariantCulture, $"| ACC | BWT | FWT | forgetting |");
        sb.AppendLine("| ---: | ---: | ---: | ---: |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"| {F(m.AverageAccuracy)} | {F(m.BackwardTransfer)} | {F(m.ForwardTransfer)} | {F(m.AverageForgetting)} |");
        sb.AppendLine();
        sb.AppendLine("R[i][j]: score on task j after training tasks 1..i (row 0: before training).");
        sb.AppendLine();
        sb.AppendLine("| after | " + string.Join(" | ", m.TaskNames) + " |");
        sb.AppendLine("| --- |" + string.Concat(Enumerable.Repeat(" ---: |", m.TaskCount)));
        for (int i = 0; i <= m.TaskCount; i++)
            sb.AppendLine($"| {(i == 0 ? "init" : "task " + i)} | " + string.Join(" | ", Enumerable.Range(1, m.TaskCount).Select(j => F(m.R(i, j)))) + " |");
        sb.AppendLine();
        sb.AppendLine("| task | training s | rows trained | samples/s | peak working set MB | evaluation s |");
        sb.AppendLine("| --- | ---: | ---: | ---: | ---: | ---: |");
        foreach (var t in Tasks)
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {t.TaskName} | {t.TrainingSeconds:F2} | {t.TrainingRows} | {t.SamplesPerSecond:F0} | {t.PeakWorkingSetBytes / 1048576.0:F0} | {t.EvaluationSeconds:F2} |");
        return sb.ToString();
    }

    private string MatrixCsv()
    {
        var sb = new StringBuilder("after," + string.Join(",", Metrics.TaskNames.Select(Quote)) + "\n");
        for (int i = 0; i <= Metrics.TaskCount; i++)
            sb.AppendLine((i == 0 ? "init" : $"task{i}") + "," + string.Join(",", Enumerable.Range(1, Metrics.TaskCount).Select(j => F(Metrics.R(i, j)))));
        return sb.ToString();
    }

    private string TasksCsv()
    {
        var sb = new StringBuilder("task,training_seconds,training_rows,samples_per_second,peak_working_set_bytes,evaluation_seconds\n");
        foreach (var t in Tasks)
            sb.AppendLine(string.Join(",", Quote(t.TaskName), F(t.TrainingSeconds), t.TrainingRows, F(t.SamplesPerSecond), t.PeakWorkingSetBytes, F(t.EvaluationSeconds)));
        return sb.ToString();
    }

    private object ToJson() => new
    {
        run = Name,
        stream = StreamName,
        scenario = Scenario.ToString(),
        score = Metrics.Score.ToString(),
        tasks = Metrics.TaskNames,
        averageAccuracy = N(Metrics.AverageAccuracy),
        backwardTransfer = N(Metrics.BackwardTransfer),
        forwardTransfer = N(Metrics.ForwardTransfer),
        averageForgetting = N(Metrics.AverageForgetting),
        matrix = Metrics.AccuracyMatrix.Select(row => row.Select(N).ToArray()).ToArray(),
        perTask = Tasks.Select(t => new { t.TaskName, t.TrainingSeconds, t.TrainingRows, t.SamplesPerSecond, t.PeakWorkingSetBytes, t.EvaluationSeconds }).ToArray(),
    };

    private static double? N(double v) => double.IsNaN(v) ? null : v; // JSON has no NaN: undefined entries are null

    private static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    internal static string F(double v) => double.IsNaN(v) ? "n/a" : v.ToString("F4", CultureInfo.InvariantCulture);

    private static string Quote(string s) => s.Contains(',') || s.Contains('"') ? "\"" + s.Replace("\"", "\"\"") + "\"" : s;

    internal static string Sanitize(string name) => string.Concat(name.Select(c => char.IsLetterOrDigit(c) || c is '-' or '_' ? c : '-'));
}
