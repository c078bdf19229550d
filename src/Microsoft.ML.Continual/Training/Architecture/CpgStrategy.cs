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
internal sealed class CpgStrategy : ContinualStrategy, ITrunkWeightView
{
    // The picking mask's real values start at 1e-2 and a weight is used while its value exceeds 5e-3, as in the authors'
    // code (piggyback masks, Mallya et al. 2018); gradients pass the threshold straight through.
    private const float PickInitial = 1e-2f, PickThreshold = 5e-3f;
    private static readonly Scalar PickThresholdScalar = PickThreshold.ToScalar(); // compared at every forward: kept alive (see CachedScalars)

    private readonly CpgTrainer.Options _options;
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

    public CpgStrategy(CpgTrainer.Options options) => _options = options;

    public override bool GrowsHiddenLayers => true;

    public override bool AllocatesPerTask => true;

    // Growth replaces the network within a task, which a checkpoint does not capture.
    public override bool SupportsCheckpoints => false;

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

    public (Tensor Weight, Tensor Bias) LayerFor(int head, int layer, Tensor weight, Tensor bias)
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

    public override IEnumerable<Parameter> ExtraParameters(TrainingContext context) => _pickScores ?? [];

    public override int EpochCount(TrainingContext context) =>
        _stopAt >= 0 ? _stopAt : _trainEnd + _options.CompactionSteps;

    public override void BeforeTask(TrainingContext context)
    {
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
            if (_options.MaxGrowths == 0)
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
            if (reinitialiseFree) _ownership!.ClaimFree(i, weight, (short)_head);
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

    public override void BeforeEpoch(TrainingContext context)
    {
        int epoch = context.Epoch;
        if (epoch < _trainEnd) return;
        double accuracy = Accuracy(context);
        if (epoch == _trainEnd && _compactionStep == 0)
        {
            if (accuracy < _options.AccuracyGoal && _growths < _options.MaxGrowths)
            {
                context.Info($"CPG: task accuracy {accuracy:F4} is below the goal {_options.AccuracyGoal:F4}; growing the hidden layers.");
                Grow(context);
                _trainEnd += context.Options.NumberOfEpochs;
                return;
            }
            _reference = accuracy;
            _ownedAtCompaction = _ownership!.CountOwnedBy((short)_head);
        }
        else if (accuracy < _reference - _options.CompactionTolerance)
        {
            // The last pruning step cost too much: go back to the state before it and stop compacting (this epoch retrains it).
            Revert(context);
            _stopAt = epoch + 1;
            return;
        }
        if (_compactionStep < _options.CompactionSteps) CompactStep(context);
    }

    /// <summary>Gradual pruning (Zhu and Gupta 2017, as CPG uses it): after step s of K, the task keeps
    /// 1 − p·(1 − (1 − s/K)³) of the weights it owned when compaction began.</summary>
    private void CompactStep(TrainingContext context)
    {
        _compactionStep++;
        Snapshot(context.Network);
        double level = _options.MaxPruneFraction * (1 - Math.Pow(1 - (double)_compactionStep / _options.CompactionSteps, 3));
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

    private void Revert(TrainingContext context)
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
        context.Info($"CPG: compaction stopped after {_compactionStep - 1} of {_options.CompactionSteps} steps (accuracy would fall below {_reference - _options.CompactionTolerance:F4}).");
    }

    /// <summary>Widens every hidden layer by <see cref="CpgTrainer.Options.GrowthFraction"/> of its first width; the new
    /// weights are this task's. Earlier heads keep reading the widths they were trained with.</summary>
    private void Grow(TrainingContext context)
    {
        _growths++;
        var network = context.Network;
        int[] first = context.State.Options.HiddenLayerSizes;
        int[] wider = network.Shape.HiddenSizes.Select((w, i) => w + Math.Max(1, (int)Math.Ceiling(_options.GrowthFraction * first[i]))).ToArray();
        var grown = network.WidenTo(wider);
        _ownership!.Widen(grown, (short)_head);
        bool started = _own is not null;
        // Attaches this strategy, rebuilds the frozen set and pick scores for the new shapes, then makes a new optimizer.
        context.ReplaceNetwork(grown, () => PrepareTask(grown, reinitialiseFree: !started));
        context.Info($"CPG: hidden layers grown to [{string.Join(",", wider)}].");
    }

    /// <summary>Accuracy on the task's own rows, in evaluation mode.</summary>
    private static double Accuracy(TrainingContext context)
    {
        var network = context.Network;
        network.eval();
        long correct = 0, count = context.Task.Count;
        using (no_grad())
            for (long start = 0; start < count; start += 4096)
            {
                using var scope = NewDisposeScope();
                long n = Math.Min(4096, count - start);
                var rows = new TrainingBatch(context.Task.Features.narrow(0, start, n), context.Task.Targets.narrow(0, start, n), context.Task.Heads?.narrow(0, start, n));
                correct += context.State.CountCorrect(network.Forward(rows.Features, rows.Heads), rows);
            }
        network.train();
        return (double)correct / count;
    }

    public override void AfterBackward(TrainingContext context) => _frozen!.MaskGradients();

    public override void AfterStep(TrainingContext context) => _frozen!.Restore();

    public override void AfterTask(TrainingContext context)
    {
        if (_stopAt < 0 && _compactionStep > 0 && Accuracy(context) < _reference - _options.CompactionTolerance) Revert(context);
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
        ClearUnused();
    }

    private static void DisposeAll(Tensor[]? tensors)
    {
        if (tensors is null) return;
        foreach (var t in tensors) t.Dispose();
    }

    public override ContinualCapacity? Capacity(ContinualModelState state) => _ownership?.Report(state.TaskIds, _tasksTrained);

    public override void SaveState(BinaryWriter writer)
    {
        writer.Write(_tasksTrained);
        writer.Write(_ownership is not null);
        _ownership?.Write(writer);
        writer.Write(_masks.Count);
        for (int h = 0; h < _masks.Count; h++)
        {
            ModelIO.WriteInts(writer, _widths[h]);
            writer.Write(_masks[h].Length);
            foreach (var mask in _masks[h]) BitMask.Write(writer, mask);
        }
    }

    public override void LoadState(BinaryReader reader, int formatVersion)
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
        if (rows <= 0 || columns <= 0 || rows * columns > ModelIO.MaxCount) throw new ContinualModelFormatException("A CPG mask has an invalid shape.");
        int count = checked((int)(rows * columns));
        byte[] bytes = reader.ReadBytes((count + 7) / 8);
        if (bytes.Length != (count + 7) / 8) throw new ContinualModelFormatException("A CPG mask is truncated.");
        var bits = new bool[count];
        for (int i = 0; i < count; i++) bits[i] = (bytes[i >> 3] >> (i & 7) & 1) == 1;
        return tensor(bits, new long[] { rows, columns }).DetachFromDisposeScope();
    }
}
