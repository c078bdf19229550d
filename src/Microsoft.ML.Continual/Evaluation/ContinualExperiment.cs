using Microsoft.ML.Runtime;
using System.Diagnostics;

namespace Microsoft.ML.Continual;

/// <summary>Options of <see cref="ContinualCatalog.Run"/>.</summary>
public sealed class ContinualRunOptions
{
    /// <summary>What each entry of R measures. Default <see cref="ContinualScore.Accuracy"/>.</summary>
    public ContinualScore Score { get; set; } = ContinualScore.Accuracy;

    /// <summary>Evaluate the untrained model (same seed) as row 0 of R, needed for FWT. Default true.</summary>
    public bool EvaluateBeforeTraining { get; set; } = true;

    /// <summary>When set, the model after each task is saved there as <c>model-after-task{i}.zip</c>. Default null.</summary>
    public string? SaveModelsDirectory { get; set; }

    /// <summary>Called after each task is trained and evaluated.</summary>
    public Action<ContinualProgress>? Progress { get; set; }

    /// <summary>A name for the run in reports. Default: the trainer's name.</summary>
    public string? Name { get; set; }
}

/// <summary>Where an experiment is: the task just trained and its figures.</summary>
public sealed record ContinualProgress(string RunName, int TaskIndex, int TaskCount, ContinualTaskRecord Record, IReadOnlyList<double> ScoresAfterTask);

/// <summary>
/// What training one task cost. <see cref="TrainingSeconds"/> is the fit's wall time (reading the task included);
/// <see cref="SamplesPerSecond"/> is rows × epochs per second of the training loop alone; <see cref="PeakWorkingSetBytes"/>
/// is the largest working set of the process sampled every 20 ms during the fit; <see cref="MeanEpochSeconds"/> is the mean time
/// of one epoch of the training loop (hooks included, end-of-task consolidation excluded).
/// </summary>
public sealed record ContinualTaskRecord(string TaskName, double TrainingSeconds, long TrainingRows, double SamplesPerSecond, long PeakWorkingSetBytes, double EvaluationSeconds, double MeanEpochSeconds);

/// <summary>Runs a trainer through a task stream: fit, then refit task after task, evaluating every task after each.</summary>
internal static class ContinualExperiment
{
    public static ContinualExperimentResult Run(MLContext ml, IEstimator<ITransformer> trainer, TaskStream stream, ContinualRunOptions options, CancellationToken cancellation)
    {
        ArgumentNullException.ThrowIfNull(trainer);
        ArgumentNullException.ThrowIfNull(stream);
        string name = options.Name ?? TrainerDisplayName(trainer);
        var rows = new List<IReadOnlyList<double>>();
        var records = new List<ContinualTaskRecord>();
        var models = new List<ITransformer>();
        using var log = ((Runtime.IHostEnvironment)ml).Register("Continual").Start("Experiment");

        if (options.EvaluateBeforeTraining)
        {
            ITransformer untrained;
            using (TrainingLoop.BeginUntrained()) untrained = Fit(trainer, stream[0].Train, cancellation);
            rows.Add(EvaluateAll(ml, untrained, stream, options.Score));
        }
        else rows.Add(Enumerable.Repeat(double.NaN, stream.Count).ToList());

        ITransformer? model = null;
        for (int t = 0; t < stream.Count; t++)
        {
            cancellation.ThrowIfCancellationRequested();
            var task = stream[t];
            using var sampler = new PeakMemorySampler();
            var clock = Stopwatch.StartNew();
            model = model is null ? Fit(trainer, task.Train, cancellation) : ml.Continual().Refit(model, task.Train, cancellation);
            double seconds = clock.Elapsed.TotalSeconds;
            long peak = sampler.Stop();
            var continual = ContinualCatalog.FindContinual(model);
            long trainedRows = continual?.State.LastTaskTrainingRows ?? 0;
            double loopSeconds = continual?.State.LastTaskTrainingSeconds ?? seconds;
            int epochs = continual?.State.Options.NumberOfEpochs ?? 1;
            models.Add(model);
            if (options.SaveModelsDirectory is string dir)
            {
                Directory.CreateDirectory(dir);
                ml.Model.Save(model, task.Train.Schema, Path.Combine(dir, $"model-after-task{t + 1}.zip"));
            }
            var evalClock = Stopwatch.StartNew();
            var scores = EvaluateAll(ml, model, stream, options.Score);
            rows.Add(scores);
            double epochSeconds = continual is { State.LastTaskEpochSeconds.Count: > 0 } ? continual.State.LastTaskEpochSeconds.Average() : seconds;
            var record = new ContinualTaskRecord(task.Name, seconds, trainedRows, loopSeconds > 0 ? trainedRows * epochs / loopSeconds : 0, peak, evalClock.Elapsed.TotalSeconds, epochSeconds);
            records.Add(record);
            log.Info($"{name}: task {t + 1}/{stream.Count} ({task.Name}) trained in {seconds:F1} s, {record.SamplesPerSecond:F0} samples/s; scores {string.Join(" ", scores.Select(s => s.ToString("F3")))}");
            options.Progress?.Invoke(new ContinualProgress(name, t, stream.Count, record, scores));
        }
        var metrics = new ContinualMetrics(rows, options.Score, stream.Select(t => t.Name).ToList());
        return new ContinualExperimentResult(name, stream.Name, stream.Scenario, metrics, models, records);
    }

    public static ContinualMetrics Evaluate(MLContext ml, IReadOnlyList<ITransformer> models, TaskStream stream, ContinualScore score, ITransformer? untrained)
    {
        if (models.Count != stream.Count)
            throw new ArgumentException($"One model per task is needed: {models.Count} models for {stream.Count} tasks.", nameof(models));
        var rows = new List<IReadOnlyList<double>>
        {
            untrained is null ? Enumerable.Repeat(double.NaN, stream.Count).ToList() : EvaluateAll(ml, untrained, stream, score),
        };
        rows.AddRange(models.Select(m => EvaluateAll(ml, m, stream, score)));
        return new ContinualMetrics(rows, score, stream.Select(t => t.Name).ToList());
    }

    private static IReadOnlyList<double> EvaluateAll(MLContext ml, ITransformer model, TaskStream stream, ContinualScore score) =>
        stream.Select(task => ContinualEvaluator.Score(ml, model, task.Test, stream.LabelColumnName, score)).ToList();

    private static ITransformer Fit(IEstimator<ITransformer> trainer, IDataView data, CancellationToken cancellation) =>
        trainer is IContinualTrainer continual ? continual.Fit(data, cancellation) : trainer.Fit(data);

    private static string TrainerDisplayName(IEstimator<ITransformer> trainer) =>
        trainer is IContinualTrainer continual ? continual.TrainerName : trainer.GetType().Name;

    /// <summary>Samples the process's working set every 20 ms until stopped; returns the largest value seen.</summary>
    private sealed class PeakMemorySampler : IDisposable
    {
        private readonly Timer _timer;
        private long _peak;

        public PeakMemorySampler()
        {
            _peak = Environment.WorkingSet;
            _timer = new Timer(_ => Sample(), null, 0, 20);
        }

        private void Sample()
        {
            long now = Environment.WorkingSet;
            long seen;
            while (now > (seen = Interlocked.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, now, seen) != seen) { }
        }

        public long Stop()
        {
            _timer.Dispose();
            Sample();
            return Interlocked.Read(ref _peak);
        }

        public void Dispose() => _timer.Dispose();
    }
}
