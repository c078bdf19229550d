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
            ITransformer untrained = FitUntrained(trainer, stream[0].Train, cancellation);
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
            ContinualFitStatistics? statistics = null;
            var fit = new ContinualFitOptions { Completed = s => statistics = s };
            model = model is null ? Fit(trainer, task.Train, fit, cancellation) : ml.Continual().Refit(model, task.Train, fit, cancellation);
            double seconds = clock.Elapsed.TotalSeconds;
            long peak = sampler.Stop();
            models.Add(model);
            if (options.SaveModelsDirectory is string dir)
            {
                Directory.CreateDirectory(dir);
                ml.Model.Save(model, task.Train.Schema, Path.Combine(dir, $"model-after-task{t + 1}.zip"));
            }
            var evalClock = Stopwatch.StartNew();
            var scores = EvaluateAll(ml, model, stream, options.Score);
            rows.Add(scores);
            double epochSeconds = statistics is { EpochSeconds.Count: > 0 } ? statistics.EpochSeconds.Average() : seconds;
            // Samples/s counts the epochs the method ran (PackNet and CPG run more than NumberOfEpochs).
            double samplesPerSecond = statistics?.SamplesPerSecond ?? 0;
            var record = new ContinualTaskRecord(task.Name, seconds, statistics?.Rows ?? 0, samplesPerSecond, peak, evalClock.Elapsed.TotalSeconds, epochSeconds);
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

    private static ITransformer Fit(IEstimator<ITransformer> trainer, IDataView data, ContinualFitOptions fit, CancellationToken cancellation) =>
        trainer is ContinualTrainer continual ? continual.Fit(data, null, fit, cancellation) : trainer.Fit(data);

    /// <summary>The "row 0" model: built and initialised with the first task's vocabulary and the same seed, no epochs. A chain
    /// ending in a continual trainer (e.g. a normaliser and the trainer) has its last estimator told so for this one fit.</summary>
    internal static ITransformer FitUntrained(IEstimator<ITransformer> trainer, IDataView data, CancellationToken cancellation)
    {
        ContinualTrainer? continual = trainer as ContinualTrainer ?? LastEstimator(trainer);
        if (continual is null) return trainer.Fit(data); // not a continual trainer: nothing to leave untrained
        bool before = continual.FitsUntrained;
        continual.FitsUntrained = true;
        try
        {
            return ReferenceEquals(continual, trainer) ? continual.Fit(data, cancellation) : trainer.Fit(data);
        }
        finally
        {
            continual.FitsUntrained = before;
        }
    }

    private static ContinualTrainer? LastEstimator(IEstimator<ITransformer> trainer) =>
        trainer.GetType() is { IsGenericType: true } type && type.GetGenericTypeDefinition() == typeof(Microsoft.ML.Data.EstimatorChain<>)
            ? type.GetProperty(nameof(Microsoft.ML.Data.EstimatorChain<ITransformer>.LastEstimator))?.GetValue(trainer) as ContinualTrainer
            : null;

    private static string TrainerDisplayName(IEstimator<ITransformer> trainer) =>
        trainer is ContinualTrainer continual ? continual.TrainerName : trainer.GetType().Name;

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
