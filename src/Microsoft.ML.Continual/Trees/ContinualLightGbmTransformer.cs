using Microsoft.ML.Continual.Internal;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Continual.Trees;

/// <summary>
/// Boosted trees trained by <see cref="ContinualLightGbmTrainer"/> on one or more tasks. Scores like ML.NET's own LightGBM
/// models (binary: <c>Score</c> the raw margin, <c>Probability</c> its logistic, <c>PredictedLabel</c>; regression:
/// <c>Score</c>), saves into the ordinary ML.NET zip with its trees and replay memory, and continues:
/// <see cref="ContinualCatalog.Refit(ITransformer, IDataView, CancellationToken)"/> adds the next task's rounds.
/// Never changed after it is made; a refit returns a new model.
/// </summary>
public sealed class ContinualLightGbmTransformer : ITransformer, ICanSaveModel, IContinuableModel
{
    private readonly IHostEnvironment _env;
    private readonly BoostedTreesScorer _scorer;

    internal ContinualLightGbmTransformer(IHostEnvironment env, BoostedTreesState state)
    {
        _env = env;
        State = state;
        _scorer = new BoostedTreesScorer(state);
    }

    internal BoostedTreesState State { get; }

    /// <summary>Scores blocks of feature rows (shift detection's test on the model's outputs).</summary>
    internal IBlockScorer Scorer => _scorer;

    /// <summary>The trainer that made the model: <c>"LightGbm"</c>.</summary>
    public string TrainerName => ContinualLightGbmTrainer.TrainerName;

    /// <summary>How many tasks the model was trained on.</summary>
    public int TasksSeen => State.TasksSeen;

    /// <summary>What the model predicts (binary classification or regression).</summary>
    public ContinualPredictionKind PredictionKind => State.Kind;

    /// <summary>The number of features the model takes.</summary>
    public int FeatureSize => State.FeatureSize;

    /// <summary>The boosting rounds (trees) each task added, in task order, after early stopping.</summary>
    public IReadOnlyList<int> RoundsPerTask => State.RoundsPerTask;

    /// <summary>The rows kept for replay (at most <see cref="ContinualLightGbmTrainer.Options.MemorySize"/>).</summary>
    public int MemoryRows => State.Memory.Count;

    /// <summary>Rows of the latest fit the model keeps for shift detection (<see cref="ContinualLightGbmTrainer.Options.ShiftReferenceRows"/>;
    /// 0 for a model fitted with none, or saved before trees kept them).</summary>
    public int ShiftReferenceRows => State.ShiftReference?.Count ?? 0;

    /// <summary>The labelled rows trained on, over every task.</summary>
    public long RowsSeen => State.RowsSeen;

    /// <summary>Trees carry no format history yet: the current version.</summary>
    public int FormatVersion => State.FormatVersion;

    /// <inheritdoc/>
    public string LabelColumnName => State.Options.LabelColumnName;

    /// <summary>Null: one ensemble serves every task.</summary>
    public string? TaskIdColumnName => null;

    /// <summary>Empty: binary classification or regression.</summary>
    public IReadOnlyList<string> Classes => [];

    /// <summary>Empty: one ensemble serves every task.</summary>
    public IReadOnlyList<string> TaskIds => [];

    /// <summary>The trees, the model text's bytes and the memory's rows.</summary>
    public IReadOnlyDictionary<string, long> StateSizes => new Dictionary<string, long>
    {
        ["trees"] = TreeCount, ["treeTextBytes"] = System.Text.Encoding.UTF8.GetByteCount(State.ModelText), ["memoryRows"] = State.Memory.Count,
    };

    /// <summary>The trees in the ensemble (one per boosting round kept: the last task's alone when each task retrains, every
    /// task's when rounds are added).</summary>
    public long TreeCount => State.Options.Mode == ContinualBoostingMode.AddRounds ? State.RoundsPerTask.Sum() : State.RoundsPerTask[^1];

    /// <inheritdoc/>
    public IReadOnlyList<KeyValuePair<string, string>> OptionValues => State.Options.ToPairs().OrderBy(p => p.Key, StringComparer.Ordinal).ToList();

    /// <summary>A copy of the options the model was trained with; refits continue with them.</summary>
    public ContinualLightGbmTrainer.Options Options => State.Options.Copy();

    /// <summary>The trees in LightGBM's own text format (readable by any LightGBM, e.g. Python's <c>lightgbm.Booster(model_str=...)</c>).</summary>
    public string LightGbmModelText => State.ModelText;

    /// <inheritdoc/>
    public bool IsRowToRowMapper => true;

    private OutputColumns Columns(DataViewSchema input) =>
        new(new OutputLayout(State.Kind, State.Options.FeatureColumnName, State.FeatureSize, 1, null, null, null, []), input);

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => Columns(inputSchema).Output;

    /// <summary>Scores <paramref name="input"/> lazily, in blocks of rows, as the cursor advances.</summary>
    public IDataView Transform(IDataView input) => new ScoredDataView(input, Columns(input.Schema), _scorer);

    /// <inheritdoc/>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => new ContinualRowMapper(Columns(inputSchema), _scorer);

    /// <summary>Trains a new model on <paramref name="task"/>: this model's trees and memory continued with its stored options.
    /// This model is not changed.</summary>
    public ContinualLightGbmTransformer Continue(IDataView task, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(task);
        return new ContinualLightGbmTransformer(_env, BoostedTreesTraining.Train(State, State.Options.Copy(), task, cancellationToken));
    }

    ITransformer IContinuableModel.Continue(IDataView task, ContinualFitOptions? fitOptions, CancellationToken cancellation)
    {
        if (fitOptions is { CheckpointPath: not null } or { Communicator: not null })
            throw new ArgumentException("The LightGbm continual trainer takes no checkpoints or communicator: a task's boosting is short and restarts whole.", nameof(fitOptions));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var model = Continue(task, cancellation);
        fitOptions?.Completed?.Invoke(new ContinualFitStatistics(model.RowsSeen - RowsSeen, 1, model.RoundsPerTask[^1], clock.Elapsed.TotalSeconds, [clock.Elapsed.TotalSeconds]));
        return model;
    }

    void ICanSaveModel.Save(ModelSaveContext ctx) => BoostedTreesFormat.Save(State, ctx);

    // Found by ML.NET's component catalog through the LoadableClass attribute in Internal/BoostedTreesFormat.cs.
    internal static ContinualLightGbmTransformer Create(IHostEnvironment env, ModelLoadContext ctx) => new(env, BoostedTreesFormat.Load(ctx));
}

/// <summary>Scores blocks of rows with the trees: raw margins from LightGBM, one call per block.</summary>
internal sealed class BoostedTreesScorer : IBlockScorer
{
    private readonly BoostedTreesState _state;
    private readonly TreeFeatureLayout _layout;
    [ThreadStatic] private static double[]? _margins;
    [ThreadStatic] private static float[]? _encoded;

    public BoostedTreesScorer(BoostedTreesState state)
    {
        _state = state;
        _layout = state.Layout;
    }

    public int OutputSize => 1;

    /// <summary>The model it scores with (what ONNX export writes).</summary>
    public BoostedTreesState State => _state;

    public void Score(float[] features, long[]? heads, int rows, float[] outputs)
    {
        if (rows == 0) return;
        var margins = _margins is { } m && m.Length >= rows ? m : _margins = new double[Math.Max(rows, ScoredDataView.BlockSize)];
        int width = _layout.Width;
        var encoded = _encoded is { } e && e.Length >= rows * width ? e : _encoded = new float[Math.Max(rows, ScoredDataView.BlockSize) * width];
        _layout.Encode(features, rows, encoded);
        _state.Booster.PredictRaw(encoded.AsSpan(0, rows * width), rows, width, margins, threads: 1);
        for (int i = 0; i < rows; i++) outputs[i] = (float)margins[i];
    }
}
