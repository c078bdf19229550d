namespace Microsoft.ML.Continual;

/// <summary>
/// The joint (multi-task) upper bound: after each task, a model trained from scratch on the union of every task seen
/// so far, as if all the data had been there at once (Hsu et al. 2018's "offline" baseline). It keeps every task's rows
/// in its state (and so in the model zip): the thing continual methods exist to avoid, and the bound they are measured
/// against. Reach it with <c>mlContext.Continual().Trainers.Joint(...)</c>.
/// </summary>
/// <remarks>Training task t minimises Σ_{k≤t} L_k(θ) from a fresh initialisation (same seed per task index); the rows
/// of all tasks are shuffled together. Cost grows with t: the refit after task t processes Σ_{k≤t} n_k rows per epoch.</remarks>
public sealed class JointTrainer : ContinualTrainerBase<JointTrainer.Options>
{
    internal const string RegisteredName = "Joint";

    /// <summary>Options for <see cref="JointTrainer"/>; see <see cref="ContinualTrainerOptions"/> for the shared ones and their defaults.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
    }

    internal JointTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// One model per task: every task gets its own network (trunk and head), trained only on that task and routed by the
/// task id at prediction time. Nothing is shared, so nothing is forgotten and nothing transfers (BWT = FWT = 0 by
/// construction); the parameter count grows linearly with the tasks. Needs <see cref="ContinualTrainerOptions.TaskIdColumnName"/>.
/// Reach it with <c>mlContext.Continual().Trainers.Independent(...)</c>.
/// </summary>
/// <remarks>Training task t minimises L_t(θ_t) over that task's own parameters θ_t only; the other tasks' parameters get
/// no gradient and are not touched by the optimizer, so their predictions stay bit-identical.</remarks>
public sealed class IndependentTrainer : ContinualTrainerBase<IndependentTrainer.Options>
{
    internal const string RegisteredName = "Independent";

    /// <summary>Options for <see cref="IndependentTrainer"/>; <see cref="ContinualTrainerOptions.TaskIdColumnName"/> defaults to <c>"TaskId"</c> here.</summary>
    public sealed class Options : TaskIncrementalTrainerOptions
    {
        private protected override string Routing => "The independent baseline routes rows to their task's model";
    }

    internal IndependentTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}
