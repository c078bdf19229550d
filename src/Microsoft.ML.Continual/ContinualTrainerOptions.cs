namespace Microsoft.ML.Continual;

/// <summary>What a continual model predicts; decides the output columns and the loss.</summary>
public enum ContinualPredictionKind
{
    /// <summary>Chosen from the label's type at the first fit: <see cref="bool"/> gives <see cref="Binary"/>,
    /// <see cref="float"/> and <see cref="double"/> give <see cref="Regression"/>, key, text and integer labels give <see cref="Multiclass"/>.</summary>
    Auto,
    /// <summary>Columns <c>Score</c> (vector of class probabilities) and <c>PredictedLabel</c> (in the label's type); cross-entropy loss.</summary>
    Multiclass,
    /// <summary>Columns <c>Score</c> (logit), <c>Probability</c> and <c>PredictedLabel</c> (<see cref="bool"/>); logistic loss.</summary>
    Binary,
    /// <summary>Column <c>Score</c>; squared loss.</summary>
    Regression,
}

/// <summary>Activation between the hidden layers of the network.</summary>
public enum ContinualActivation
{
    /// <summary>max(0, x).</summary>
    ReLU,
    /// <summary>tanh(x).</summary>
    Tanh,
    /// <summary>1 / (1 + e^-x).</summary>
    Sigmoid,
    /// <summary>Gaussian error linear unit.</summary>
    Gelu,
}

/// <summary>The optimizer used within each task.</summary>
public enum ContinualOptimizer
{
    /// <summary>Adam (Kingma and Ba, 2015) with the default betas (0.9, 0.999).</summary>
    Adam,
    /// <summary>Plain stochastic gradient descent.</summary>
    Sgd,
    /// <summary>Stochastic gradient descent with momentum <see cref="ContinualTrainerOptions.Momentum"/>.</summary>
    SgdMomentum,
}

/// <summary>
/// Options shared by every continual trainer: the columns, the network and the optimisation.
/// </summary>
/// <remarks>
/// The options are copied when the estimator is created and frozen into the model at the first fit:
/// <see cref="ContinualCatalog.Refit(ITransformer, IDataView, CancellationToken)"/> and <c>Fit(task, previousModel)</c> continue with the options stored in
/// the model, so a refit months later trains exactly as the first fit did. Changing an options object after it
/// was given to a trainer has no effect on that trainer.
/// </remarks>
public abstract class ContinualTrainerOptions
{
    /// <summary>The label column. Default <c>"Label"</c>. Key, text, integer and Boolean labels are accepted
    /// for classification, <see cref="float"/> and <see cref="double"/> for regression.</summary>
    public string LabelColumnName { get; set; } = "Label";

    /// <summary>The feature column: a known-size vector of <see cref="float"/> (or a single <see cref="float"/>).
    /// Default <c>"Features"</c>.</summary>
    public string FeatureColumnName { get; set; } = "Features";

    /// <summary>An optional task-identity column (text, key or integer). With it the model keeps one output
    /// head per task (task-incremental learning) and needs the column at prediction time too; without it
    /// (the default, <c>null</c>) all tasks share one head (domain- and class-incremental learning).</summary>
    public string? TaskIdColumnName { get; set; }

    /// <summary>What the model predicts. Default <see cref="ContinualPredictionKind.Auto"/> (from the label's type).</summary>
    public ContinualPredictionKind PredictionKind { get; set; } = ContinualPredictionKind.Auto;

    /// <summary>Sizes of the hidden layers of the multilayer perceptron. Default <c>[100, 100]</c>.</summary>
    public int[] HiddenLayerSizes { get; set; } = [100, 100];

    /// <summary>Activation after each hidden layer. Default <see cref="ContinualActivation.ReLU"/>.</summary>
    public ContinualActivation Activation { get; set; } = ContinualActivation.ReLU;

    /// <summary>Dropout probability after each hidden activation, in [0, 1). Default 0.</summary>
    public float Dropout { get; set; }

    /// <summary>The optimizer, created anew at the start of each task. Default <see cref="ContinualOptimizer.Adam"/>.</summary>
    public ContinualOptimizer Optimizer { get; set; } = ContinualOptimizer.Adam;

    /// <summary>Learning rate. Default 0.001.</summary>
    public double LearningRate { get; set; } = 1e-3;

    /// <summary>Momentum for <see cref="ContinualOptimizer.SgdMomentum"/>. Default 0.9.</summary>
    public double Momentum { get; set; } = 0.9;

    /// <summary>L2 weight decay applied by the optimizer. Default 0.</summary>
    public double WeightDecay { get; set; }

    /// <summary>Examples per minibatch. Default 128.</summary>
    public int BatchSize { get; set; } = 128;

    /// <summary>Passes over each task's data. Default 5.</summary>
    public int NumberOfEpochs { get; set; } = 5;

    /// <summary>Seed for the initial weights, the shuffling and dropout. Default <c>null</c>: the
    /// <see cref="MLContext"/>'s seed when it has one, else 0. The same seed and
    /// <see cref="NumberOfThreads"/> give bit-identical models.</summary>
    public int? Seed { get; set; }

    /// <summary>Intra-op threads for TorchSharp. This setting is process-wide in libtorch, so it is applied only
    /// when set. Default <c>null</c> (leave libtorch's setting alone).</summary>
    public int? NumberOfThreads { get; set; }

    /// <summary>A bound, in megabytes, on the memory the trainer uses for a task's rows. Default <c>null</c>: every task is
    /// read once into memory (rows × features × 4 bytes, the fastest path).</summary>
    /// <remarks>When set, a task larger than the budget (or whose row count the data view does not report) is not held in
    /// memory: one pass reads the classes, task ids and a uniform sample of rows (an eighth of the budget: the rows the
    /// methods' consolidation steps see, e.g. EWC's Fisher samples or a replay memory's candidates), and every epoch reads
    /// the data view again through a shuffle buffer of 3/8 of the budget; the other half is left for the data view's own
    /// allocations and the runtime's (the .NET garbage collector's gen-0 budget alone is about 90 MB with default settings,
    /// so budgets below about 200 MB bound the trainer's rows, not the process). The data view is read once per epoch plus once,
    /// so it should be cheap to read again (a file, a database query, a generated view). The joint baseline, which keeps
    /// every row, refuses such a task.</remarks>
    /// <example><code source="../../src/Samples/LargeTaskSample.cs" /></example>
    public int? MemoryBudgetMegabytes { get; set; }

    /// <summary>The TorchSharp device, e.g. <c>"cpu"</c> or <c>"cuda:0"</c>. Default <c>"cpu"</c>. CUDA needs the
    /// CUDA build of libtorch in place of <c>libtorch-cpu-linux-x64</c>; see the README.</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>The share of each task's rows held out to stop training early, in [0, 0.5]: after every epoch the held-out
    /// rows' loss is computed, training stops when <see cref="EarlyStoppingPatience"/> epochs in a row did not improve it,
    /// and the best epoch's weights are kept (<see cref="EarlyStoppingPlugin"/>). Default 0: off, every epoch runs on all rows.</summary>
    public double ValidationFraction { get; set; }

    /// <summary>Epochs without improvement of the validation loss before training stops (with <see cref="ValidationFraction"/>). Default 2.</summary>
    public int EarlyStoppingPatience { get; set; } = 2;

    /// <summary>The learning rate within each task: constant (default) or cosine decay over <see cref="NumberOfEpochs"/> (<see cref="LearningRateSchedulePlugin"/>).</summary>
    public LearningRateSchedule LearningRateSchedule { get; set; } = LearningRateSchedule.Constant;

    /// <summary>The network under the heads; null (default): a multilayer perceptron of <see cref="HiddenLayerSizes"/>,
    /// <see cref="Activation"/> and <see cref="Dropout"/> (which apply only to it). <see cref="ConvBackbone"/> is a small
    /// convolutional network for image-shaped rows; a registered <see cref="ContinualBackbone"/> of your own plugs in any
    /// TorchSharp module. The architecture family (PackNet, CPG, progressive networks) needs the perceptron.</summary>
    /// <example><code source="../../src/Samples/BackboneSample.cs" /></example>
    public ContinualBackbone? Backbone { get; set; }

    /// <summary>Whether each epoch visits the rows in a new random order (default true). False: the rows are trained in the
    /// data view's order, in consecutive batches of <see cref="BatchSize"/>: for streams whose order is the point, such as a
    /// task-free stream that drifts (MNIST-360) or rows that arrive in time order, trained in one pass.</summary>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public bool ShuffleRows { get; set; } = true;

    /// <summary>Where the methods consolidate (estimate importances, snapshot anchors): at the end of each fit, one fit
    /// being one task (<see cref="ContinualBoundaries.Given"/>, default), or also every <see cref="BoundaryEverySteps"/>
    /// optimizer steps inside a fit (<see cref="ContinualBoundaries.EverySteps"/>: task-free streams, where no one says
    /// where a task ends; van de Ven et al.'s <c>--update-every</c>), or where the task loss reaches a plateau after a
    /// peak (<see cref="ContinualBoundaries.OnLossPlateau"/>, Aljundi et al. 2019), or where the inputs shift
    /// (<see cref="ContinualBoundaries.OnInputShift"/>). Accumulating importances (SI, MAS,
    /// online EWC with Gamma 1, SCP) sum one estimate per consolidation, so consolidating more often holds the past more
    /// strongly. Plugins that cannot consolidate inside a fit (the
    /// architecture family, which divides the network by task id) refuse the fit with the reason.</summary>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public ContinualBoundaries Boundaries { get; set; } = ContinualBoundaries.Given;

    /// <summary>With <see cref="Boundaries"/> = <see cref="ContinualBoundaries.EverySteps"/>: optimizer steps between two
    /// consolidations (default 100). The consolidation estimates from a uniform sample of up to
    /// <see cref="BoundarySampleRows"/> rows of the steps since the one before. The default was not tuned: it is about one
    /// pair's worth of steps on Split MNIST (87 at batch 128, measured in docs/benchmarks.md); set it near the number of
    /// steps over which your stream changes.</summary>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public int BoundaryEverySteps { get; set; } = 100;

    /// <summary>With <see cref="Boundaries"/> = <see cref="ContinualBoundaries.OnLossPlateau"/>: the steps whose task
    /// losses (each step's, before its update) form the window the plateau is read from. Default 5 (Aljundi et al. 2019).</summary>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public int BoundaryLossWindow { get; set; } = 5;

    /// <summary>With <see cref="ContinualBoundaries.OnLossPlateau"/>: the window's mean task loss must be below this for a
    /// plateau. Default 0.2 (the authors' code). It is on the loss's own scale (cross-entropy here): raise it for a
    /// harder stream whose loss never gets that low, or no boundary is found.</summary>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public double BoundaryLossMean { get; set; } = 0.2;

    /// <summary>With <see cref="ContinualBoundaries.OnLossPlateau"/>: the window's loss variance must be below this for a
    /// plateau. Default 0.1 (the authors' code).</summary>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public double BoundaryLossVariance { get; set; } = 0.1;

    /// <summary>With <see cref="Boundaries"/> = <see cref="ContinualBoundaries.OnInputShift"/>: the rows of each tested block,
    /// and the most rows of the sample it is compared with. Default 512 (4 batches of 128), not tuned: measured on the
    /// fuzzy Split MNIST stream only (docs/benchmarks.md). Fewer rows test more often with less power. At most 2,000 (a test's kernel matrix has (2 × rows)² entries).</summary>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public int BoundaryShiftRows { get; set; } = 512;

    /// <summary>With <see cref="ContinualBoundaries.OnInputShift"/>: the level of each block's test, in [0.0001, 0.5]
    /// (default 0.01; the test uses ⌈2/α⌉ − 1 permutations, at least 99). A stream with no shift still gets about α boundaries per block.</summary>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public double BoundaryShiftAlpha { get; set; } = 0.01;

    /// <summary>With boundaries inside a fit: whether each boundary starts
    /// the optimizer anew (its moments and step count), as a new fit does at a given boundary. Default false: the
    /// optimizer goes on across boundaries; true in <see cref="ScpTrainer.Options"/> and <see cref="AGemTrainer.Options"/>,
    /// whose penalty or constraint at a boundary the moments from before it have not seen (a composition of their plugins
    /// keeps false unless set).</summary>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public bool BoundaryResetsOptimizer { get; set; }

    /// <summary>The most rows kept of the steps since the last boundary, for the next consolidation's estimates (a
    /// reservoir: a uniform sample, memory bounded whatever <see cref="BoundaryEverySteps"/> is). Default 1,000, the
    /// number of rows EWC's and MAS's importance estimates sample by default.</summary>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public int BoundarySampleRows { get; set; } = 1000;

    /// <summary>Whether each fit continues one pass over a single stream where the previous fit stopped, so that many
    /// small refits on consecutive slices (a batch job every hour) train exactly as one fit over the whole stream would,
    /// to the bit. Needs boundaries inside fits (<see cref="Boundaries"/> not Given: with given boundaries each fit is a
    /// task), one epoch and <see cref="ShuffleRows"/> false. The model then carries, besides its network and plugin
    /// state: the optimizer's state, the step count, the sample of rows since the last boundary and the boundary
    /// detector, the fit's generator, the plugins' in-task progress, and the rows of the last slice short of a batch
    /// (they are trained first by the next fit, never as a short batch). A fit's end is not a boundary. Default false.</summary>
    /// <remarks>Bit-identity with one pass also needs the network's shape fixed from the first fit: give the label as a key
    /// of known count (ML.NET's <c>MapValueToKey</c> over the whole vocabulary). When a new class widens the head, the
    /// optimizer starts anew at that fit, with a warning.</remarks>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public bool ContinueAcrossFits { get; set; }

    /// <summary>Rows of each fit's data the model keeps as the reference of
    /// <see cref="ContinualCatalog.DetectShift(ITransformer, IDataView, ShiftDetectionOptions?)"/> (a uniform sample of the
    /// latest fit's rows, as the network sees them: the feature vector; replaced by every refit). Default 500, at most
    /// 2,000; 0 keeps no rows (the model then cannot detect shifts). The model zip then holds up to this many rows of
    /// feature values (500 rows of 784 features: 1.6 MB before compression): set 0 where no training rows may be kept.</summary>
    /// <example><code source="../../src/Samples/DriftSample.cs" /></example>
    public int ShiftReferenceRows { get; set; } = 500;

    /// <summary>Writes every public settable option as invariant text (the model zip stores options this way, so a
    /// later version can read them and give new options their defaults).</summary>
    internal IReadOnlyList<KeyValuePair<string, string>> ToPairs() => Settings.ToPairs(this);

    /// <summary>Reads options written by <see cref="ToPairs"/>; unknown names are ignored (a newer writer), missing
    /// names keep their defaults (an older writer).</summary>
    internal static TOptions FromPairs<TOptions>(IEnumerable<KeyValuePair<string, string>> pairs) where TOptions : ContinualTrainerOptions, new()
    {
        var options = new TOptions();
        Settings.FromStoredPairs(options, pairs);
        return options;
    }

    /// <summary>Reads options a user wrote as name=value text (e.g. on a command line): names match any case, an unknown
    /// name or a value of the wrong type is an <see cref="ArgumentException"/> that lists the valid names or says the type.</summary>
    internal static TOptions FromUserPairs<TOptions>(IEnumerable<KeyValuePair<string, string>> pairs) where TOptions : ContinualTrainerOptions, new()
    {
        var options = new TOptions();
        Settings.FromUserPairs(options, pairs, "this trainer");
        options.Validate();
        return options;
    }

    internal TOptions CloneAs<TOptions>() where TOptions : ContinualTrainerOptions, new() => FromPairs<TOptions>(ToPairs());

    /// <summary>The plugins these shared options add to every trainer's own: early stopping first (it holds out rows and
    /// restores the best weights before the method consolidates), the learning-rate schedule last.</summary>
    internal IReadOnlyList<ContinualPlugin> WithSharedPlugins(IReadOnlyList<ContinualPlugin> methodPlugins)
    {
        if (ValidationFraction == 0 && LearningRateSchedule == LearningRateSchedule.Constant) return methodPlugins;
        var list = new List<ContinualPlugin>();
        if (ValidationFraction > 0) list.Add(new EarlyStoppingPlugin { ValidationFraction = ValidationFraction, Patience = EarlyStoppingPatience });
        list.AddRange(methodPlugins);
        if (LearningRateSchedule != LearningRateSchedule.Constant) list.Add(new LearningRateSchedulePlugin { Schedule = LearningRateSchedule });
        return list;
    }

    private static readonly System.Text.RegularExpressions.Regex DevicePattern = new("^(cpu|cuda|mps)(:[0-9]{1,3})?$");

    /// <summary>Checks every option, naming the first one that is out of range (also for options read from a model file).</summary>
    internal virtual void Validate()
    {
        static void Check(bool ok, string name, string expected)
        {
            if (!ok) throw new ArgumentOutOfRangeException(name, $"Option {name} must be {expected}.");
        }
        Check(!string.IsNullOrWhiteSpace(LabelColumnName), nameof(LabelColumnName), "a column name");
        Check(!string.IsNullOrWhiteSpace(FeatureColumnName), nameof(FeatureColumnName), "a column name");
        Check(TaskIdColumnName is null || TaskIdColumnName.Trim().Length > 0, nameof(TaskIdColumnName), "null or a column name");
        Check(HiddenLayerSizes is not null && HiddenLayerSizes.Length <= 64 && HiddenLayerSizes.All(s => s > 0 && s <= 1 << 20), nameof(HiddenLayerSizes), "at most 64 sizes in [1, 1,048,576]");
        Check(Dropout >= 0 && Dropout < 1, nameof(Dropout), "in [0, 1)");
        Check(LearningRate > 0 && double.IsFinite(LearningRate), nameof(LearningRate), "positive");
        Check(Momentum >= 0 && Momentum < 1, nameof(Momentum), "in [0, 1)");
        Check(WeightDecay >= 0 && double.IsFinite(WeightDecay), nameof(WeightDecay), "non-negative");
        Check(BatchSize is > 0 and <= 1 << 24, nameof(BatchSize), "in [1, 16,777,216]");
        Check(NumberOfEpochs is > 0 and <= 100_000, nameof(NumberOfEpochs), "in [1, 100,000]");
        Check(NumberOfThreads is null || NumberOfThreads is > 0 and <= 1024, nameof(NumberOfThreads), "null or in [1, 1,024]");
        Check(MemoryBudgetMegabytes is null || MemoryBudgetMegabytes is > 0 and <= 1 << 20, nameof(MemoryBudgetMegabytes), "null or in [1, 1,048,576]");
        Check(!string.IsNullOrWhiteSpace(Device) && DevicePattern.IsMatch(Device), nameof(Device), "a TorchSharp device name such as \"cpu\" or \"cuda:0\"");
        Check(ValidationFraction >= 0 && ValidationFraction <= 0.5, nameof(ValidationFraction), "in [0, 0.5]");
        Check(EarlyStoppingPatience is >= 1 and <= 1000, nameof(EarlyStoppingPatience), "in [1, 1,000]");
        Check(Enum.IsDefined(LearningRateSchedule), nameof(LearningRateSchedule), "Constant or Cosine");
        Check(ShiftReferenceRows is >= 0 and <= ShiftDetectionOptions.MaxRowsLimit, nameof(ShiftReferenceRows), "in [0, 2,000]");
        Check(Enum.IsDefined(Boundaries), nameof(Boundaries), "Given, EverySteps, OnLossPlateau or OnInputShift");
        Check(BoundaryShiftRows is >= 10 and <= ShiftDetectionOptions.MaxRowsLimit, nameof(BoundaryShiftRows), "in [10, 2,000] (a test's kernel is (2 x rows) squared)");
        Check(BoundaryShiftAlpha >= 1e-4 && BoundaryShiftAlpha <= 0.5, nameof(BoundaryShiftAlpha), "in [0.0001, 0.5]");
        Check(BoundaryLossWindow is >= 1 and <= 100_000, nameof(BoundaryLossWindow), "in [1, 100,000]");
        Check(BoundaryLossMean > 0 && double.IsFinite(BoundaryLossMean), nameof(BoundaryLossMean), "positive and finite");
        Check(BoundaryLossVariance > 0 && double.IsFinite(BoundaryLossVariance), nameof(BoundaryLossVariance), "positive and finite");
        Check(BoundaryEverySteps is >= 1 and <= 100_000_000, nameof(BoundaryEverySteps), "in [1, 100,000,000]");
        Check(BoundarySampleRows is >= 1 and <= 100_000, nameof(BoundarySampleRows), "in [1, 100,000]");
        if (ContinueAcrossFits && Boundaries == ContinualBoundaries.Given)
            throw new ArgumentOutOfRangeException(nameof(ContinueAcrossFits), "Option ContinueAcrossFits needs boundaries inside fits (Boundaries = EverySteps, OnLossPlateau or OnInputShift): with Boundaries = Given every fit is a task of its own.");
        if (ContinueAcrossFits && (NumberOfEpochs != 1 || ShuffleRows))
            throw new ArgumentOutOfRangeException(nameof(ContinueAcrossFits), $"Option ContinueAcrossFits trains one pass in the data's order: set NumberOfEpochs = 1 (it is {NumberOfEpochs}) and ShuffleRows = false (it is {ShuffleRows}).");
    }
}

/// <summary>Options of the trainers that need each row's task id (one network, column or weight share per task):
/// <see cref="ContinualTrainerOptions.TaskIdColumnName"/> defaults to <c>"TaskId"</c> (the column streams made by this
/// library have) and may not be null.</summary>
public abstract class TaskIncrementalTrainerOptions : ContinualTrainerOptions
{
    /// <summary>Creates the options with <see cref="ContinualTrainerOptions.TaskIdColumnName"/> = <c>"TaskId"</c>.</summary>
    protected TaskIncrementalTrainerOptions() => TaskIdColumnName = "TaskId";

    /// <summary>What the method routes by the task id, for the error when the column is missing (e.g. "PackNet routes each row to its task's weights").</summary>
    private protected abstract string Routing { get; }

    internal override void Validate()
    {
        base.Validate();
        if (TaskIdColumnName is null)
            throw new ArgumentOutOfRangeException(nameof(TaskIdColumnName), $"{Routing} by the task id: set TaskIdColumnName.");
    }
}

/// <summary>A model file or stream that is not a valid continual model: truncated, corrupted, foreign or
/// written by a newer format version. The message names the entry and what was expected.</summary>
public sealed class ContinualModelFormatException : FormatException
{
    /// <summary>Creates the exception.</summary>
    public ContinualModelFormatException(string message) : base(message) { }

    /// <summary>Creates the exception with its cause.</summary>
    public ContinualModelFormatException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>Where a trainer's methods consolidate (<see cref="ContinualTrainerOptions.Boundaries"/>).</summary>
/// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
public enum ContinualBoundaries
{
    /// <summary>At the end of each fit: one fit is one task (the task-aware setting of most of the literature).</summary>
    Given,
    /// <summary>Every <see cref="ContinualTrainerOptions.BoundaryEverySteps"/> optimizer steps inside a fit too, and at
    /// its end on the steps since the last one (task-free continual learning).</summary>
    EverySteps,
    /// <summary>Where the task loss reaches a plateau after a peak, inside a fit too, and at its end (Aljundi, Kelchtermans
    /// and Tuytelaars 2019, "Task-Free Continual Learning", §3.2): over a window of the last
    /// <see cref="ContinualTrainerOptions.BoundaryLossWindow"/> steps' losses with mean μ and variance σ², a peak is
    /// μ &gt; μ_last + σ_last (the window at the last consolidation), and the consolidation comes when, after a peak,
    /// μ &lt; <see cref="ContinualTrainerOptions.BoundaryLossMean"/> and σ² &lt; <see cref="ContinualTrainerOptions.BoundaryLossVariance"/>
    /// (the first plateau needs no peak). The new data's arrival raises the loss, and learning it brings it down.</summary>
    OnLossPlateau,
    /// <summary>Where the inputs shift, inside a fit too, and at its end: every
    /// <see cref="ContinualTrainerOptions.BoundaryShiftRows"/> trained rows are compared with a uniform sample of the rows
    /// since the last boundary by the two-sample test of shift detection (MMD with a permutation p-value, Gretton et al.
    /// 2012, on at most 32 fixed random projections of the features); p ≤ <see cref="ContinualTrainerOptions.BoundaryShiftAlpha"/>
    /// places a boundary. It sees the features only, so it finds a new domain or new classes whose inputs differ, not a
    /// change of labels alone.</summary>
    OnInputShift,
}
