using Microsoft.ML.Data;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Continual.Trees;

/// <summary>
/// Gradient-boosted trees for refits on business tables: each task trains on its own rows together with a replayed uniform
/// sample of every earlier task's rows, either as a new ensemble (<see cref="ContinualBoostingMode.RetrainOnMemory"/>, the
/// default) or as boosting rounds added to the earlier trees (<see cref="ContinualBoostingMode.AddRounds"/>). Binary
/// classification (a <see cref="bool"/> label) and regression (a <see cref="float"/> label), on LightGBM (the native library
/// ML.NET's own LightGBM trainer uses). Reached through <c>mlContext.Continual().Trainers.LightGbm(options)</c>; refit with
/// <c>mlContext.Continual().Refit</c>.
/// </summary>
/// <remarks>
/// <para>
/// Where trees are the better learner (tables of numeric and categorical columns), this is the continual trainer to try
/// first. The memory is a reservoir over every row seen (Vitter 1985, "Random Sampling with a Reservoir", algorithm R): after
/// n rows, each is kept with probability min(1, M/n), so the memory is a uniform sample of the history, bounded by
/// <see cref="Options.MemorySize"/> rows, and it travels in the model zip.
/// </para>
/// <para>
/// <see cref="ContinualBoostingMode.RetrainOnMemory"/>: task t's model is a new ensemble fitted to the task's rows and the
/// memory, the replay idea of experience replay (Chaudhry et al. 2019, "On Tiny Episodic Memories in Continual Learning") and
/// of GDumb (Prabhu et al. 2020), which retrains its learner from scratch on its memory. The new task weighs more than any
/// earlier one (all its rows against a sample of theirs), which is what predicting the next period wants; model size and
/// refit time stay flat once the memory is full.
/// </para>
/// <para>
/// <see cref="ContinualBoostingMode.AddRounds"/>: boosting is additive, F_t(x) = F_{t-1}(x) + Σ_{m=1}^{M_t} η·f_{t,m}(x)
/// (Friedman 2001, "Greedy Function Approximation: A Gradient Boosting Machine", algorithm 1): the rounds of task t are fitted
/// to the gradients of the loss at F_{t-1} on the task and the memory (LightGBM's continued training: the earlier model's raw
/// scores as initial scores, its trees merged in front). The earlier trees are kept, never refitted, so more of each earlier
/// task's specifics survive (better backward transfer), but the model and the refit time grow with the trees.
/// </para>
/// <para>
/// Each task's rounds stop early on a random 10% of the task's rows (scored with every tree of the model), and the rounds after
/// the best are dropped. A refit in a fresh process after load equals the refit in the process that trained the model.
/// The defaults were chosen on the two tables of docs/benchmarks.md ("Business tables"): the memory size and rounds on the
/// flights table, the fewest rows per leaf on the bird-strikes table, each then checked on the other.
/// </para>
/// </remarks>
public sealed class ContinualLightGbmTrainer : IEstimator<ContinualLightGbmTransformer>
{
    private readonly IHostEnvironment _env;
    private readonly Options _options;

    internal ContinualLightGbmTrainer(MLContext mlContext, Options options)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _env = mlContext;
        _options = options.Copy();
        _options.Seed ??= (mlContext is IHostEnvironmentInternal internalEnv ? internalEnv.Seed : null) ?? 0;
        // Stored resolved: LightGBM's histogram sums depend on the thread count, so a refit on a machine with other cores
        // continues with the same count and gives the same trees.
        _options.NumberOfThreads ??= Environment.ProcessorCount;
    }

    /// <summary>The name stored in models this trainer makes.</summary>
    public const string TrainerName = "LightGbm";

    /// <summary>A copy of the trainer's options.</summary>
    public Options GetOptions() => _options.Copy();

    /// <summary>Trains boosted trees on the first task.</summary>
    public ContinualLightGbmTransformer Fit(IDataView input) => Fit(input, CancellationToken.None);

    /// <summary>Trains boosted trees on the first task; cancellable between boosting rounds.</summary>
    public ContinualLightGbmTransformer Fit(IDataView input, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(input);
        return new ContinualLightGbmTransformer(_env, BoostedTreesTraining.Train(null, _options.Copy(), input, cancellationToken));
    }

    /// <summary>Continues <paramref name="previousModel"/> on <paramref name="input"/> with this trainer's options (its trees and
    /// memory carry over; the feature size and prediction kind must match). <paramref name="previousModel"/> is not changed.</summary>
    public ContinualLightGbmTransformer Fit(IDataView input, ContinualLightGbmTransformer previousModel, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(input);
        ArgumentNullException.ThrowIfNull(previousModel);
        return new ContinualLightGbmTransformer(_env, BoostedTreesTraining.Train(previousModel.State, _options.Copy(), input, cancellationToken));
    }

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        SchemaShape.Column Find(string name, string role) => inputSchema.FirstOrDefault(c => c.Name == name) is { Name: not null } column ? column
            : throw new ContinualDataException(name, $"{role} column '{name}' was not found; the data has: {string.Join(", ", inputSchema.Select(c => c.Name))}.");
        var features = Find(_options.FeatureColumnName, "Feature");
        if (features.ItemType != NumberDataViewType.Single || features.Kind == SchemaShape.Column.VectorKind.VariableVector)
            throw new ContinualDataException(features.Name, $"Feature column '{features.Name}' must be a known-size vector of Single.");
        var label = Find(_options.LabelColumnName, "Label");
        var kind = BoostedTreesTraining.KindOf(label.ItemType, label.Name);
        var columns = inputSchema.ToDictionary(c => c.Name);
        var single = NumberDataViewType.Single;
        columns["Score"] = new SchemaShape.Column("Score", SchemaShape.Column.VectorKind.Scalar, single, false);
        if (kind == ContinualPredictionKind.Binary)
        {
            columns["Probability"] = new SchemaShape.Column("Probability", SchemaShape.Column.VectorKind.Scalar, single, false);
            columns["PredictedLabel"] = new SchemaShape.Column("PredictedLabel", SchemaShape.Column.VectorKind.Scalar, BooleanDataViewType.Instance, false);
        }
        return new SchemaShape(columns.Values);
    }

    /// <summary>Options of <see cref="ContinualLightGbmTrainer"/> (how the defaults were chosen: see the trainer's remarks).</summary>
    public sealed class Options
    {
        /// <summary>The label: <see cref="bool"/> for binary classification, <see cref="float"/> for regression.</summary>
        public string LabelColumnName { get; set; } = "Label";

        /// <summary>The features: a known-size vector of <see cref="float"/> (e.g. from <c>mlContext.Continual().Featurize</c>).</summary>
        public string FeatureColumnName { get; set; } = "Features";

        /// <summary>How a task continues the model: a new ensemble on the task and the memory (the default), or rounds added
        /// to the earlier trees.</summary>
        public ContinualBoostingMode Mode { get; set; } = ContinualBoostingMode.RetrainOnMemory;

        /// <summary>The most boosting rounds (trees) a task trains; early stopping may stop sooner.</summary>
        public int NumberOfIterations { get; set; } = 200;

        /// <summary>The shrinkage η of every tree.</summary>
        public double LearningRate { get; set; } = 0.1;

        /// <summary>The most leaves of a tree.</summary>
        public int NumberOfLeaves { get; set; } = 31;

        /// <summary>The fewest rows in a leaf.</summary>
        public int MinimumExampleCountPerLeaf { get; set; } = 100;

        /// <summary>Rows kept from earlier tasks (a uniform sample of all rows seen) and replayed with each new task; 0 keeps none.
        /// Fixed for a model's life: a refit with another size is refused.</summary>
        public int MemorySize { get; set; } = 100_000;

        /// <summary>Rows of each fit's data the model keeps (a uniform sample of the raw features, in the zip) for
        /// <c>DetectShift(model, newData)</c> and the tool's <c>drift</c> verb, as the network models keep theirs. Default
        /// 500, at most 2,000; 0 keeps none. Sampled while the task is read: no second pass over the data.</summary>
        public int ShiftReferenceRows { get; set; } = 500;

        /// <summary>The most rows of a task the trees train on; null (the default): every row, read into memory. Set, the task
        /// streams: the trees train on a uniform sample of that many of its rows (kept in the task's order), the replay memory
        /// still sees every row, and memory stays bounded whatever the task's size (LightGBM holds a whole dataset in memory,
        /// so a task larger than memory needs this). A task no larger than the limit trains exactly as without it.</summary>
        public int? MaximumRowsPerPeriod { get; set; }

        /// <summary>The fraction of each task's rows held out to stop its rounds early; 0 turns early stopping off.</summary>
        public double ValidationFraction { get; set; } = 0.1;

        /// <summary>Rounds without a better validation loss before a task's boosting stops.</summary>
        public int EarlyStoppingRounds { get; set; } = 20;

        /// <summary>Categorical columns encoded in the last slots of the features as <see cref="BitsPerCategorical"/> 0/1 slots
        /// each (most significant bit first, as <see cref="ContinualFeaturizer"/>'s hashed buckets are): each group is decoded to
        /// its bucket and given to LightGBM as one categorical feature (splits on sets of categories, Fisher 1958, as LightGBM
        /// does). 0: every slot is a number. <see cref="ContinualFeaturization.Configure(Options)"/> sets both.</summary>
        public int BinaryCodedCategoricals { get; set; }

        /// <summary>The slots of each binary-coded categorical column (at most 24).</summary>
        public int BitsPerCategorical { get; set; } = 12;

        /// <summary>LightGBM's threads; null uses every core of the machine that trains first, and that count is stored in the
        /// model (its trees depend on it), so refits elsewhere use the same.</summary>
        public int? NumberOfThreads { get; set; }

        /// <summary>The seed of the memory's sample, the validation slice and LightGBM; null takes the MLContext's seed.</summary>
        public int? Seed { get; set; }

        internal Options Copy() => (Options)MemberwiseClone();

        internal void Validate()
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(LabelColumnName, nameof(LabelColumnName));
            ArgumentException.ThrowIfNullOrWhiteSpace(FeatureColumnName, nameof(FeatureColumnName));
            if (!Enum.IsDefined(Mode)) throw new ArgumentOutOfRangeException(nameof(Mode), Mode, "Unknown mode.");
            if (NumberOfIterations < 1 || NumberOfIterations > 100_000) throw new ArgumentOutOfRangeException(nameof(NumberOfIterations), NumberOfIterations, "Must be 1 to 100,000.");
            if (!(LearningRate > 0 && LearningRate <= 1)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "Must be in (0, 1].");
            if (NumberOfLeaves < 2 || NumberOfLeaves > 131_072) throw new ArgumentOutOfRangeException(nameof(NumberOfLeaves), NumberOfLeaves, "Must be 2 to 131,072.");
            if (MinimumExampleCountPerLeaf < 1) throw new ArgumentOutOfRangeException(nameof(MinimumExampleCountPerLeaf), MinimumExampleCountPerLeaf, "Must be at least 1.");
            if (MemorySize < 0 || MemorySize > 100_000_000) throw new ArgumentOutOfRangeException(nameof(MemorySize), MemorySize, "Must be 0 to 100,000,000.");
            if (ShiftReferenceRows < 0 || ShiftReferenceRows > ShiftDetectionOptions.MaxRowsLimit) throw new ArgumentOutOfRangeException(nameof(ShiftReferenceRows), ShiftReferenceRows, "Must be 0 to 2,000.");
            if (!(ValidationFraction >= 0 && ValidationFraction < 0.5)) throw new ArgumentOutOfRangeException(nameof(ValidationFraction), ValidationFraction, "Must be in [0, 0.5).");
            if (EarlyStoppingRounds < 1) throw new ArgumentOutOfRangeException(nameof(EarlyStoppingRounds), EarlyStoppingRounds, "Must be at least 1.");
            if (BinaryCodedCategoricals < 0 || BinaryCodedCategoricals > 100_000) throw new ArgumentOutOfRangeException(nameof(BinaryCodedCategoricals), BinaryCodedCategoricals, "Must be 0 to 100,000.");
            if (BitsPerCategorical is < 1 or > 24) throw new ArgumentOutOfRangeException(nameof(BitsPerCategorical), BitsPerCategorical, "Must be 1 to 24 (a bucket must be exact in a float).");
            if (MaximumRowsPerPeriod is < 100) throw new ArgumentOutOfRangeException(nameof(MaximumRowsPerPeriod), MaximumRowsPerPeriod, "Must be at least 100, or null.");
            if (NumberOfThreads is < 1 or > 1024) throw new ArgumentOutOfRangeException(nameof(NumberOfThreads), NumberOfThreads, "Must be 1 to 1,024, or null.");
        }

        /// <summary>The options as name/value text, as every model stores its options (<see cref="Settings"/>).</summary>
        internal IReadOnlyList<KeyValuePair<string, string>> ToPairs() => Settings.ToPairs(this);

        /// <summary>Options read back from a model: missing names keep their defaults, unknown ones (a newer writer) are ignored.</summary>
        internal static Options FromStoredPairs(IEnumerable<KeyValuePair<string, string>> pairs)
        {
            var options = new Options();
            Settings.FromStoredPairs(options, pairs);
            return options;
        }
    }
}

/// <summary>How <see cref="ContinualLightGbmTrainer"/> continues a model on a new task.</summary>
public enum ContinualBoostingMode
{
    /// <summary>A new ensemble trained on the task's rows and the replayed memory (a uniform sample of every earlier row):
    /// size and refit time stay flat; what the model knows of the past is what the memory holds (as GDumb, Prabhu et al. 2020,
    /// retrains its learner on its memory, here with the new task's rows added).</summary>
    RetrainOnMemory,

    /// <summary>Boosting rounds added to the earlier trees, fitted to the gradients at the earlier model's scores on the task
    /// and the memory (LightGBM's continued training): keeps more of each earlier task's specifics (better backward transfer),
    /// but the model and the refit time grow with every task's trees.</summary>
    AddRounds,
}
