using Microsoft.ML.Continual.Internal;
using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Continual;

/// <summary>
/// A model trained by a continual trainer on one or more tasks. It scores data like any ML.NET prediction
/// transformer (columns <c>Score</c>, and for classification <c>PredictedLabel</c>, for binary also
/// <c>Probability</c>), saves into the ordinary ML.NET model zip, and continues: <see cref="ContinualCatalog.Refit(ITransformer, IDataView, CancellationToken)"/>
/// trains it on the next task with its stored options, plugins and their state.
/// </summary>
/// <remarks>
/// A transformer never changes after it is made. Refitting returns a new transformer; the old one stays usable,
/// even if the refit fails or is cancelled. Scoring runs in blocks of rows with gradients off.
/// </remarks>
public sealed class ContinualTransformer : ITransformer, ICanSaveModel, IContinuableModel
{
    private readonly IHostEnvironment _env;

    internal ContinualTransformer(IHostEnvironment env, ContinualModelState state)
    {
        _env = env;
        State = state;
        Scorer = new Scorer(state);
    }

    internal ContinualModelState State { get; }
    internal Scorer Scorer { get; }

    /// <summary>The trainer that made the model (e.g. <c>"FineTune"</c>); refits continue with it.</summary>
    public string TrainerName => State.TrainerName;

    /// <summary>How many tasks the model was trained on.</summary>
    public int TasksSeen => State.TasksSeen;

    /// <summary>The model-format version this model was read with (the current version for a model trained in this process).</summary>
    public int FormatVersion => State.FormatVersion;

    /// <summary>What the model predicts.</summary>
    public ContinualPredictionKind PredictionKind => State.Kind;

    /// <summary>The number of features the model takes.</summary>
    public int FeatureSize => State.FeatureSize;

    /// <summary>Rows of its latest fit the model keeps for shift detection (<see cref="ContinualTrainerOptions.ShiftReferenceRows"/>); 0 if none.</summary>
    public int ShiftReferenceRows => State.ShiftReference?.Count ?? 0;

    /// <summary>The classes in output order (slot order of <c>Score</c>) for multiclass models; empty otherwise.</summary>
    public IReadOnlyList<string> Classes =>
        State.Classes is { } c ? Enumerable.Range(0, c.Count).Select(c.Describe).ToList() : [];

    /// <summary>The task ids, in head order, for a multi-head (task-incremental) model; empty otherwise.</summary>
    public IReadOnlyList<string> TaskIds => State.TaskIds.ToList();

    /// <summary>The hidden layers' current widths (per column for progressive networks); wider than the options' when CPG grew them.</summary>
    public IReadOnlyList<int> HiddenLayerSizes => State.Network.Shape.HiddenSizes.ToArray();

    /// <summary>The network's trainable parameter count.</summary>
    public long ParameterCount => State.Network.parameters().Sum(p => p.numel());

    /// <summary>How the network's capacity is divided among the tasks, for the architecture methods (PackNet, CPG,
    /// progressive networks); null for the other trainers.</summary>
    public ContinualCapacity? Capacity => State.Plugins.Capacity(State);

    /// <summary>The registered names of the model's plugins, in order (empty for fine-tuning); refits continue with them.</summary>
    public IReadOnlyList<string> PluginNames => State.Plugins.Names.ToList();

    /// <summary>The backbone under the heads, or null for the default multilayer perceptron.</summary>
    public ContinualBackbone? Backbone => State.Network.Backbone;

    /// <inheritdoc/>
    public string LabelColumnName => State.Options.LabelColumnName;

    /// <inheritdoc/>
    public string? TaskIdColumnName => State.Options.TaskIdColumnName;

    /// <inheritdoc/>
    public IReadOnlyList<KeyValuePair<string, string>> OptionValues => State.Options.ToPairs().OrderBy(p => p.Key, StringComparer.Ordinal).ToList();

    /// <summary>A copy of the options the model was trained with (changing it changes nothing).</summary>
    public ContinualTrainerOptions Options => TrainerRegistry.Get(State.TrainerName).ReadOptions(State.Options.ToPairs());

    /// <summary>The model's state sizes (e.g. parameters, strategy tensors), for inspection.</summary>
    public IReadOnlyDictionary<string, long> StateSizes
    {
        get
        {
            var sizes = new Dictionary<string, long> { ["parameters"] = ParameterCount };
            foreach (var (k, v) in State.Plugins.StateSizes()) sizes[k] = v;
            return sizes;
        }
    }

    /// <inheritdoc/>
    public bool IsRowToRowMapper => true;

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema) => new OutputColumns(State, inputSchema).Output;

    /// <summary>Scores <paramref name="input"/> lazily, in blocks of rows, as the cursor advances.</summary>
    public IDataView Transform(IDataView input) => new ScoredDataView(input, new OutputColumns(State, input.Schema), Scorer, State);

    /// <inheritdoc/>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema) => new ContinualRowMapper(new OutputColumns(State, inputSchema), Scorer);

    /// <summary>Trains a new model on <paramref name="task"/>, continuing this one with its stored options, plugins and
    /// their state. This model is not changed.</summary>
    public ContinualTransformer Continue(IDataView task, CancellationToken cancellationToken = default) => Continue(task, null, cancellationToken);

    internal ContinualTransformer Continue(IDataView task, ContinualFitOptions? fitOptions, CancellationToken cancellationToken)
    {
        var options = TrainerRegistry.Get(State.TrainerName).ReadOptions(State.Options.ToPairs());
        return ContinueWith(State.TrainerName, options, State.Plugins.Copy(), task, cancellationToken, fitOptions);
    }

    ITransformer IContinuableModel.Continue(IDataView task, ContinualFitOptions? fitOptions, CancellationToken cancellation) => Continue(task, fitOptions, cancellation);

    internal ContinualTransformer ContinueWith(string trainerName, ContinualTrainerOptions options, PluginList plugins, IDataView task, CancellationToken cancellationToken,
        ContinualFitOptions? fitOptions = null)
    {
        var state = TrainingLoop.Train(_env, State, trainerName, options, plugins, task, cancellationToken, fitOptions);
        return new ContinualTransformer(_env, state);
    }

    void ICanSaveModel.Save(ModelSaveContext ctx) => ModelFormat.Save(State, ctx);

    // Found by ML.NET's component catalog through the LoadableClass attribute in Internal/ModelFormat.cs.
    internal static ContinualTransformer Create(IHostEnvironment env, ModelLoadContext ctx) =>
        new(env, ModelFormat.Load(env, ctx));
}

/// <summary>What every continual model says of itself, whatever learns in it (a network: <see cref="ContinualTransformer"/>;
/// boosted trees: <see cref="Trees.ContinualLightGbmTransformer"/>): found at the end of a chain by
/// <see cref="ContinualCatalog.FindContinualModel(ITransformer)"/>, for tools that handle any of them.</summary>
public interface IContinualModel : ITransformer
{
    /// <summary>The trainer that made the model; refits continue with it.</summary>
    string TrainerName { get; }

    /// <summary>How many tasks the model was trained on.</summary>
    int TasksSeen { get; }

    /// <summary>What the model predicts.</summary>
    ContinualPredictionKind PredictionKind { get; }

    /// <summary>The number of features the model takes.</summary>
    int FeatureSize { get; }

    /// <summary>The model-format version this model was read with.</summary>
    int FormatVersion { get; }

    /// <summary>The label column the model was trained with.</summary>
    string LabelColumnName { get; }

    /// <summary>The task-id column of a multi-head model, or null.</summary>
    string? TaskIdColumnName { get; }

    /// <summary>The classes in output order for multiclass models; empty otherwise.</summary>
    IReadOnlyList<string> Classes { get; }

    /// <summary>The task ids, in head order, of a multi-head model; empty otherwise.</summary>
    IReadOnlyList<string> TaskIds { get; }

    /// <summary>The sizes of what the model holds (parameters or trees, memories, strategy state), for inspection.</summary>
    IReadOnlyDictionary<string, long> StateSizes { get; }

    /// <summary>The options the model was trained with, as name/value text in name order.</summary>
    IReadOnlyList<KeyValuePair<string, string>> OptionValues { get; }
}

/// <summary>A model that <see cref="ContinualCatalog.Refit(ITransformer, IDataView, CancellationToken)"/> can continue: the
/// network models and the boosted trees.</summary>
internal interface IContinuableModel : IContinualModel
{
    ITransformer Continue(IDataView task, ContinualFitOptions? fitOptions, CancellationToken cancellation);
}
