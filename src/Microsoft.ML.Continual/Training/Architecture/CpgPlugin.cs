using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// CPG (Hung et al. 2019): per task, pick useful weights of earlier tasks with a learned binary mask, train the free
/// weights, grow the hidden layers while the accuracy goal is not met, then compact by gradual magnitude pruning while
/// accuracy holds. Each trained head keeps a fixed mask (its own weights and the earlier ones it picked) over the layer
/// widths it was trained with, so later tasks and growth never change its arithmetic.
/// </summary>
public sealed class CpgPlugin : ContinualPlugin, ITrunkWeightView
{
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

    /// <inheritdoc/>
    public override void Validate()
    {
        if (!(AccuracyGoal >= 0 && AccuracyGoal <= 1)) throw new ArgumentOutOfRangeException(nameof(AccuracyGoal), "Option AccuracyGoal must be in [0, 1].");
        if (!(GrowthFraction > 0 && GrowthFraction <= 10)) throw new ArgumentOutOfRangeException(nameof(GrowthFraction), "Option GrowthFraction must be in (0, 10].");
        if (MaxGrowths < 0 || MaxGrowths > 100) throw new ArgumentOutOfRangeException(nameof(MaxGrowths), "Option MaxGrowths must be in [0, 100].");
        if (CompactionSteps < 1 || CompactionSteps > 100) throw new ArgumentOutOfRangeException(nameof(CompactionSteps), "Option CompactionSteps must be in [1, 100].");
        if (!(MaxPruneFraction >= 0 && MaxPruneFraction < 1)) throw new ArgumentOutOfRangeException(nameof(MaxPruneFraction), "Option MaxPruneFraction must be in [0, 1).");
        if (!(CompactionTolerance >= 0 && CompactionTolerance <= 1)) throw new ArgumentOutOfRangeException(nameof(CompactionTolerance), "Option CompactionTolerance must be in [0, 1].");
    }

    // The picking mask's real values start at 1e-2 and a weight is used while its value exceeds 5e-3, as in the authors'
    // code (piggyback masks, Mallya et al. 2018); gradients pass the threshold straight through.
    private const float PickInitial = 1e-2f, PickThreshold = 5e-3f;
    private static readonly Scalar PickThresholdScalar = PickThreshold.ToScalar(); // compared at every forward: kept alive (see CachedScalars)

    private Generator? _random;
    private WeightOwnership? _ownership;
    private readonly List<int[]> _widths = new();   // per trained head: the hidden widths it was trained with
    private readonly List<Tensor[]> _masks = new(); // per trained head and layer: true where the head uses the weight (bool, its widths)
    private readonly Dictionary<(int, int), Tensor> _unusedCache = new();
    private int _tasksTrained;

    // During a task only.
    private int _head = -1;
    private Parameter[]? _pickScores;
    private Tensor[]? _own, _earlier; // float masks of the current task's own and earlier tasks' weights
    private FrozenElements? _frozen;
    private int[] _startWidths = [];
    private int _growths, _trainEnd, _compactionStep, _stopAt = -1;
    private double _reference;
    private (Tensor[] Parameters, Tensor[]? PickScores, WeightOwnership Owners)? _snapshot;
    private long[] _ownedAtCompaction = [];

    internal override bool GrowsHiddenLayers => true;

    internal override bool AllocatesPerTask => true;

    /// <summary>False: growth replaces the network within a task, which a checkpoint does not capture.</summary>
    public override bool SupportsCheckpoints => false;

    /// <inheritdoc/>
    public override void AttachTo(ContinualNetwork network)
    {
        network.TrunkWeightView = this;
        if (_ownership is null) return;
        _ownership.CheckMatches(network);
        var device = network.SharedTrunkLayers()[0].Weight.device;
        _ownership.MoveTo(device);
        for (int h = 0; h < _masks.Count; h++)
            for (int i = 0; i < _masks[h].Length; i++)
                if (_masks[h][i].device != device) _masks[h][i] = _masks[h][i].to(device).DetachFromDisposeScope();
        ClearUnused();
    }

    (Tensor Weight, Tensor Bias) ITrunkWeightView.LayerFor(int head, int layer, Tensor weight, Tensor bias)
    {
        if (head == _head && _own is not null)
        {
            // Training: own weights, plus earlier ones where the binarised pick score is on (straight-through gradient).
            Tensor mask = _own[layer];
            if (_pickScores is not null)
            {
                Tensor scores = _pickScores[layer];
                Tensor binary = scores.gt(PickThresholdScalar).to_type(scores.dtype);
                mask = mask + _earlier![layer] * (binary + (scores - scores.detach())); // value: exactly the binary mask
            }
            return (weight * mask, bias);
        }
        if (head < _masks.Count)
        {
            Tensor unused = Unused(head, layer);
            Tensor slice = weight.narrow(0, 0, unused.shape[0]).narrow(1, 0, unused.shape[1]);
            return (slice.masked_fill(unused, CachedScalars.Zero), bias.narrow(0, 0, unused.shape[0]));
        }
        return (weight, bias); // an untrained model
    }

    private Tensor Unused(int head, int layer)
    {
        if (!_unusedCache.TryGetValue((head, layer), out var unused))
        {
            unused = _masks[head][layer].logical_not().DetachFromDisposeScope();
            _unusedCache[(head, layer)] = unused;
        }
        return unused;
    }

    private void ClearUnused()
    {
        foreach (var t in _unusedCache.Values) t.Dispose();
        _unusedCache.Clear();
    }

    /// <inheritdoc/>
    public override IEnumerable<Parameter> ExtraParameters(ContinualTrainingContext context) => _pickScores ?? [];

    /// <inheritdoc/>
    public override int EpochCount(ContinualTrainingContext context) =>
        _stopAt >= 0 ? _stopAt : _trainEnd + CompactionSteps;

    /// <inheritdoc/>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        _random = context.Random;
        if (context.State.Kind == ContinualPredictionKind.Regression)
            throw new NotSupportedException("CPG grows and compacts against an accuracy goal; it needs a classification task.");
        _head = ArchitectureTasks.NewHead(context, _tasksTrained, "CPG");
        if (_ownership is null && _head > 0)
            throw new InvalidOperationException("CPG found a model with trained heads but no weight owners; it can only continue a model it made.");
        _ownership ??= WeightOwnership.AllFree(context.Network);
        _ownership.CheckMatches(context.Network);
        _startWidths = context.Network.Shape.HiddenSizes.ToArray();
        _growths = 0;
        _trainEnd = context.Options.NumberOfEpochs;
        _compactionStep = 0;
        _stopAt = -1;
        long[] free = _ownership.CountOwnedBy(WeightOwnership.Free);
        if (free.Any(f => f == 0))
        {
            if (MaxGrowths == 0)
                throw new ContinualCapacityException($"CPG has no free weights left in trunk layer {Array.IndexOf(free, 0L) + 1} and may not grow (MaxGrowths = 0).");
            Grow(context); // nothing to train otherwise: widen first
            return;
        }
        PrepareTask(context.Network, reinitialiseFree: true);
    }

    /// <summary>Free weights start afresh and become this task's; pick scores, masks and the frozen set are made for the
    /// current widths.</summary>
    private void PrepareTask(ContinualNetwork network, bool reinitialiseFree)
    {
        var layers = network.SharedTrunkLayers();
        _frozen?.Dispose();
        _frozen = new FrozenElements();
        using var _ = no_grad();
        for (int i = 0; i < layers.Count; i++)
        {
            var (weight, bias) = layers[i];
            if (reinitialiseFree) _ownership!.ClaimFree(i, weight, (short)_head, _random!);
            using Tensor trainable = _ownership![i].eq(_head);
            _frozen.Add(weight, trainable);
            if (_head > 0)
            {
                // Biases of units that existed when the task began belong to earlier tasks.
                using Tensor newUnits = arange(bias.shape[0], device: bias.device).ge(_startWidths[i]);
                _frozen.Add(bias, newUnits);
            }
        }
        RebuildTaskMasks(network);
    }

    private void RebuildTaskMasks(ContinualNetwork network)
    {
        var layers = network.SharedTrunkLayers();
        DisposeAll(_own);
        DisposeAll(_earlier);
        _own = new Tensor[layers.Count];
        _earlier = new Tensor[layers.Count];
        for (int i = 0; i < layers.Count; i++)
        {
            _own[i] = _ownership![i].eq(_head).to_type(layers[i].Weight.dtype).DetachFromDisposeScope();
            _earlier[i] = _ownership[i].lt(_head).to_type(layers[i].Weight.dtype).DetachFromDisposeScope();
        }
        if (_head > 0)
        {
            var old = _pickScores;
            _pickScores = new Parameter[layers.Count];
            for (int i = 0; i < layers.Count; i++)
            {
                var values = full(layers[i].Weight.shape, PickInitial, layers[i].Weight.dtype, layers[i].Weight.device);
                if (old is not null) // after growth: keep the scores learned so far
                    values.narrow(0, 0, old[i].shape[0]).narrow(1, 0, old[i].shape[1]).copy_(old[i].detach());
                _pickScores[i] = new Parameter(values.DetachFromDisposeScope(), requires_grad: true);
            }
            if (old is not null) foreach (var p in old) p.Dispose();
        }
    }

    /// <inheritdoc/>
    public override void BeforeEpoch(ContinualTrainingContext context)
    {
        int epoch = context.Epoch;
        if (epoch < _trainEnd) return;
        double accuracy = Accuracy(context);
        if (epoch == _trainEnd && _compactionStep == 0)
        {
            if (accuracy < AccuracyGoal && _growths < MaxGrowths)
            {
                context.Info($"CPG: task accuracy {accuracy:F4} is below the goal {AccuracyGoal:F4}; growing the hidden layers.");
                Grow(context);
                _trainEnd += context.Options.NumberOfEpochs;
                return;
            }
            _reference = accuracy;
            _ownedAtCompaction = _ownership!.CountOwnedBy((short)_head);
        }
        else if (accuracy < _reference - CompactionTolerance)
        {
            // The last pruning step cost too much: go back to the state before it and stop compacting (this epoch retrains it).
            Revert(context);
            _stopAt = epoch + 1;
            return;
        }
        if (_compactionStep < CompactionSteps) CompactStep(context);
    }

    /// <summary>Gradual pruning (Zhu and Gupta 2017, as CPG uses it): after step s of K, the task keeps
    /// 1 − p·(1 − (1 − s/K)³) of the weights it owned when compaction began.</summary>
    private void CompactStep(ContinualTrainingContext context)
    {
        _compactionStep++;
        Snapshot(context.Network);
        double level = MaxPruneFraction * (1 - Math.Pow(1 - (double)_compactionStep / CompactionSteps, 3));
        var layers = context.Network.SharedTrunkLayers();
        long[] owned = _ownership!.CountOwnedBy((short)_head);
        for (int i = 0; i < layers.Count; i++)
        {
            long target = (long)Math.Round(level * _ownedAtCompaction[i]);
            long alreadyFreed = _ownedAtCompaction[i] - owned[i];
            _ownership.FreeSmallest(i, layers[i].Weight, (short)_head, target - alreadyFreed);
            _frozen!.Refresh(layers[i].Weight, _ownership[i].eq(_head));
        }
        RebuildOwnMasks(context.Network);
    }

    private void RebuildOwnMasks(ContinualNetwork network)
    {
        var layers = network.SharedTrunkLayers();
        for (int i = 0; i < layers.Count; i++)
        {
            _own![i].Dispose();
            _own[i] = _ownership![i].eq(_head).to_type(layers[i].Weight.dtype).DetachFromDisposeScope();
        }
    }

    /// <summary>Everything a compaction step and the epoch after it change: every parameter (trunk, biases, this task's
    /// head), the pick scores and the owners.</summary>
    private void Snapshot(ContinualNetwork network)
    {
        DropSnapshot();
        using var _ = no_grad();
        _snapshot = (network.parameters().Select(p => p.detach().clone().DetachFromDisposeScope()).ToArray(),
            _pickScores?.Select(p => p.detach().clone().DetachFromDisposeScope()).ToArray(), _ownership!.Clone());
    }

    private void DropSnapshot()
    {
        if (_snapshot is { } s)
        {
            DisposeAll(s.Parameters);
            DisposeAll(s.PickScores);
            s.Owners.Dispose();
        }
        _snapshot = null;
    }

    private void Revert(ContinualTrainingContext context)
    {
        var (parameters, pickScores, owners) = _snapshot!.Value;
        var layers = context.Network.SharedTrunkLayers();
        using (no_grad())
        {
            foreach (var (parameter, saved) in context.Network.parameters().Zip(parameters)) parameter.copy_(saved);
            if (pickScores is not null)
                for (int i = 0; i < pickScores.Length; i++) _pickScores![i].copy_(pickScores[i]);
        }
        _ownership!.Dispose();
        _ownership = owners.Clone();
        for (int i = 0; i < layers.Count; i++) _frozen!.Refresh(layers[i].Weight, _ownership[i].eq(_head));
        RebuildOwnMasks(context.Network);
        context.Info($"CPG: compaction stopped after {_compactionStep - 1} of {CompactionSteps} steps (accuracy would fall below {_reference - CompactionTolerance:F4}).");
    }

    /// <summary>Widens every hidden layer by <see cref="CpgTrainer.Options.GrowthFraction"/> of its first width; the new
    /// weights are this task's. Earlier heads keep reading the widths they were trained with.</summary>
    private void Grow(ContinualTrainingContext context)
    {
        _growths++;
        var network = context.Network;
        int[] first = context.State.Options.HiddenLayerSizes;
        int[] wider = network.Shape.HiddenSizes.Select((w, i) => w + Math.Max(1, (int)Math.Ceiling(GrowthFraction * first[i]))).ToArray();
        var grown = network.WidenTo(wider, context.Random);
        _ownership!.Widen(grown, (short)_head);
        bool started = _own is not null;
        // Attaches this strategy, rebuilds the frozen set and pick scores for the new shapes, then makes a new optimizer.
        context.ReplaceNetwork(grown, () => PrepareTask(grown, reinitialiseFree: !started));
        context.Info($"CPG: hidden layers grown to [{string.Join(",", wider)}].");
    }

    /// <summary>Accuracy on the task's own rows, in evaluation mode.</summary>
    private static double Accuracy(ContinualTrainingContext context)
    {
        var network = context.Network;
        network.eval();
        long correct = 0, count = context.Task.Count;
        using (no_grad())
            for (long start = 0; start < count; start += 4096)
            {
                using var scope = NewDisposeScope();
                long n = Math.Min(4096, count - start);
                var rows = new ContinualBatch(context.Task.Features.narrow(0, start, n), context.Task.Targets.narrow(0, start, n), context.Task.Heads?.narrow(0, start, n));
                correct += context.State.CountCorrect(network.Forward(rows.Features, rows.Heads), rows);
            }
        network.train();
        return (double)correct / count;
    }

    /// <inheritdoc/>
    public override void AfterBackward(ContinualTrainingContext context) => _frozen!.MaskGradients();

    /// <inheritdoc/>
    public override void AfterStep(ContinualTrainingContext context) => _frozen!.Restore();

    /// <inheritdoc/>
    public override void AfterTask(ContinualTrainingContext context)
    {
        if (_stopAt < 0 && _compactionStep > 0 && Accuracy(context) < _reference - CompactionTolerance) Revert(context);
        var layers = context.Network.SharedTrunkLayers();
        var masks = new Tensor[layers.Count];
        using (no_grad())
            for (int i = 0; i < layers.Count; i++)
            {
                Tensor used = _ownership![i].eq(_head);
                if (_pickScores is not null) used = used.logical_or(_ownership[i].lt(_head).logical_and(_pickScores[i].detach().gt(PickThreshold)));
                masks[i] = used.DetachFromDisposeScope();
            }
        _masks.Add(masks);
        _widths.Add(context.Network.Shape.HiddenSizes.ToArray());
        _tasksTrained = _head + 1;
        var capacity = _ownership!.Report(context.State.TaskIds, _tasksTrained);
        long picked = masks.Sum(m => m.sum().item<long>()) - capacity.Tasks[_head].Weights;
        context.Info($"CPG: task '{capacity.Tasks[_head].TaskId}' owns {capacity.Tasks[_head].Fraction:P1} of the trunk's weights and reuses {picked:N0} earlier ones; {capacity.FreeFraction:P1} are free.");
        EndTask();
    }

    private void EndTask()
    {
        _frozen?.Dispose();
        _frozen = null;
        DisposeAll(_own);
        DisposeAll(_earlier);
        _own = _earlier = null;
        if (_pickScores is not null) foreach (var p in _pickScores) p.Dispose();
        _pickScores = null;
        DropSnapshot();
        _head = -1;
        _random = null;
        ClearUnused();
    }

    private static void DisposeAll(Tensor[]? tensors)
    {
        if (tensors is null) return;
        foreach (var t in tensors) t.Dispose();
    }

    internal override ContinualCapacity? Capacity(ContinualModelState state) => _ownership?.Report(state.TaskIds, _tasksTrained);

    /// <inheritdoc/>
    public override void SaveState(ContinualState state)
    {
        state.Set("tasks", _tasksTrained);
        state.Set("has owners", _ownership is not null);
        _ownership?.Save(state, "owners/");
        for (int h = 0; h < _masks.Count; h++)
        {
            using (var widths = tensor(_widths[h])) state.Set($"head{h}/widths", widths);
            for (int i = 0; i < _masks[h].Length; i++)
            {
                using var packed = BitMask.Pack(_masks[h][i]);
                state.Set($"head{h}/mask{i}", packed);
                state.Set($"head{h}/mask{i}/columns", _masks[h][i].shape[1]);
            }
        }
    }

    /// <inheritdoc/>
    public override void LoadState(ContinualState state)
    {
        _tasksTrained = state.GetInt32("tasks", 0, short.MaxValue - 1);
        _ownership = state.GetBoolean("has owners") ? WeightOwnership.Load(state, "owners/") : null;
        _masks.Clear();
        _widths.Clear();
        for (int h = 0; h < _tasksTrained; h++)
        {
            using var widths = state.GetTensor($"head{h}/widths");
            if (widths.dtype != ScalarType.Int32 || widths.dim() != 1 || widths.shape[0] > 64) throw new ContinualModelFormatException("A CPG head's widths are not a short vector of int32.");
            _widths.Add(widths.data<int>().ToArray());
            _masks.Add(Enumerable.Range(0, _widths[h].Length).Select(i =>
            {
                using var packed = state.GetTensor($"head{h}/mask{i}");
                return BitMask.Unpack(packed, state.GetInt64($"head{h}/mask{i}/columns"));
            }).ToArray());
        }
        ClearUnused();
    }

    internal override void LoadLegacyState(BinaryReader reader, int formatVersion)
    {
        _tasksTrained = reader.ReadInt32();
        _ownership = reader.ReadBoolean() ? WeightOwnership.Read(reader) : null;
        int heads = ModelIO.ReadCount(reader, "CPG head");
        if (_tasksTrained < 0 || heads != _tasksTrained) throw new ContinualModelFormatException("CPG's task count does not match its stored masks.");
        _masks.Clear();
        _widths.Clear();
        for (int h = 0; h < heads; h++)
        {
            _widths.Add(ModelIO.ReadInts(reader, "CPG width"));
            int layers = ModelIO.ReadCount(reader, "CPG mask");
            if (layers != _widths[h].Length) throw new ContinualModelFormatException("A CPG head's masks do not match its widths.");
            _masks.Add(Enumerable.Range(0, layers).Select(_ => BitMask.Read(reader)).ToArray());
        }
        ClearUnused();
    }

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>
    {
        ["tasks"] = _tasksTrained,
        ["weight owners (int16)"] = _ownership?.TotalWeights ?? 0,
        ["free weights"] = _ownership?.CountOwnedBy(WeightOwnership.Free).Sum() ?? 0,
        ["task masks (bits)"] = _masks.Sum(m => m.Sum(t => t.numel())),
    };
}

/// <summary>Boolean matrices stored one bit per entry (CPG's per-task masks).</summary>
internal static class BitMask
{
    /// <summary>[rows, ⌈columns / 8⌉] bytes, bit j of byte k holding column 8k + j (in the store).</summary>
    public static Tensor Pack(Tensor mask)
    {
        long rows = mask.shape[0], columns = mask.shape[1];
        bool[] bits = mask.cpu().data<bool>().ToArray();
        long width = (columns + 7) / 8;
        var bytes = new byte[rows * width];
        for (long r = 0; r < rows; r++)
            for (long c = 0; c < columns; c++)
                if (bits[r * columns + c]) bytes[r * width + (c >> 3)] |= (byte)(1 << (int)(c & 7));
        return tensor(bytes, new long[] { rows, width });
    }

    /// <summary>The mask <see cref="Pack"/> packed, with its column count.</summary>
    public static Tensor Unpack(Tensor packed, long columns)
    {
        if (packed.dtype != ScalarType.Byte || packed.dim() != 2 || columns <= 0 || (columns + 7) / 8 != packed.shape[1])
            throw new ContinualModelFormatException("A CPG mask has an invalid shape.");
        long rows = packed.shape[0], width = packed.shape[1];
        byte[] bytes = packed.data<byte>().ToArray();
        var bits = new bool[rows * columns];
        for (long r = 0; r < rows; r++)
            for (long c = 0; c < columns; c++)
                bits[r * columns + c] = (bytes[r * width + (c >> 3)] >> (int)(c & 7) & 1) == 1;
        return tensor(bits, new long[] { rows, columns }).DetachFromDisposeScope();
    }

    public static void Write(BinaryWriter writer, Tensor mask)
    {
        writer.Write(mask.shape[0]);
        writer.Write(mask.shape[1]);
        bool[] bits = mask.cpu().data<bool>().ToArray();
        var bytes = new byte[(bits.Length + 7) / 8];
        for (int i = 0; i < bits.Length; i++) if (bits[i]) bytes[i >> 3] |= (byte)(1 << (i & 7));
        writer.Write(bytes);
    }

    public static Tensor Read(BinaryReader reader)
    {
        long rows = reader.ReadInt64(), columns = reader.ReadInt64();
        if (rows <= 0 || columns <= 0 || rows > ModelIO.MaxCount || columns > ModelIO.MaxCount || rows * columns > ModelIO.MaxCount
            || (reader.BaseStream.CanSeek && (rows * columns + 7) / 8 > reader.BaseStream.Length - reader.BaseStream.Position))
            throw new ContinualModelFormatException("A CPG mask has an invalid shape.");
        int count = checked((int)(rows * columns));
        byte[] bytes = reader.ReadBytes((count + 7) / 8);
        if (bytes.Length != (count + 7) / 8) throw new ContinualModelFormatException("A CPG mask is truncated.");
        var bits = new bool[count];
        for (int i = 0; i < count; i++) bits[i] = (bytes[i >> 3] >> (i & 7) & 1) == 1;
        return tensor(bits, new long[] { rows, columns }).DetachFromDisposeScope();
    }
}
