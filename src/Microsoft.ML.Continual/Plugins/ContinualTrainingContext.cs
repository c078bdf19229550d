using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>A minibatch: features [rows, features], targets (class indices as int64, 0/1 or values as float32) and each
/// row's head (int64; null when the model has one head), with the weight its loss is added with.</summary>
/// <param name="Features">The rows' features.</param>
/// <param name="Targets">The rows' targets.</param>
/// <param name="Heads">The rows' heads, or null.</param>
/// <param name="Weight">The weight of this batch's loss (extra batches); 0: forwarded, but no loss of its own is added.</param>
public sealed record ContinualBatch(Tensor Features, Tensor Targets, Tensor? Heads, double Weight = 1.0)
{
    /// <summary>The number of rows.</summary>
    public long Rows => Features.shape[0];
}

/// <summary>One task's rows as tensors on the training device: features, targets and heads (see <see cref="ContinualBatch"/>).</summary>
public sealed class ContinualTaskData : IDisposable
{
    /// <summary>Wraps the tensors (the task data owns them from now on).</summary>
    public ContinualTaskData(Tensor features, Tensor targets, Tensor? heads)
    {
        Features = features;
        Targets = targets;
        Heads = heads;
    }

    /// <summary>Features [rows, features].</summary>
    public Tensor Features { get; }

    /// <summary>Targets: class indices (int64), 0/1 (binary) or values (regression), float32.</summary>
    public Tensor Targets { get; }

    /// <summary>Each row's head (int64), or null for a single-head model.</summary>
    public Tensor? Heads { get; }

    /// <summary>The number of rows.</summary>
    public long Count => Features.shape[0];

    /// <summary>The rows at <paramref name="rows"/> (an int64 index tensor on the same device) as a batch.</summary>
    public ContinualBatch Select(Tensor rows) =>
        new(Features.index_select(0, rows), Targets.index_select(0, rows), Heads?.index_select(0, rows));

    /// <summary>Releases the tensors.</summary>
    public void Dispose()
    {
        Features.Dispose();
        Targets.Dispose();
        Heads?.Dispose();
    }
}

/// <summary>An extra batch of a step, with the outputs the network gave it and the plugin that asked for it.</summary>
/// <param name="Batch">The batch (in a data-parallel fit: this process's share of it).</param>
/// <param name="Outputs">The network's outputs (logits) for the batch's rows, with gradients.</param>
/// <param name="Source">The plugin whose <see cref="ContinualPlugin.ExtraBatches"/> gave it.</param>
/// <param name="FullRows">The rows of the whole batch (all processes).</param>
public sealed record ContinualStepBatch(ContinualBatch Batch, Tensor Outputs, ContinualPlugin Source, long FullRows);

/// <summary>
/// One optimizer step as the plugins see it before backward (<see cref="ContinualPlugin.BeforeBackward"/>): the task's
/// minibatch and its outputs, every extra batch with its outputs, and the loss as named terms that plugins may add to.
/// The loss minimised is the sum of the terms in order: the task term, each extra batch's term, then the added ones.
/// </summary>
/// <remarks>When several processes train one model, every batch here is this process's share of the rows and every
/// output is for those rows; <see cref="AddLoss"/> takes a mean over a batch's rows and scales it to its part of the
/// whole batch's mean, and <see cref="AddPenalty"/> divides a term that does not depend on the rows among the processes,
/// so that the summed gradients are what one process would compute.</remarks>
public sealed class ContinualStep
{
    private readonly List<(string Name, Tensor Value)> _terms = new();
    private readonly List<ContinualStepBatch> _extras = new();
    private readonly ContinualCommunicator _communicator;
    private readonly long _taskRows;

    internal ContinualStep(ContinualBatch taskBatch, long taskRows, ContinualCommunicator communicator)
    {
        TaskBatch = taskBatch;
        _taskRows = taskRows;
        _communicator = communicator;
    }

    /// <summary>The task's minibatch (this process's share).</summary>
    public ContinualBatch TaskBatch { get; }

    /// <summary>The network's outputs (logits) for <see cref="TaskBatch"/>, or null when this process's share is empty.</summary>
    public Tensor? TaskOutputs { get; internal set; }

    /// <summary>The extra batches of this step, in the order the plugins gave them.</summary>
    public IReadOnlyList<ContinualStepBatch> ExtraBatches => _extras;

    /// <summary>The extra batches <paramref name="plugin"/> gave.</summary>
    public IEnumerable<ContinualStepBatch> ExtraBatchesOf(ContinualPlugin plugin) => _extras.Where(e => ReferenceEquals(e.Source, plugin));

    /// <summary>The loss terms so far, in order (the first is <c>"task"</c> when this process's share is not empty).</summary>
    public IReadOnlyList<(string Name, Tensor Value)> LossTerms => _terms;

    /// <summary>Replaces the task term by <paramref name="meanOverRows"/>, a mean over <see cref="TaskBatch"/>'s rows (e.g. a
    /// cross-entropy over some classes only).</summary>
    public void ReplaceTaskLoss(Tensor meanOverRows)
    {
        ArgumentNullException.ThrowIfNull(meanOverRows);
        int index = _terms.FindIndex(t => t.Name == "task");
        if (index < 0) return; // this process has no rows of the task batch
        _terms[index] = ("task", PartOfMean(meanOverRows, TaskBatch.Rows, _taskRows));
        _taskReplaced = true;
    }

    /// <summary>Adds a term that is a mean over the rows of <paramref name="batch"/> (the task batch when null).</summary>
    /// <param name="name">A name for the term (logged, and seen by later plugins).</param>
    /// <param name="meanOverRows">The term's value, a scalar with gradients.</param>
    /// <param name="batch">The extra batch the term averages over, or null for the task batch.</param>
    public void AddLoss(string name, Tensor meanOverRows, ContinualStepBatch? batch = null)
    {
        ArgumentNullException.ThrowIfNull(meanOverRows);
        long rows = batch?.Batch.Rows ?? TaskBatch.Rows;
        if (rows == 0) return;
        _terms.Add((name, PartOfMean(meanOverRows, rows, batch?.FullRows ?? _taskRows)));
    }

    /// <summary>Adds a term that does not average over rows (e.g. a penalty on the weights); with several processes each adds its share.</summary>
    public void AddPenalty(string name, Tensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        _terms.Add((name, _communicator.Size == 1 ? value : value / _communicator.Size));
    }

    internal void AddTaskTerm(Tensor partOfMean) => _terms.Add(("task", partOfMean));

    internal void AddExtra(ContinualStepBatch extra, Tensor? partOfMean, string name)
    {
        _extras.Add(extra);
        if (partOfMean is not null) _terms.Add((name, partOfMean));
    }

    /// <summary>True when the loss is the task term alone (its value is then the task loss already read).</summary>
    internal bool TaskTermOnly => _terms.Count == 1 && _terms[0].Name == "task" && !_taskReplaced;

    private bool _taskReplaced;

    /// <summary>The loss to minimise: the terms added left to right, or null when there are none.</summary>
    internal Tensor? Total()
    {
        Tensor? total = null;
        foreach (var (_, value) in _terms) total = total is null ? value : total + value;
        return total;
    }

    private Tensor PartOfMean(Tensor mean, long shareRows, long fullRows) =>
        _communicator.Size == 1 || shareRows == fullRows ? mean : mean * ((double)shareRows / fullRows);
}

/// <summary>
/// What the plugins see of a fit: the network, the optimizer, the task's rows, where training is (task, epoch, step), the
/// task's seed and generator, and the processes training together.
/// </summary>
public sealed class ContinualTrainingContext
{
    internal ContinualTrainingContext(ContinualModelState state, ContinualTaskData task, Device device, CancellationToken cancellation,
        ContinualNetwork? network = null, ContinualTrainerOptions? options = null)
    {
        State = state;
        Network = network ?? state.Network;
        Task = task;
        Device = device;
        Cancellation = cancellation;
        _options = options;
    }

    private readonly ContinualTrainerOptions? _options;

    internal ContinualModelState State { get; }

    /// <summary>The network being trained; <see cref="ReplaceNetwork"/> swaps it.</summary>
    public ContinualNetwork Network { get; private set; }

    /// <summary>The options the model was frozen with.</summary>
    public ContinualTrainerOptions Options => _options ?? State.Options;

    /// <summary>The rows trained on. <see cref="ContinualPlugin.BeforeTask"/> may replace them (e.g. with the union of all
    /// tasks, or with a memory); the loop disposes a replacement at the end of the task.</summary>
    public ContinualTaskData Task { get; set; }

    /// <summary>The training device.</summary>
    public Device Device { get; }

    /// <summary>Cancels the fit (checked before every minibatch).</summary>
    public CancellationToken Cancellation { get; }

    /// <summary>The optimizer; null until <see cref="ContinualPlugin.BeforeTask"/> has run.</summary>
    public optim.Optimizer? Optimizer { get; internal set; }

    /// <summary>What the model predicts.</summary>
    public ContinualPredictionKind Kind => State.Kind;

    /// <summary>The width of the network's outputs (the classes known so far, or 1).</summary>
    public int OutputSize => State.OutputSize;

    /// <summary>The task ids in head order (a multi-head model), else empty.</summary>
    public IReadOnlyList<string> TaskIds => State.TaskIds;

    /// <summary>The heads of every task id in the task's rows.</summary>
    public IReadOnlyList<long> HeadsInTask { get; internal init; } = [];

    /// <summary>True when the task is larger than <see cref="ContinualTrainerOptions.MemoryBudgetMegabytes"/> and streams:
    /// then <see cref="Task"/> is a uniform sample of its rows.</summary>
    public bool IsStreaming => Stream is not null;

    internal StreamingBatches? Stream { get; init; }

    /// <summary>The processes training this model together (<see cref="ContinualCommunicator.SingleProcess"/> unless the fit is data-parallel).</summary>
    public ContinualCommunicator Communicator { get; internal init; } = ContinualCommunicator.SingleProcess;

    /// <summary>0 for the first task the model ever sees.</summary>
    public int TaskIndex { get; internal init; }

    /// <summary>This task's seed (the options' seed mixed with the task index): make your own generators from it.</summary>
    public long TaskSeed { get; internal init; }

    /// <summary>The fit's own generator, which draws the network's initialisation and dropout masks (no process-wide random state is used).</summary>
    public Generator Random { get; internal init; } = null!;

    /// <summary>The current epoch (0-based).</summary>
    public int Epoch { get; internal set; }

    /// <summary>Optimizer steps taken in this task.</summary>
    public long Step { get; internal set; }

    /// <summary>Boundaries passed inside this fit so far, the one being passed included (with
    /// <see cref="ContinualTrainerOptions.Boundaries"/> other than Given; 0 with given boundaries); with
    /// <see cref="ContinualTrainerOptions.ContinueAcrossFits"/>, inside the stream's pass so far, as <see cref="Step"/> is.
    /// The fit's end sees the count of the last one: to tell every consolidation of a fit apart (e.g. to seed a draw),
    /// use <see cref="Step"/>.</summary>
    public int BoundariesPassed { get; internal set; }

    /// <summary>The sample of rows since the last boundary inside the fit; null with given boundaries.</summary>
    internal BoundaryWindow? Window { get; init; }

    /// <summary>What the previous fit left to go on from, with <see cref="ContinualTrainerOptions.ContinueAcrossFits"/>; null
    /// for a fit that starts a pass (or any other fit).</summary>
    internal ContinualState? Continuation { get; init; }

    /// <summary>The boundary detector with <see cref="ContinualBoundaries.OnLossPlateau"/> or <see cref="ContinualBoundaries.OnInputShift"/>; null otherwise.</summary>
    internal IBoundaryDetector? Detector { get; init; }

    /// <summary>True from the step that completes a window (<see cref="ContinualTrainerOptions.BoundaryEverySteps"/> steps, or
    /// a loss plateau) until the next
    /// step passes the boundary (a fit that ends first consolidates at its end instead, once).</summary>
    internal bool BoundaryDue { get; set; }

    /// <summary>The task's minibatch of this step (from <see cref="ContinualPlugin.ExtraBatches"/> to <see cref="ContinualPlugin.AfterStep"/>).</summary>
    public ContinualBatch? CurrentBatch { get; internal set; }

    internal Action<string> InfoSink { get; init; } = _ => { };

    /// <summary>Ends the task after the current epoch (e.g. early stopping), whatever the plugins' epoch counts.</summary>
    public void StopAfterThisEpoch() => StopRequested = true;

    internal bool StopRequested { get; private set; }

    /// <summary>Makes the optimizer for the current network and the plugins' extra parameters (set by the loop).</summary>
    internal Func<optim.Optimizer> CreateOptimizer { get; set; } = null!;

    /// <summary>Writes an informational message to the fit's log channel (<c>MLContext.Log</c>).</summary>
    public void Info(string message) => InfoSink(message);

    /// <summary>The model's loss for <paramref name="batch"/> (mean over rows, with the heads' output masks): a forward pass and the loss.</summary>
    public Tensor Loss(ContinualBatch batch) => State.Loss(Network.Forward(batch.Features, batch.Heads), batch);

    /// <summary>The model's loss of <paramref name="outputs"/> for <paramref name="batch"/> (mean over rows).</summary>
    public Tensor Loss(Tensor outputs, ContinualBatch batch) => State.Loss(outputs, batch);

    /// <summary>Logits with the outputs a row's head may not predict set to −∞ (multi-head classification models), else unchanged.</summary>
    public Tensor MaskLogits(Tensor logits, Tensor? heads) => State.MaskLogits(logits, heads);

    /// <summary>Continues the task with <paramref name="network"/> (e.g. wider layers) from the next batch on: the model's
    /// network becomes it, the plugins are attached to it and the optimizer is made anew (its moments start again).</summary>
    /// <param name="network">The network to continue with.</param>
    /// <param name="prepare">Runs after the swap and before the optimizer is made anew.</param>
    public void ReplaceNetwork(ContinualNetwork network, Action? prepare = null)
    {
        ArgumentNullException.ThrowIfNull(network);
        network.MoveTo(Device);
        network.Random = Random;
        network.train();
        var old = Network;
        Network = network;
        State.Network = network;
        State.Plugins.AttachTo(network);
        prepare?.Invoke();
        if (Optimizer is not null)
        {
            (Optimizer as IDisposable)?.Dispose();
            Optimizer = CreateOptimizer();
        }
        old.Dispose();
    }
}
