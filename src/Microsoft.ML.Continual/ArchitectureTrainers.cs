namespace Microsoft.ML.Continual;

/// <summary>
/// PackNet (Mallya and Lazebnik 2018, "PackNet: Adding Multiple Tasks to a Single Network by Iterative Pruning", CVPR):
/// each task trains the free weights of the shared trunk, prunes a fraction of them by magnitude, retrains the weights it
/// kept and freezes them. Earlier tasks' weights are never changed, and at prediction time a task computes with only its
/// own and earlier tasks' weights, so its predictions never change (BWT = 0 exactly). Reach it with
/// <c>mlContext.Continual().Trainers.PackNet(...)</c>.
/// </summary>
/// <remarks>
/// <para>Task-incremental only: the model routes each row by its task id (<see cref="ContinualTrainerOptions.TaskIdColumnName"/>,
/// "TaskId" by default), scoring without it fails with a clear error. Each fit trains exactly one new task.</para>
/// <para>Task t: (1) the free weights F_t of each trunk layer are re-initialised and trained for
/// <see cref="ContinualTrainerOptions.NumberOfEpochs"/> epochs with every earlier task's weights fixed; (2) in each layer
/// the fraction p_t of F_t with the smallest |w| is freed again and zeroed (§3, one-shot magnitude pruning per layer);
/// (3) the kept weights K_t are retrained for <see cref="Options.RetrainEpochs"/> epochs; (4) K_t is frozen. Prediction for
/// task t uses W ⊙ 1[owner(W) ≤ t]. Biases are trained with the first task and fixed afterwards, as in the paper; each
/// task has its own output head.</para>
/// <para>Capacity: task t keeps (1 − p_t)·|F_t| weights. With <see cref="Options.ExpectedTaskCount"/> = N every task gets
/// an equal share, 1/N of each layer (p_t = 1 − 1/(N − t), the last task keeps everything left); otherwise p_t =
/// <see cref="Options.PruneFraction"/>. <see cref="ContinualTransformer.Capacity"/> reports what each task owns and what
/// is free; a fit fails with <see cref="ContinualCapacityException"/> when a layer has no free weight left.</para>
/// </remarks>
public sealed class PackNetTrainer : ContinualTrainerBase<PackNetTrainer.Options>
{
    internal const string RegisteredName = "PackNet";

    /// <summary>Options for <see cref="PackNetTrainer"/>; <see cref="ContinualTrainerOptions.TaskIdColumnName"/> defaults to <c>"TaskId"</c> here.</summary>
    public sealed class Options : TaskIncrementalTrainerOptions
    {
        private protected override string Routing => "PackNet routes each row to its task's weights";

        /// <summary>The fraction of the weights a task trained that pruning frees for later tasks, in [0, 1). Default 0.5
        /// (the paper's setting for a few tasks). Ignored when <see cref="ExpectedTaskCount"/> is set.</summary>
        public double PruneFraction { get; set; } = 0.5;

        /// <summary>When positive, the number of tasks the model should hold: each gets an equal share of every layer and
        /// the N-th keeps what is left. Default 0 (use <see cref="PruneFraction"/>).</summary>
        public int ExpectedTaskCount { get; set; }

        /// <summary>Epochs of retraining after pruning (only the kept weights train). Default 2.</summary>
        public int RetrainEpochs { get; set; } = 2;

    }

    internal PackNetTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// Progressive neural networks (Rusu et al. 2016, "Progressive Neural Networks", arXiv:1606.04671): a new column (trunk
/// and head) for each task, with lateral connections from every earlier column, which stays frozen. Nothing is forgotten
/// (BWT = 0 exactly) and earlier tasks' features are reused, at the price of a network that grows with every task.
/// Reach it with <c>mlContext.Continual().Trainers.ProgressiveNetworks(...)</c>.
/// </summary>
/// <remarks>
/// <para>Column k's layer i computes h_i^(k) = f(W_i^(k) h_{i−1}^(k) + b_i^(k) + Σ_{j&lt;k} U_i^(k:j) h_{i−1}^(j)) (eq. 1), for
/// every hidden layer after the first and for the output layer; h_0 is the input. Only column k, its head and its lateral
/// matrices U^(k:·) train on task k; the earlier columns are computed without gradients.</para>
/// <para>Size: with hidden sizes n_1..n_L and c outputs, column k adds the base MLP's parameters plus
/// k·(Σ_{i=2..L} n_{i−1}n_i + n_L·c) lateral weights, so T tasks cost O(T²) lateral weights; prediction for task k runs
/// k + 1 columns. Task-incremental only: rows are routed by their task id (<see cref="ContinualTrainerOptions.TaskIdColumnName"/>,
/// "TaskId" by default); each fit trains exactly one new task.</para>
/// </remarks>
public sealed class ProgressiveNetworksTrainer : ContinualTrainerBase<ProgressiveNetworksTrainer.Options>
{
    internal const string RegisteredName = "ProgressiveNetworks";

    /// <summary>Options for <see cref="ProgressiveNetworksTrainer"/>; <see cref="ContinualTrainerOptions.HiddenLayerSizes"/> are each column's sizes.</summary>
    public sealed class Options : TaskIncrementalTrainerOptions
    {
        private protected override string Routing => "Progressive networks route each row to its task's column";
    }

    internal ProgressiveNetworksTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// CPG (Hung, Tu, Wu, Chen, Chan and Chen 2019, "Compacting, Picking and Growing for Unforgetting Continual Learning",
/// NeurIPS): each task picks useful weights of earlier tasks with a learned binary mask, trains the free weights, grows
/// the hidden layers while its accuracy goal is not met, and compacts what it trained by gradual pruning, freeing weights
/// for later tasks. Earlier tasks' weights never change and each task computes with a fixed mask over the widths it was
/// trained with, so predictions never change (BWT = 0 exactly). Reach it with <c>mlContext.Continual().Trainers.Cpg(...)</c>.
/// </summary>
/// <remarks>
/// <para>Task t, in the paper's order (§3): (picking and training) for <see cref="ContinualTrainerOptions.NumberOfEpochs"/>
/// epochs the free weights train together with real-valued pick scores m over earlier tasks' weights; the layer computes
/// with W ⊙ (1[owner = t] + 1[owner &lt; t]·1[m &gt; 5·10⁻³]) and the threshold's gradient passes straight through (piggyback
/// masks; scores start at 10⁻², as in the authors' code). (Growing) if the accuracy on the task's rows is below
/// <see cref="Options.AccuracyGoal"/>, every hidden layer widens by <see cref="Options.GrowthFraction"/> of its first width
/// (at most <see cref="Options.MaxGrowths"/> times) and training runs again; a task that finds no free weight at all grows
/// first. (Compacting) the task's own weights are pruned by magnitude in <see cref="Options.CompactionSteps"/> steps to
/// 1 − p(1 − (1 − s/K)³) of their number (Zhu and Gupta 2017's schedule, p = <see cref="Options.MaxPruneFraction"/>), one
/// retraining epoch after each; when accuracy falls more than <see cref="Options.CompactionTolerance"/> below its value
/// before compaction, the last step is undone and compaction stops. The freed weights are zeroed and left to later tasks.</para>
/// <para>Stored per task: the hidden widths it was trained with and a bit mask over those weights (its own and the ones it
/// picked). Accuracy is measured on the task's training rows. Task-incremental only (rows routed by
/// <see cref="ContinualTrainerOptions.TaskIdColumnName"/>, "TaskId" by default), one new task per fit; classification only;
/// fits with checkpoints are refused (growth replaces the network within a task).</para>
/// </remarks>
public sealed class CpgTrainer : ContinualTrainerBase<CpgTrainer.Options>
{
    internal const string RegisteredName = "Cpg";

    /// <summary>Options for <see cref="CpgTrainer"/>; <see cref="ContinualTrainerOptions.HiddenLayerSizes"/> are the first task's widths.</summary>
    public sealed class Options : TaskIncrementalTrainerOptions
    {
        private protected override string Routing => "CPG routes each row to its task's weights";

        /// <summary>The accuracy (on the task's rows) below which the layers grow, in [0, 1]. Default 0: never grow for accuracy.</summary>
        public double AccuracyGoal { get; set; }

        /// <summary>How much each growth widens every hidden layer, as a fraction of its first width. Default 0.25.</summary>
        public double GrowthFraction { get; set; } = 0.25;

        /// <summary>The most growths per task. Default 2.</summary>
        public int MaxGrowths { get; set; } = 2;

        /// <summary>Pruning steps of compaction (each followed by one retraining epoch), at least 1. Default 4.</summary>
        public int CompactionSteps { get; set; } = 4;

        /// <summary>The largest fraction of its weights a task frees by compaction, in [0, 1). Default 0.8.</summary>
        public double MaxPruneFraction { get; set; } = 0.8;

        /// <summary>How far accuracy may fall during compaction before the last step is undone. Default 0.005.</summary>
        public double CompactionTolerance { get; set; } = 0.005;

    }

    internal CpgTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>How a model's capacity is divided among its tasks (architecture methods: <see cref="PackNetTrainer"/>,
/// <see cref="CpgTrainer"/>, <see cref="ProgressiveNetworksTrainer"/>).</summary>
/// <param name="TotalWeights">PackNet and CPG: the shared trunk's weights (biases and heads not included); progressive networks: every parameter.</param>
/// <param name="Tasks">What each task owns, in training order.</param>
/// <param name="FreeWeights">Weights no task owns yet, or null where the network grows instead (progressive networks).</param>
public sealed record ContinualCapacity(long TotalWeights, IReadOnlyList<TaskCapacity> Tasks, long? FreeWeights)
{
    /// <summary>FreeWeights / TotalWeights, or NaN when the network grows instead.</summary>
    public double FreeFraction => FreeWeights is long free ? (double)free / TotalWeights : double.NaN;
}

/// <summary>What one task owns: its weights and their fraction of <see cref="ContinualCapacity.TotalWeights"/>.</summary>
public sealed record TaskCapacity(string TaskId, long Weights, double Fraction);

/// <summary>A fit that needs network capacity the model no longer has (e.g. PackNet with no free weight left). The
/// previous model is unchanged.</summary>
public sealed class ContinualCapacityException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    public ContinualCapacityException(string message) : base(message) { }
}
