using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Continual;

/// <summary>
/// What a sweep maximises, computed from the metrics on the <b>validation</b> split of each task's training data.
/// </summary>
public sealed class ContinualObjective
{
    private readonly Func<ContinualMetrics, double> _compute;

    private ContinualObjective(string name, Func<ContinualMetrics, double> compute, bool needsUntrainedRow = false)
    {
        Name = name;
        _compute = compute;
        NeedsUntrainedRow = needsUntrainedRow;
    }

    /// <summary>A short description, used in reports.</summary>
    public string Name { get; }

    internal bool NeedsUntrainedRow { get; }

    /// <summary>The objective's value for <paramref name="metrics"/> (larger is better).</summary>
    public double Compute(ContinualMetrics metrics) => _compute(metrics);

    /// <summary>ACC = mean_i R[T, i].</summary>
    public static ContinualObjective AverageAccuracy { get; } = new("ACC", m => m.AverageAccuracy);

    /// <summary>ACC subject to BWT ≥ <paramref name="floor"/>: ACC when the floor holds, else ACC − 10·(floor − BWT)
    /// (a steep but continuous penalty, so model-based tuners can still rank infeasible trials).</summary>
    public static ContinualObjective AccuracyWithBackwardTransferFloor(double floor) =>
        new($"ACC s.t. BWT ≥ {floor.ToString(CultureInfo.InvariantCulture)}", m => m.BackwardTransfer >= floor ? m.AverageAccuracy : m.AverageAccuracy - 10 * (floor - m.BackwardTransfer));

    /// <summary>A weighted sum a·ACC + b·BWT + c·FWT (FWT needs the untrained model's row, which the sweep then evaluates).</summary>
    public static ContinualObjective Weighted(double accuracyWeight, double backwardTransferWeight, double forwardTransferWeight = 0) =>
        new(string.Create(CultureInfo.InvariantCulture, $"{accuracyWeight}·ACC + {backwardTransferWeight}·BWT + {forwardTransferWeight}·FWT"),
            m => accuracyWeight * m.AverageAccuracy + backwardTransferWeight * m.BackwardTransfer + (forwardTransferWeight == 0 ? 0 : forwardTransferWeight * m.ForwardTransfer),
            forwardTransferWeight != 0);

    /// <summary>Any function of the metrics.</summary>
    public static ContinualObjective Custom(string name, Func<ContinualMetrics, double> compute, bool needsUntrainedRow = false) => new(name, compute, needsUntrainedRow);
}

/// <summary>The state of one trial.</summary>
public enum SweepTrialStatus
{
    /// <summary>Being trained.</summary>
    Running,
    /// <summary>Trained and evaluated.</summary>
    Completed,
    /// <summary>Training or evaluation threw; <see cref="SweepTrial{T}.Error"/> says what.</summary>
    Failed,
    /// <summary>Stopped by cancellation or the time budget.</summary>
    Cancelled,
}

/// <summary>One trial of a sweep.</summary>
public sealed class SweepTrial<T> where T : class, new()
{
    internal SweepTrial(int index, T parameters, IReadOnlyDictionary<string, object> values, double[] point)
    {
        Index = index;
        Parameters = parameters;
        ParameterValues = values;
        Point = point;
    }

    /// <summary>0 for the first trial.</summary>
    public int Index { get; }
    /// <summary>The parameters tried.</summary>
    public T Parameters { get; }
    /// <summary>Each swept property's value.</summary>
    public IReadOnlyDictionary<string, object> ParameterValues { get; }
    internal double[] Point { get; }
    /// <summary>Where the trial is.</summary>
    public SweepTrialStatus Status { get; internal set; } = SweepTrialStatus.Running;
    /// <summary>The objective on the validation splits (NaN unless completed).</summary>
    public double Objective { get; internal set; } = double.NaN;
    /// <summary>The metrics on the validation splits (null unless completed).</summary>
    public ContinualMetrics? Metrics { get; internal set; }
    /// <summary>The model after the last task (null unless completed; kept for the best trial and dropped for the others).</summary>
    public ITransformer? Model { get; internal set; }
    /// <summary>Wall time of the trial.</summary>
    public TimeSpan Duration { get; internal set; }
    /// <summary>Why the trial failed.</summary>
    public string? Error { get; internal set; }
    internal IReadOnlyList<ITransformer>? ModelsAfterEachTask { get; set; }
}

/// <summary>Receives a sweep's progress (as AutoML's <c>IMonitor</c>); every method has a no-op default.</summary>
public interface ISweepMonitor
{
    /// <summary>A trial starts.</summary>
    void ReportRunningTrial<T>(SweepTrial<T> trial) where T : class, new() { }
    /// <summary>A trial finished and was evaluated.</summary>
    void ReportCompletedTrial<T>(SweepTrial<T> trial) where T : class, new() { }
    /// <summary>A trial threw; the sweep goes on.</summary>
    void ReportFailedTrial<T>(SweepTrial<T> trial, Exception exception) where T : class, new() { }
    /// <summary>A trial became the best so far.</summary>
    void ReportBestTrial<T>(SweepTrial<T> trial) where T : class, new() { }
}

/// <summary>Starts a sweep: <c>mlContext.Continual().CreateSweep()</c>, then <see cref="SetTrainer{T}"/>.</summary>
public sealed class ContinualSweepBuilder
{
    private readonly MLContext _mlContext;

    internal ContinualSweepBuilder(MLContext mlContext) => _mlContext = mlContext;

    /// <summary>The trainer to sweep, made from each trial's parameters, and the space the parameters come from.</summary>
    public ContinualSweep<T> SetTrainer<T>(Func<MLContext, T, IEstimator<ITransformer>> createTrainer, SearchSpace<T> searchSpace) where T : class, new()
    {
        ArgumentNullException.ThrowIfNull(createTrainer);
        ArgumentNullException.ThrowIfNull(searchSpace);
        return new ContinualSweep<T>(_mlContext, createTrainer, searchSpace);
    }
}

/// <summary>
/// A sweep over a continual trainer's options, shaped like ML.NET AutoML's experiments: a trainer factory and a search
/// space, a task stream, an objective, a budget (trials and seconds) and a tuner. Each trial runs the trainer through the
/// stream with each task's training data split into training and validation rows; the objective is computed on the
/// validation rows only. The test sets are used once, after the sweep, to evaluate the best trial
/// (<see cref="SweepResult{T}.BestTestMetrics"/>): choosing by test accuracy would make the reported test accuracy an
/// optimistic, selected figure rather than an estimate of how the chosen settings do on new data. Then, as ML.NET AutoML
/// returns its best model, the best parameters are trained once more on all of each task's training rows
/// (<see cref="SweepResult{T}.BestModel"/>, scored on the test sets in <see cref="SweepResult{T}.BestModelTestMetrics"/>):
/// the trials trained on the rows the validation split left them, which is not the model a user wants to keep.
/// </summary>
/// <example><code source="../../src/Samples/SweepSample.cs" /></example>
public sealed class ContinualSweep<T> where T : class, new()
{
    private readonly MLContext _mlContext;
    private readonly Func<MLContext, T, IEstimator<ITransformer>> _createTrainer;
    private readonly SearchSpace<T> _space;
    private TaskStream? _stream;
    private ContinualObjective _objective = ContinualObjective.AverageAccuracy;
    private int _maxTrials = 10;
    private double? _seconds;
    private SweepTuner _tuner = SweepTuner.Bayesian;
    private double _validationFraction = 0.2;
    private int _seed;
    private ISweepMonitor? _monitor;
    private bool _retrainBest = true;

    internal ContinualSweep(MLContext mlContext, Func<MLContext, T, IEstimator<ITransformer>> createTrainer, SearchSpace<T> space)
    {
        (_mlContext, _createTrainer, _space) = (mlContext, createTrainer, space);
    }

    /// <summary>The tasks to run each trial through. Required.</summary>
    public ContinualSweep<T> SetTaskStream(TaskStream stream) { _stream = stream ?? throw new ArgumentNullException(nameof(stream)); return this; }
    /// <summary>What to maximise. Default <see cref="ContinualObjective.AverageAccuracy"/>.</summary>
    public ContinualSweep<T> SetObjective(ContinualObjective objective) { _objective = objective ?? throw new ArgumentNullException(nameof(objective)); return this; }
    /// <summary>The most trials to run. Default 10.</summary>
    public ContinualSweep<T> SetMaxTrials(int maxTrials) { _maxTrials = maxTrials > 0 ? maxTrials : throw new ArgumentOutOfRangeException(nameof(maxTrials), "At least one trial."); return this; }
    /// <summary>A wall-time budget: no trial starts after it, and the running one is cancelled when it ends. Default: none.</summary>
    public ContinualSweep<T> SetTrainingTimeInSeconds(double seconds) { _seconds = seconds > 0 ? seconds : throw new ArgumentOutOfRangeException(nameof(seconds), "A positive budget."); return this; }
    /// <summary>How to choose trials. Default <see cref="SweepTuner.Bayesian"/>.</summary>
    public ContinualSweep<T> SetTuner(SweepTuner tuner) { _tuner = tuner; return this; }
    /// <summary>The share of each task's training rows held out for the objective, in (0, 0.5]. Default 0.2.</summary>
    public ContinualSweep<T> SetValidationFraction(double fraction) { _validationFraction = fraction > 0 && fraction <= 0.5 ? fraction : throw new ArgumentOutOfRangeException(nameof(fraction), "In (0, 0.5]."); return this; }
    /// <summary>The seed of the validation splits and of the random and Bayesian tuners. Default 0.</summary>
    public ContinualSweep<T> SetSeed(int seed) { _seed = seed; return this; }
    /// <summary>Receives each trial's progress.</summary>
    public ContinualSweep<T> SetMonitor(ISweepMonitor monitor) { _monitor = monitor; return this; }

    /// <summary>Whether the best parameters are trained once more on all rows after the trials (default true; it costs one
    /// more run of the stream, outside the time budget of <see cref="SetTrainingTimeInSeconds"/>).</summary>
    public ContinualSweep<T> SetRetrainBest(bool retrain) { _retrainBest = retrain; return this; }

    /// <summary>Runs the sweep. Cancelling returns the trials finished so far (and the best of them) instead of throwing.</summary>
    public Task<SweepResult<T>> RunAsync(CancellationToken cancellationToken = default) =>
        Task.Run(() => Run(cancellationToken), CancellationToken.None);

    /// <summary>Runs the sweep on the calling thread; see <see cref="RunAsync"/>.</summary>
    public SweepResult<T> Run(CancellationToken cancellationToken = default)
    {
        if (_stream is null) throw new InvalidOperationException("Call SetTaskStream before running the sweep.");
        var stream = _stream;
        using var channel = ((IHostEnvironment)_mlContext).Register("ContinualSweep").Start("Sweep");
        TaskStream validation = ValidationStream(stream);
        IUnitTuner tuner = _tuner switch
        {
            SweepTuner.Grid => new GridTuner(_space.Dimensions, _maxTrials),
            SweepTuner.Random => new RandomTuner(_space.Dimensions.Count, _seed),
            _ => new GaussianProcessTuner(_space.Dimensions.Count, _space.InitialPoint, _seed),
        };
        using var budget = _seconds is double s ? new CancellationTokenSource(TimeSpan.FromSeconds(s)) : new CancellationTokenSource();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, budget.Token);
        var trials = new List<SweepTrial<T>>();
        var history = new List<(double[] Point, double Objective)>();
        SweepTrial<T>? best = null;
        var clock = Stopwatch.StartNew();
        channel.Info($"Sweep of {_space.Dimensions.Count} parameter(s) with the {_tuner} tuner, at most {_maxTrials} trials, objective {_objective.Name}, on {stream.Name}.");
        for (int i = 0; i < _maxTrials && !stop.IsCancellationRequested; i++)
        {
            if (tuner is GridTuner { Exhausted: true }) break;
            double[] point = tuner.Propose(history);
            var trial = new SweepTrial<T>(i, _space.Create(point), _space.Values(point), point);
            trials.Add(trial);
            _monitor?.ReportRunningTrial(trial);
            channel.Info($"Trial {i + 1}: {Describe(trial.ParameterValues)}");
            var trialClock = Stopwatch.StartNew();
            try
            {
                var trainer = _createTrainer(_mlContext, trial.Parameters);
                var result = _mlContext.Continual().Run(trainer, validation,
                    new ContinualRunOptions { EvaluateBeforeTraining = _objective.NeedsUntrainedRow, Name = $"trial {i + 1}" }, stop.Token);
                trial.Metrics = result.Metrics;
                trial.Objective = _objective.Compute(result.Metrics);
                if (!double.IsFinite(trial.Objective)) throw new InvalidOperationException($"The objective is {trial.Objective} (the metrics have no finite value for it).");
                trial.Status = SweepTrialStatus.Completed;
                trial.Duration = trialClock.Elapsed;
                trial.Model = result.Models[^1];
                trial.ModelsAfterEachTask = result.Models;
                history.Add((point, trial.Objective));
                _monitor?.ReportCompletedTrial(trial);
                channel.Info($"Trial {i + 1} completed in {trial.Duration.TotalSeconds:F1} s: {_objective.Name} = {trial.Objective:F4} (ACC {result.Metrics.AverageAccuracy:F4}, BWT {result.Metrics.BackwardTransfer:F4}).");
                if (best is null || trial.Objective > best.Objective)
                {
                    if (best is not null) { best.Model = null; best.ModelsAfterEachTask = null; }
                    best = trial;
                    _monitor?.ReportBestTrial(trial);
                }
                else { trial.Model = null; trial.ModelsAfterEachTask = null; }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                trial.Status = SweepTrialStatus.Cancelled;
                trial.Duration = trialClock.Elapsed;
                channel.Info($"Trial {i + 1} cancelled ({(cancellationToken.IsCancellationRequested ? "by the caller" : "time budget reached")}).");
            }
            catch (Exception e)
            {
                trial.Status = SweepTrialStatus.Failed;
                trial.Duration = trialClock.Elapsed;
                trial.Error = $"{e.GetType().Name}: {e.Message}";
                history.Add((point, double.NaN));
                _monitor?.ReportFailedTrial(trial, e);
                channel.Warning($"Trial {i + 1} failed: {trial.Error}");
            }
        }
        ContinualMetrics? testMetrics = null;
        if (best?.ModelsAfterEachTask is { } models && !cancellationToken.IsCancellationRequested)
            testMetrics = _mlContext.Continual().Evaluate(models, stream);
        channel.Info(best is null ? "No trial completed." : $"Best: trial {best.Index + 1}, {Describe(best.ParameterValues)}, {_objective.Name} = {best.Objective:F4}" +
            (testMetrics is null ? "" : $"; its models on the test sets ACC {testMetrics.AverageAccuracy:F4}, BWT {testMetrics.BackwardTransfer:F4}."));
        var retrained = best is not null && _retrainBest && !cancellationToken.IsCancellationRequested ? RetrainBest(best, stream, channel, cancellationToken) : null;
        return new SweepResult<T>(trials, best, testMetrics, _objective, _space, clock.Elapsed, retrained);
    }

    /// <summary>The best parameters through the whole stream, every training row of every task, scored on the test sets.</summary>
    /// <remarks>A cancellation or failure here leaves the trials' result intact: no retrained model, and a warning.</remarks>
    private ContinualExperimentResult? RetrainBest(SweepTrial<T> best, TaskStream stream, IChannel channel, CancellationToken cancellationToken)
    {
        channel.Info($"Retraining the best parameters ({Describe(best.ParameterValues)}) on all of each task's training rows.");
        try
        {
            var result = _mlContext.Continual().Run(_createTrainer(_mlContext, best.Parameters), stream,
                new ContinualRunOptions { EvaluateBeforeTraining = _objective.NeedsUntrainedRow, Name = "best parameters, all training rows" }, cancellationToken);
            channel.Info($"Retrained: on the test sets ACC {result.Metrics.AverageAccuracy:F4}, BWT {result.Metrics.BackwardTransfer:F4}.");
            return result;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            channel.Warning($"The best parameters could not be retrained on all rows ({e.GetType().Name}: {e.Message}); BestModel is null, the trials stand.");
            return null;
        }
    }

    /// <summary>Each task's training rows split (seeded) into training and validation; the validation rows play the test set's part.</summary>
    private TaskStream ValidationStream(TaskStream stream)
    {
        var tasks = stream.Select((task, t) =>
        {
            var split = _mlContext.Data.TrainTestSplit(task.Train, _validationFraction, seed: _seed + 7919 * t);
            return new ContinualTask(task.Name, split.TrainSet, split.TestSet);
        });
        return new TaskStream($"{stream.Name} (validation {_validationFraction:P0} of each task's training rows)", stream.Scenario, tasks,
            stream.FeatureColumnName, stream.LabelColumnName, stream.TaskIdColumnName);
    }

    internal static string Describe(IReadOnlyDictionary<string, object> values) =>
        string.Join(", ", values.Select(kv => $"{kv.Key} = {Format(kv.Value)}"));

    internal static string Format(object value) => value switch
    {
        double d => d.ToString("G4", CultureInfo.InvariantCulture),
        float f => f.ToString("G4", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}

/// <summary>What a sweep found: every trial, the best one, and the best one's metrics on the test sets.</summary>
public sealed class SweepResult<T> where T : class, new()
{
    private readonly ContinualObjective _objective;
    private readonly SearchSpace<T> _space;

    internal SweepResult(IReadOnlyList<SweepTrial<T>> trials, SweepTrial<T>? best, ContinualMetrics? bestTestMetrics, ContinualObjective objective, SearchSpace<T> space, TimeSpan duration,
        ContinualExperimentResult? retrained = null)
    {
        (Trials, Best, BestTestMetrics, _objective, _space, Duration) = (trials, best, bestTestMetrics, objective, space, duration);
        BestModelsAfterEachTask = retrained?.Models;
        BestModelTestMetrics = retrained?.Metrics;
    }

    /// <summary>Every trial, in order.</summary>
    public IReadOnlyList<SweepTrial<T>> Trials { get; }
    /// <summary>The completed trial with the largest objective (null if none completed).</summary>
    public SweepTrial<T>? Best { get; }
    /// <summary>The best trial's own models evaluated on the stream's test sets: trained on the rows the validation split left
    /// (by default 80% of each task's), so not the model to keep (null if no trial completed or the sweep was cancelled).</summary>
    public ContinualMetrics? BestTestMetrics { get; }

    /// <summary>The model to keep: the best parameters trained on all of each task's training rows, after the last task
    /// (null if no trial completed, the sweep was cancelled, or <see cref="ContinualSweep{T}.SetRetrainBest"/> turned it off).</summary>
    public ITransformer? BestModel => BestModelsAfterEachTask?[^1];

    /// <summary>That retraining's model after each task, in task order.</summary>
    public IReadOnlyList<ITransformer>? BestModelsAfterEachTask { get; }

    /// <summary><see cref="BestModel"/>'s metrics on the stream's test sets (the R matrix of its models after each task).</summary>
    public ContinualMetrics? BestModelTestMetrics { get; }
    /// <summary>The sweep's wall time.</summary>
    public TimeSpan Duration { get; }

    /// <summary>The swept parameters, in the search space's order.</summary>
    public IReadOnlyList<SearchDimension> Dimensions => _space.Dimensions;

    /// <summary>The objective's name (what the trials are ranked by).</summary>
    public string ObjectiveName => _objective.Name;

    /// <summary>Writes <c>trials.csv</c> (one row per trial: parameters, status, objective, ACC, BWT, FWT, seconds, error) to
    /// <paramref name="directory"/>; <c>ContinualCharts.SaveReport</c> (package Microsoft.ML.Continual.Reports) adds the
    /// plots of the metrics against each swept parameter.</summary>
    public void SaveReport(string directory)
    {
        Directory.CreateDirectory(directory);
        var names = _space.Dimensions.Select(d => d.Name).ToList();
        var csv = new StringBuilder(string.Join(",", new[] { "trial" }.Concat(names).Concat(["status", "objective", "ACC", "BWT", "FWT", "seconds", "error"])) + "\n");
        foreach (var t in Trials)
            csv.AppendLine(string.Join(",", new[] { (t.Index + 1).ToString(CultureInfo.InvariantCulture) }
                .Concat(names.Select(n => Quote(ContinualSweep<T>.Format(t.ParameterValues[n]))))
                .Concat([t.Status.ToString(), F(t.Objective), F(t.Metrics?.AverageAccuracy), F(t.Metrics?.BackwardTransfer), F(t.Metrics?.ForwardTransfer),
                    t.Duration.TotalSeconds.ToString("F2", CultureInfo.InvariantCulture), Quote(t.Error ?? "")])));
        File.WriteAllText(Path.Combine(directory, "trials.csv"), csv.ToString());
    }

    private static string F(double? v) => v is double d && double.IsFinite(d) ? d.ToString("R", CultureInfo.InvariantCulture) : "";
    private static string Quote(string s) => s.Contains(',') || s.Contains('"') || s.Contains('\n') ? $"\"{s.Replace("\"", "\"\"")}\"" : s;
}
