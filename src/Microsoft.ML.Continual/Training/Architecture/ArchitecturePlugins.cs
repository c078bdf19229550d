using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>Rules the architecture family shares: each fit trains exactly one task, new to the model, and every
/// earlier task's parameters stay as they are.</summary>
internal static class ArchitectureTasks
{
    /// <summary>The head this fit trains: the data must hold exactly one task id, one the model has not been trained on.</summary>
    public static int NewHead(ContinualTrainingContext context, int tasksTrained, string method)
    {
        if (context.Task.Heads is null)
            throw new ContinualDataException(context.Options.TaskIdColumnName, $"{method} allocates weights per task and needs each row's task id: set TaskIdColumnName.");
        long[] present = context.HeadsInTask.ToArray(); // every row's task id, also when the task streams
        var ids = context.State.TaskIds;
        if (present.Length != 1)
            throw new ContinualDataException(context.Options.TaskIdColumnName,
                $"{method} trains one task per fit; the data holds {present.Length} task ids ({string.Join(", ", present.Take(10).Select(h => ids[(int)h]))}{(present.Length > 10 ? ", ..." : "")}). Fit each task separately, in order.");
        int head = (int)present[0];
        if (head < tasksTrained)
            throw new ContinualDataException(context.Options.TaskIdColumnName,
                $"{method} already trained task '{ids[head]}' in an earlier fit; its weights are frozen so that its predictions never change. Give new data a new task id.");
        return head;
    }
}

/// <summary>
/// PackNet (Mallya and Lazebnik 2018; <see cref="PackNetTrainer"/>): each task trains the free weights of the shared trunk,
/// keeps the largest of them, frees the rest and retrains what it kept; the kept weights are frozen for good. Head h
/// predicts with the weights of tasks 0..h only, so later tasks cannot change its predictions. Needs the perceptron trunk.
/// </summary>
public sealed class PackNetPlugin : ContinualPlugin, ITrunkWeightView
{
    internal override bool AllocatesPerTask => true;

    /// <summary>The fraction of the weights a task trained that pruning frees for later tasks, in [0, 1). Default 0.5.
    /// Ignored when <see cref="ExpectedTaskCount"/> is set.</summary>
    public double PruneFraction { get; set; } = 0.5;

    /// <summary>When positive, the number of tasks the model should hold: each gets an equal share of every layer. Default 0.</summary>
    public int ExpectedTaskCount { get; set; }

    /// <summary>Epochs of retraining after pruning (only the kept weights train). Default 2.</summary>
    public int RetrainEpochs { get; set; } = 2;

    /// <inheritdoc/>
    public override void Validate()
    {
        if (!(PruneFraction >= 0 && PruneFraction < 1)) throw new ArgumentOutOfRangeException(nameof(PruneFraction), "Option PruneFraction must be in [0, 1).");
        if (ExpectedTaskCount < 0 || ExpectedTaskCount > short.MaxValue - 1) throw new ArgumentOutOfRangeException(nameof(ExpectedTaskCount), "Option ExpectedTaskCount must be in [0, 32,766].");
        if (RetrainEpochs < 0 || RetrainEpochs > 10_000) throw new ArgumentOutOfRangeException(nameof(RetrainEpochs), "Option RetrainEpochs must be in [0, 10,000].");
    }

    private WeightOwnership? _ownership;
    private int _tasksTrained;
    private ContinualNetwork? _network;

    // During a task only.
    private int _head = -1;
    private bool _pruned;
    private FrozenElements? _frozen;

    /// <inheritdoc/>
    public override void AttachTo(ContinualNetwork network)
    {
        _network = network;
        network.TrunkWeightView = this;
        if (_ownership is not null)
        {
            _ownership.CheckMatches(network);
            _ownership.MoveTo(network.SharedTrunkLayers()[0].Weight.device);
        }
    }

    (Tensor Weight, Tensor Bias) ITrunkWeightView.LayerFor(int head, int layer, Tensor weight, Tensor bias) =>
        // masked_fill writes +0 whatever the hidden weight holds, so head h's arithmetic never depends on later tasks.
        (_ownership is null ? weight : weight.masked_fill(_ownership.HiddenFrom(head, layer), CachedScalars.Zero), bias);

    /// <summary>The fraction of the weights this task trained on that pruning frees again.</summary>
    internal double PruneFractionFor(int head)
    {
        if (ExpectedTaskCount <= 0) return PruneFraction;
        int remaining = ExpectedTaskCount - head; // tasks that still need a share, this one included
        return remaining <= 1 ? 0 : 1 - 1.0 / remaining;
    }

    /// <inheritdoc/>
    public override int EpochCount(ContinualTrainingContext context) =>
        context.Options.NumberOfEpochs + (PruneFractionFor(Math.Max(_head, 0)) > 0 ? RetrainEpochs : 0);

    /// <inheritdoc/>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        var network = context.Network;
        _head = ArchitectureTasks.NewHead(context, _tasksTrained, "PackNet");
        if (_ownership is null && _head > 0)
            throw new InvalidOperationException("PackNet found a model with trained heads but no weight owners; it can only continue a model it made.");
        _ownership ??= WeightOwnership.AllFree(network);
        _ownership.CheckMatches(network);
        var layers = network.SharedTrunkLayers();
        long[] free = _ownership.CountOwnedBy(WeightOwnership.Free);
        for (int i = 0; i < layers.Count; i++)
            if (free[i] == 0)
                throw new ContinualCapacityException(
                    $"PackNet has no free weights left in trunk layer {i + 1} ({layers[i].Weight.shape[1]} → {layers[i].Weight.shape[0]}): the {_tasksTrained} tasks trained so far own all of them. "
                    + "Start a new model with wider HiddenLayerSizes, or leave room for more tasks (a larger PruneFraction, or ExpectedTaskCount).");

        _frozen = new FrozenElements();
        using (no_grad())
        {
            for (int i = 0; i < layers.Count; i++)
            {
                var (weight, bias) = layers[i];
                _ownership.ClaimFree(i, weight, (short)_head, context.Random);
                using Tensor trainable = _ownership[i].eq(_head);
                _frozen.Add(weight, trainable);
                // The paper fixes the biases after the first task (they are not masked per task).
                if (_head > 0) _frozen.AddAll(bias);
            }
        }
        _pruned = false;
    }

    /// <inheritdoc/>
    public override void BeforeEpoch(ContinualTrainingContext context)
    {
        if (!_pruned && context.Epoch >= context.Options.NumberOfEpochs) Prune(context);
    }

    /// <inheritdoc/>
    public override void AfterBackward(ContinualTrainingContext context) => _frozen!.MaskGradients();

    /// <inheritdoc/>
    public override void AfterStep(ContinualTrainingContext context) => _frozen!.Restore();

    /// <inheritdoc/>
    public override void AfterTask(ContinualTrainingContext context)
    {
        if (!_pruned) Prune(context);
        _tasksTrained = _head + 1;
        _frozen!.Dispose();
        _frozen = null;
        var capacity = _ownership!.Report(context.State.TaskIds, _tasksTrained);
        TaskCapacity own = capacity.Tasks[_head];
        _head = -1;
        context.Info($"PackNet: task '{own.TaskId}' keeps {own.Fraction:P1} of the trunk's weights; {capacity.FreeFraction:P1} are free.");
    }

    /// <summary>Frees the <see cref="PruneFractionFor"/> smallest-magnitude weights of those this task trained, layer by
    /// layer (Mallya and Lazebnik 2018, §3: one-shot magnitude pruning per layer), and zeroes them.</summary>
    private void Prune(ContinualTrainingContext context)
    {
        _pruned = true;
        double fraction = PruneFractionFor(_head);
        if (fraction <= 0) return;
        var layers = context.Network.SharedTrunkLayers();
        for (int i = 0; i < layers.Count; i++)
        {
            long owned = _ownership!.CountOwnedBy((short)_head)[i];
            _ownership.FreeSmallest(i, layers[i].Weight, (short)_head, (long)Math.Round(fraction * owned));
            _frozen!.Refresh(layers[i].Weight, _ownership[i].eq(_head));
        }
    }

    internal override ContinualCapacity? Capacity(ContinualModelState state) => _ownership?.Report(state.TaskIds, _tasksTrained);

    internal override void CopyStateFrom(ContinualPlugin previous)
    {
        var other = (PackNetPlugin)previous;
        _ownership = other._ownership?.Clone();
        _tasksTrained = other._tasksTrained;
    }

    /// <inheritdoc/>
    public override void SaveState(ContinualState state)
    {
        state.Set("tasks", _tasksTrained);
        state.Set("has owners", _ownership is not null);
        _ownership?.Save(state, "owners/");
    }

    /// <inheritdoc/>
    public override void LoadState(ContinualState state)
    {
        _tasksTrained = state.GetInt32("tasks", 0, short.MaxValue - 1);
        _ownership = state.GetBoolean("has owners") ? WeightOwnership.Load(state, "owners/") : null;
    }

    internal override void LoadLegacyState(BinaryReader reader, int formatVersion)
    {
        _tasksTrained = reader.ReadInt32();
        if (_tasksTrained < 0) throw new ContinualModelFormatException("PackNet's task count is negative.");
        _ownership = reader.ReadBoolean() ? WeightOwnership.Read(reader) : null;
    }

    /// <inheritdoc/>
    public override void SaveTaskProgress(ContinualState state)
    {
        state.Set("pruned", _pruned);
        _ownership!.Save(state, "owners/");
    }

    /// <inheritdoc/>
    public override void LoadTaskProgress(ContinualState state)
    {
        bool pruned = state.GetBoolean("pruned");
        var ownership = WeightOwnership.Load(state, "owners/");
        ownership.CheckMatches(_network!);
        ownership.MoveTo(_network!.SharedTrunkLayers()[0].Weight.device);
        _ownership?.Dispose();
        _ownership = ownership;
        _pruned = pruned;
        // The frozen values are this task's start; the trainable sets follow the restored owners.
        var layers = _network!.SharedTrunkLayers();
        for (int i = 0; i < layers.Count; i++) _frozen!.Refresh(layers[i].Weight, _ownership[i].eq(_head));
    }

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>
    {
        ["tasks"] = _tasksTrained,
        ["weight owners (int16)"] = _ownership?.TotalWeights ?? 0,
        ["free weights"] = _ownership?.CountOwnedBy(WeightOwnership.Free).Sum() ?? 0,
    };
}

/// <summary>
/// Progressive neural networks (Rusu et al. 2016; <see cref="ProgressiveNetworksTrainer"/>): a new column (trunk and head)
/// per task, with lateral connections from every earlier column; the earlier columns are frozen (computed without
/// gradients), so their predictions never change. Needs the perceptron trunk.
/// </summary>
public sealed class ProgressivePlugin : ContinualPlugin
{
    private int _tasksTrained;

    internal override bool AllocatesPerTask => true;

    internal override NetworkColumns Columns => NetworkColumns.Progressive;

    /// <inheritdoc/>
    public override void BeforeTask(ContinualTrainingContext context) =>
        ArchitectureTasks.NewHead(context, _tasksTrained, "Progressive networks");

    /// <inheritdoc/>
    public override void AfterTask(ContinualTrainingContext context) => _tasksTrained = context.State.TaskIds.Count;

    internal override ContinualCapacity? Capacity(ContinualModelState state)
    {
        // Column k: its trunk, its head and its lateral layers from columns 0..k-1 (no free capacity: the network grows).
        var shape = state.Network.Shape;
        long total = shape.ParameterCount;
        var tasks = Enumerable.Range(0, _tasksTrained).Select(k =>
        {
            long owned = shape.TrunkParameterCount + shape.HeadParameterCount + k * shape.LateralParameterCountPerSource;
            return new TaskCapacity(state.TaskIds[k], owned, (double)owned / total);
        }).ToList();
        return new ContinualCapacity(total, tasks, null);
    }

    /// <inheritdoc/>
    public override void SaveState(ContinualState state) => state.Set("tasks", _tasksTrained);

    /// <inheritdoc/>
    public override void LoadState(ContinualState state) => _tasksTrained = state.GetInt32("tasks", 0, 1 << 16);

    internal override void LoadLegacyState(BinaryReader reader, int formatVersion)
    {
        _tasksTrained = reader.ReadInt32();
        if (_tasksTrained < 0) throw new ContinualModelFormatException("The progressive network's task count is negative.");
    }

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long> { ["columns"] = _tasksTrained };
}
