using Microsoft.ML.Runtime;

namespace Microsoft.ML.Continual;

/// <summary>
/// The base of every continual trainer: an ordinary ML.NET estimator whose <see cref="Fit(IDataView)"/> trains a
/// first task, and whose <see cref="Fit(IDataView, ContinualTransformer, CancellationToken)"/> continues a previous model
/// on the next task (warm start, as ML.NET's own <c>Fit(data, modelParameters)</c>).
/// </summary>
/// <typeparam name="TOptions">The trainer's options.</typeparam>
public abstract class ContinualTrainerBase<TOptions> : IEstimator<ContinualTransformer>, IContinualTrainer
    where TOptions : ContinualTrainerOptions, new()
{
    string IContinualTrainer.TrainerName => Name;

    ITransformer IContinualTrainer.Fit(IDataView data, CancellationToken cancellationToken) => Fit(data, cancellationToken);

    private readonly IHostEnvironment _env;
    private readonly TOptions _options;

    private protected ContinualTrainerBase(MLContext mlContext, TOptions options)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentNullException.ThrowIfNull(options);
        _env = mlContext;
        _options = options.CloneAs<TOptions>(); // frozen: later changes to the caller's object do nothing
        _options.Validate();
    }

    /// <summary>The name stored in models this trainer makes; refits look the trainer up by it.</summary>
    private protected abstract string Name { get; }

    /// <summary>A new strategy for these options, made by the trainer registry (the same factory loading uses).</summary>
    private ContinualStrategy CreateStrategy(TOptions options) => TrainerRegistry.Get(Name).CreateStrategy(options);

    /// <summary>Trains a new model on the first task.</summary>
    public ContinualTransformer Fit(IDataView input) => Fit(input, CancellationToken.None);

    /// <summary>Trains a new model on the first task; cancellable.</summary>
    public ContinualTransformer Fit(IDataView input, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(input);
        var options = _options.CloneAs<TOptions>();
        var state = TrainingLoop.Train(_env, null, Name, options, CreateStrategy(options), input, cancellationToken);
        return new ContinualTransformer(_env, state);
    }

    /// <summary>
    /// Continues <paramref name="previousModel"/> on the task <paramref name="input"/> with this trainer's options.
    /// The network (its shape must match these options), label vocabulary and task ids carry over; the strategy's
    /// state carries over when <paramref name="previousModel"/> was made by this same trainer, and starts anew
    /// otherwise. <paramref name="previousModel"/> is not changed. To continue with the options stored in a model,
    /// use <see cref="ContinualCatalog.Refit(ITransformer, IDataView, CancellationToken)"/> instead.
    /// </summary>
    public ContinualTransformer Fit(IDataView input, ContinualTransformer previousModel, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(previousModel);
        var options = _options.CloneAs<TOptions>();
        CheckColumnsMatch(previousModel.State.Options, options);
        ContinualStrategy strategy = previousModel.TrainerName == Name
            ? previousModel.CopyStrategy(TrainerRegistry.Get(Name), options)
            : CreateStrategy(options);
        return previousModel.ContinueWith(Name, options, strategy, input, cancellationToken);
    }

    /// <summary>
    /// Trains on <paramref name="input"/>, continuing <paramref name="previousModel"/> when given (as
    /// <see cref="Fit(IDataView, ContinualTransformer, CancellationToken)"/>) or starting a new model, with checkpoints within
    /// the task and progress reports as <paramref name="fitOptions"/> says.
    /// </summary>
    public ContinualTransformer Fit(IDataView input, ContinualTransformer? previousModel, ContinualFitOptions fitOptions, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(fitOptions);
        var options = _options.CloneAs<TOptions>();
        if (previousModel is null)
            return new ContinualTransformer(_env, TrainingLoop.Train(_env, null, Name, options, CreateStrategy(options), input, cancellationToken, fitOptions));
        CheckColumnsMatch(previousModel.State.Options, options);
        ContinualStrategy strategy = previousModel.TrainerName == Name
            ? previousModel.CopyStrategy(TrainerRegistry.Get(Name), options)
            : CreateStrategy(options);
        return previousModel.ContinueWith(Name, options, strategy, input, cancellationToken, fitOptions);
    }

    /// <summary>The schema shape the trainer's model produces, after checking the input's columns.</summary>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        var features = Find(inputSchema, _options.FeatureColumnName, "Feature");
        if (features.ItemType != Data.NumberDataViewType.Single || features.Kind == SchemaShape.Column.VectorKind.VariableVector)
            throw new ContinualDataException(features.Name, $"Feature column '{features.Name}' must be a known-size vector of Single.");
        var label = Find(inputSchema, _options.LabelColumnName, "Label");
        if (_options.TaskIdColumnName is string taskId) Find(inputSchema, taskId, "Task-id");
        var kind = _options.PredictionKind switch
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

/// <summary>What the experiment runner needs of any continual trainer, whatever its options type.</summary>
internal interface IContinualTrainer
{
    string TrainerName { get; }

    ITransformer Fit(IDataView data, CancellationToken cancellationToken);
}
