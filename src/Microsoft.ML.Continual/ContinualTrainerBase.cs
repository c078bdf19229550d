using Microsoft.ML.Runtime;

namespace Microsoft.ML.Continual;

/// <summary>
/// Every continual trainer: an ordinary ML.NET estimator whose <see cref="Fit(IDataView)"/> trains a first task and whose
/// <see cref="Fit(IDataView, ContinualTransformer, CancellationToken)"/> continues a previous model on the next task (warm
/// start, as ML.NET's own <c>Fit(data, modelParameters)</c>). A trainer is its options (frozen when it is made) and an
/// ordered list of plugins (<see cref="PluginNames"/>); <see cref="ContinualTrainers.Create(string, IEnumerable{KeyValuePair{string, string}})"/> and the catalog return this
/// type, so warm starts and fit options are reachable whatever the trainer.
/// </summary>
public abstract class ContinualTrainer : IEstimator<ContinualTransformer>
{
    private readonly IHostEnvironment _env;

    private protected ContinualTrainer(MLContext mlContext)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        _env = mlContext;
    }

    /// <summary>The name stored in models this trainer makes (e.g. <c>"Ewc"</c>; <c>"Composed"</c> for <see cref="ContinualTrainers.Compose"/>).</summary>
    public abstract string TrainerName { get; }

    /// <summary>A copy of the trainer's options (changing it changes nothing).</summary>
    public ContinualTrainerOptions GetOptions() => CopyOptions();

    /// <summary>The registered names of the trainer's plugins, in order (empty for fine-tuning).</summary>
    public IReadOnlyList<string> PluginNames => CreatePlugins(CopyOptions()).Select(p => p.Name).ToList();

    /// <summary>Set by the experiment runner around the fit of its untrained "row 0" model (a chain ending in this trainer
    /// cannot be given the flag otherwise): the model is built and initialised, no epoch runs.</summary>
    internal bool FitsUntrained { get; set; }

    private protected abstract ContinualTrainerOptions CopyOptions();

    /// <summary>Fresh plugins (no state) for a fit with <paramref name="options"/>.</summary>
    private protected abstract IReadOnlyList<ContinualPlugin> CreatePlugins(ContinualTrainerOptions options);

    /// <summary>Trains a new model on the first task.</summary>
    public ContinualTransformer Fit(IDataView input) => Fit(input, CancellationToken.None);

    /// <summary>Trains a new model on the first task; cancellable.</summary>
    public ContinualTransformer Fit(IDataView input, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(input);
        var options = CopyOptions();
        var state = TrainingLoop.Train(_env, null, TrainerName, options, new PluginList(CreatePlugins(options)), input, cancellationToken, untrained: FitsUntrained);
        return new ContinualTransformer(_env, state);
    }

    /// <summary>
    /// Continues <paramref name="previousModel"/> on the task <paramref name="input"/> with this trainer's options and plugins.
    /// The network (its shape must match these options), label vocabulary and task ids carry over; each plugin that the
    /// previous model also has continues with a copy of its state, a plugin it lacks starts anew, and a plugin only the
    /// previous model has is dropped (continuing is refused where unsound: the architecture family divides the network its
    /// own way). <paramref name="previousModel"/> is not changed. To continue with the options and plugins stored in a model,
    /// use <see cref="ContinualCatalog.Refit(ITransformer, IDataView, CancellationToken)"/> instead.
    /// </summary>
    public ContinualTransformer Fit(IDataView input, ContinualTransformer previousModel, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(previousModel);
        return FitCore(input, previousModel, null, cancellationToken);
    }

    /// <summary>
    /// Trains on <paramref name="input"/>, continuing <paramref name="previousModel"/> when given (as
    /// <see cref="Fit(IDataView, ContinualTransformer, CancellationToken)"/>) or starting a new model, with checkpoints within
    /// the task, progress and statistics reports and the processes that train together as <paramref name="fitOptions"/> says.
    /// </summary>
    public ContinualTransformer Fit(IDataView input, ContinualTransformer? previousModel, ContinualFitOptions fitOptions, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(fitOptions);
        if (previousModel is null)
        {
            var options = CopyOptions();
            return new ContinualTransformer(_env, TrainingLoop.Train(_env, null, TrainerName, options, new PluginList(CreatePlugins(options)), input, cancellationToken, fitOptions, FitsUntrained));
        }
        return FitCore(input, previousModel, fitOptions, cancellationToken);
    }

    private ContinualTransformer FitCore(IDataView input, ContinualTransformer previousModel, ContinualFitOptions? fitOptions, CancellationToken cancellationToken)
    {
        var options = CopyOptions();
        CheckColumnsMatch(previousModel.State.Options, options);
        var plugins = PluginList.Continuing(previousModel.State.Plugins, CreatePlugins(options), previousModel.TrainerName, TrainerName);
        return previousModel.ContinueWith(TrainerName, options, plugins, input, cancellationToken, fitOptions);
    }

    /// <summary>The schema shape the trainer's model produces, after checking the input's columns.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        var options = CopyOptions();
        var features = Find(inputSchema, options.FeatureColumnName, "Feature");
        if (features.ItemType != Data.NumberDataViewType.Single || features.Kind == SchemaShape.Column.VectorKind.VariableVector)
            throw new ContinualDataException(features.Name, $"Feature column '{features.Name}' must be a known-size vector of Single.");
        var label = Find(inputSchema, options.LabelColumnName, "Label");
        if (options.TaskIdColumnName is string taskId) Find(inputSchema, taskId, "Task-id");
        var kind = options.PredictionKind switch
        {
            ContinualPredictionKind.Auto when label.ItemType is Data.BooleanDataViewType => ContinualPredictionKind.Binary,
            ContinualPredictionKind.Auto when label.ItemType == Data.NumberDataViewType.Single || label.ItemType == Data.NumberDataViewType.Double => ContinualPredictionKind.Regression,
            ContinualPredictionKind.Auto => ContinualPredictionKind.Multiclass,
            var k => k,
        };
        var columns = inputSchema.ToDictionary(c => c.Name);
        var single = Data.NumberDataViewType.Single;
        switch (kind)
        {
            case ContinualPredictionKind.Multiclass:
                columns["Score"] = new SchemaShape.Column("Score", SchemaShape.Column.VectorKind.Vector, single, false);
                columns["PredictedLabel"] = new SchemaShape.Column("PredictedLabel", SchemaShape.Column.VectorKind.Scalar, label.ItemType, label.IsKey);
                break;
            case ContinualPredictionKind.Binary:
                columns["Score"] = new SchemaShape.Column("Score", SchemaShape.Column.VectorKind.Scalar, single, false);
                columns["Probability"] = new SchemaShape.Column("Probability", SchemaShape.Column.VectorKind.Scalar, single, false);
                columns["PredictedLabel"] = new SchemaShape.Column("PredictedLabel", SchemaShape.Column.VectorKind.Scalar, Data.BooleanDataViewType.Instance, false);
                break;
            default:
                columns["Score"] = new SchemaShape.Column("Score", SchemaShape.Column.VectorKind.Scalar, single, false);
                break;
        }
        return new SchemaShape(columns.Values);
    }

    private static SchemaShape.Column Find(SchemaShape schema, string name, string role) =>
        schema.TryFindColumn(name, out var column) ? column
            : throw new ContinualDataException(name, $"{role} column '{name}' was not found; the input has: {string.Join(", ", schema.Select(c => c.Name))}.");

    private static void CheckColumnsMatch(ContinualTrainerOptions stored, ContinualTrainerOptions given)
    {
        var differences = new List<string>();
        if (stored.LabelColumnName != given.LabelColumnName) differences.Add($"LabelColumnName '{stored.LabelColumnName}' vs '{given.LabelColumnName}'");
        if (stored.FeatureColumnName != given.FeatureColumnName) differences.Add($"FeatureColumnName '{stored.FeatureColumnName}' vs '{given.FeatureColumnName}'");
        if (stored.TaskIdColumnName != given.TaskIdColumnName) differences.Add($"TaskIdColumnName '{stored.TaskIdColumnName}' vs '{given.TaskIdColumnName}'");
        if (differences.Count > 0)
            throw new ArgumentException($"The options name other columns than the previous model's: {string.Join("; ", differences)} (model vs options).", "options");
    }
}

/// <summary>
/// The base of the built-in trainers: the options <typeparamref name="TOptions"/>, from which the trainer's plugins are
/// made (e.g. <see cref="EwcTrainer"/>'s options make one <see cref="EwcPlugin"/>).
/// </summary>
/// <typeparam name="TOptions">The trainer's options.</typeparam>
public abstract class ContinualTrainerBase<TOptions> : ContinualTrainer
    where TOptions : ContinualTrainerOptions, new()
{
    private readonly TOptions _options;

    private protected ContinualTrainerBase(MLContext mlContext, TOptions options) : base(mlContext)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options.CloneAs<TOptions>(); // frozen: later changes to the caller's object do nothing
        _options.Validate();
        foreach (var plugin in CreatePlugins(_options)) plugin.Validate(); // the method's own settings (e.g. EWC's Gamma)
    }

    private protected override ContinualTrainerOptions CopyOptions() => _options.CloneAs<TOptions>();

    private protected override IReadOnlyList<ContinualPlugin> CreatePlugins(ContinualTrainerOptions options) => TrainerRegistry.Get(TrainerName).CreatePlugins(options);
}
