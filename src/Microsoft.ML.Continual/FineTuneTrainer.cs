namespace Microsoft.ML.Continual;

/// <summary>
/// Fine-tuning: trains the network on each new task with nothing to protect the earlier ones. It forgets
/// (catastrophic forgetting, McCloskey and Cohen 1989; French 1999), and is the lower bound every continual method
/// is measured against. Reach it with <c>mlContext.Continual().Trainers.FineTune(...)</c>.
/// </summary>
/// <remarks>
/// The loss on task t is the plain task loss L_t(θ), started from the parameters left by task t-1; no hook of the
/// training loop is overridden. Multiclass models grow their output layer when a task brings new classes; models
/// trained with a task-id column keep one head per task.
/// </remarks>
public sealed class FineTuneTrainer : ContinualTrainerBase<FineTuneTrainer.Options>
{
    internal const string RegisteredName = "FineTune";

    /// <summary>Options for <see cref="FineTuneTrainer"/>; see <see cref="ContinualTrainerOptions"/> for the shared ones and their defaults.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
    }

    internal FineTuneTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}
