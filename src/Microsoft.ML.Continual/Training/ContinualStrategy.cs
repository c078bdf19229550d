using Microsoft.ML.Continual.Internal;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// What makes one continual-learning method differ from another: a set of hooks on the one shared training loop
/// (<see cref="TrainingLoop"/>). <see cref="FineTuneTrainer"/>'s strategy overrides nothing. A method that needs
/// something the hooks cannot express should improve the hooks, not edit the loop. See docs/architecture.md for
/// the order in which the hooks run.
/// </summary>
/// <remarks>
/// A strategy owns its state (importances, anchors, memories, masks). That state must go through
/// <see cref="SaveState"/>/<see cref="LoadState"/>: the loop trains a copy made with them, so that a failed or
/// cancelled fit leaves the previous model's strategy untouched.
/// </remarks>
internal abstract class ContinualStrategy
{
    /// <summary>How the network's trunks relate to its heads: one shared trunk (default), one per task (the
    /// independent-models baseline) or progressive columns.</summary>
    public virtual NetworkColumns Columns => NetworkColumns.Shared;

    /// <summary>Called whenever the strategy's network is made: after it is grown for a task (before
    /// <see cref="BeforeTask"/>) and after a saved model is loaded (after <see cref="LoadState"/>). A strategy whose
    /// state changes the forward pass (per-task weight masks) attaches it here.</summary>
    public virtual void AttachTo(ContinualNetwork network) { }

    /// <summary>Takes a copy of <paramref name="previous"/>'s state (same strategy type) for a new fit. The default
    /// goes through <see cref="SaveState"/>/<see cref="LoadState"/>; a strategy whose state is immutable once made may
    /// share it instead.</summary>
    public virtual void CopyStateFrom(ContinualStrategy previous)
    {
        using var buffer = new MemoryStream();
        using (var writer = new BinaryWriter(buffer, System.Text.Encoding.UTF8, leaveOpen: true)) previous.SaveState(writer);
        buffer.Position = 0;
        using var reader = new BinaryReader(buffer);
        LoadState(reader, ModelFormat.CurrentVersion);
    }

    /// <summary>Called once per task, after the network has grown for the task and before the first batch.</summary>
    public virtual void BeforeTask(TrainingContext context) { }

    /// <summary>True for the architecture family: the network is divided among the tasks by state only this method
    /// understands (owners, masks, columns), so a model made by it can be continued only by it, and it cannot continue a
    /// model made by another method (the loop refuses both).</summary>
    public virtual bool AllocatesPerTask => false;

    /// <summary>True when the method widens the hidden layers itself (CPG): a refit then continues with the model's widths
    /// (the options' <c>HiddenLayerSizes</c> are the first task's).</summary>
    public virtual bool GrowsHiddenLayers => false;

    /// <summary>Parameters outside the network that the optimizer also trains during this task (CPG's real-valued masks).
    /// Read whenever the optimizer is made: at the start of the task and after <see cref="TrainingContext.ReplaceNetwork"/>.</summary>
    public virtual IEnumerable<TorchSharp.Modules.Parameter> ExtraParameters(TrainingContext context) => [];

    /// <summary>How many epochs the task runs: the options' <c>NumberOfEpochs</c> unless the method adds phases (e.g.
    /// PackNet's retraining after pruning). Read before every epoch.</summary>
    public virtual int EpochCount(TrainingContext context) => context.Options.NumberOfEpochs;

    /// <summary>Called before each epoch (<see cref="TrainingContext.Epoch"/> is set): e.g. pruning between phases.</summary>
    public virtual void BeforeEpoch(TrainingContext context) { }

    /// <summary>Extra batches to train on together with the task's batch (replay); their losses are added, each times its weight.</summary>
    public virtual IEnumerable<TrainingBatch> ExtraBatches(TrainingContext context, TrainingBatch taskBatch) => [];

    /// <summary>A term added to the loss before backward (regularisation), or null.</summary>
    public virtual Tensor? Penalty(TrainingContext context) => null;

    /// <summary>After backward, before the optimizer step: the gradients can be read or changed (projection, masking).</summary>
    public virtual void AfterBackward(TrainingContext context) { }

    /// <summary>After the optimizer step: the parameters' change can be read or undone (path integrals, frozen weights).</summary>
    public virtual void AfterStep(TrainingContext context) { }

    /// <summary>After the last epoch of a task (consolidation: importances, memories, pruning).</summary>
    public virtual void AfterTask(TrainingContext context) { }

    /// <summary>Writes the strategy's state; versioned by the model's format version.</summary>
    public virtual void SaveState(BinaryWriter writer) { }

    /// <summary>Reads what <see cref="SaveState"/> wrote (in a model of format version <paramref name="formatVersion"/>).</summary>
    public virtual void LoadState(BinaryReader reader, int formatVersion) { }

    /// <summary>False when the strategy accumulates state during a task that <see cref="SaveTaskProgress"/> does not capture
    /// (then checkpoints within a task are refused with a clear error).</summary>
    public virtual bool SupportsCheckpoints => true;

    /// <summary>Writes what changes during a task beyond the network and the optimizer (e.g. a sampling generator's state), for a checkpoint.</summary>
    public virtual void SaveTaskProgress(BinaryWriter writer) { }

    /// <summary>Reads what <see cref="SaveTaskProgress"/> wrote, after <see cref="BeforeTask"/> ran again on resume.</summary>
    public virtual void LoadTaskProgress(BinaryReader reader) { }

    /// <summary>How the network's capacity is divided among the tasks (architecture methods), or null.</summary>
    public virtual ContinualCapacity? Capacity(ContinualModelState state) => null;

    /// <summary>Human-readable sizes of the state, for inspection (e.g. "fisher: 89,610 floats").</summary>
    public virtual IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>();
}

/// <summary>A minibatch: features, targets (class indices, 0/1 or values) and the head of each row (null: one head).</summary>
internal sealed record TrainingBatch(Tensor Features, Tensor Targets, Tensor? Heads, double Weight = 1.0);

/// <summary>What the hooks see of the loop: the network, the optimizer, the task and where training is.</summary>
internal sealed class TrainingContext
{
    /// <summary>The network being trained; <see cref="ReplaceNetwork"/> swaps it (CPG's growth).</summary>
    public required ContinualNetwork Network { get; set; }
    public required ContinualTrainerOptions Options { get; init; }
    public required ContinualModelState State { get; init; }
    /// <summary>The rows trained on; <see cref="ContinualStrategy.BeforeTask"/> may replace them.</summary>
    public required TaskTensors Task { get; set; }
    public required Device Device { get; init; }
    public required CancellationToken Cancellation { get; init; }
    /// <summary>The optimizer; null until <see cref="ContinualStrategy.BeforeTask"/> has run.</summary>
    public optim.Optimizer? Optimizer { get; set; }

    /// <summary>The batches of a streamed task (larger than <c>MemoryBudgetMegabytes</c>), or null when the task is in
    /// memory. When streaming, <see cref="Task"/> is a uniform sample of the task's rows.</summary>
    public StreamingBatches? Stream { get; init; }

    /// <summary>The heads of every task id in the task's rows (all rows, also when <see cref="Task"/> is a sample).</summary>
    public IReadOnlyList<long> HeadsInTask { get; init; } = [];

    /// <summary>The processes training this model together (<see cref="ContinualCommunicator.SingleProcess"/> unless the fit is
    /// data-parallel). The loop sums the step's gradients before <see cref="ContinualStrategy.AfterBackward"/>; a hook that
    /// does expensive work of its own (importance estimates, memory gradients) may share it out by rank and sum the results.</summary>
    public ContinualCommunicator Communicator { get; init; } = ContinualCommunicator.SingleProcess;

    /// <summary>0 for the first task the model ever sees.</summary>
    public int TaskIndex { get; init; }

    /// <summary>This task's seed (the options' seed mixed with the task index): strategies draw their own random numbers from it.</summary>
    public long TaskSeed { get; init; }
    public int Epoch { get; set; }

    /// <summary>Writes an informational message to the fit's log channel (<c>MLContext.Log</c>).</summary>
    public Action<string> Info { get; init; } = _ => { };
    public long Step { get; set; }

    /// <summary>The task's minibatch of this step (valid from <see cref="ContinualStrategy.ExtraBatches"/> to <see cref="ContinualStrategy.AfterStep"/>).</summary>
    public TrainingBatch? CurrentBatch { get; set; }

    /// <summary>Makes the optimizer for the current network and the strategy's extra parameters (set by the loop).</summary>
    internal Func<optim.Optimizer> CreateOptimizer { get; set; } = null!;

    /// <summary>Continues the task with <paramref name="network"/> (e.g. wider layers) from the next batch on: the model's
    /// network becomes it, the strategy is attached to it and the optimizer is made anew (its moments start again).</summary>
    /// <param name="network">The network to continue with.</param>
    /// <param name="prepare">Runs after the swap and before the optimizer is made anew (e.g. the strategy rebuilds its
    /// extra parameters for the new shapes).</param>
    public void ReplaceNetwork(ContinualNetwork network, Action? prepare = null)
    {
        network.MoveTo(Device);
        network.train();
        var old = Network;
        Network = network;
        State.Network = network;
        State.Strategy.AttachTo(network);
        prepare?.Invoke();
        if (Optimizer is not null)
        {
            (Optimizer as IDisposable)?.Dispose();
            Optimizer = CreateOptimizer();
        }
        old.Dispose();
    }

    /// <summary>The loss the loop minimises for a batch (mean over rows), with the model's output masking.</summary>
    public Tensor Loss(TrainingBatch batch) => State.Loss(Network.Forward(batch.Features, batch.Heads), batch);
}

/// <summary>One task's data as tensors: features, targets and heads, on the training device.</summary>
internal sealed class TaskTensors : IDisposable
{
    public TaskTensors(Tensor features, Tensor targets, Tensor? heads)
    {
        Features = features;
        Targets = targets;
        Heads = heads;
    }

    public Tensor Features { get; }
    public Tensor Targets { get; }
    public Tensor? Heads { get; }
    public long Count => Features.shape[0];

    public TrainingBatch Select(Tensor rows) =>
        new(Features.index_select(0, rows), Targets.index_select(0, rows), Heads?.index_select(0, rows));

    public void Dispose()
    {
        Features.Dispose();
        Targets.Dispose();
        Heads?.Dispose();
    }
}
