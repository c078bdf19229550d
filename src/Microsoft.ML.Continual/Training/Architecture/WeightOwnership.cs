using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// Which task owns each weight of the shared trunk (PackNet, CPG): an int16 tensor per trunk layer holding the owning
/// head's index, or <see cref="Free"/>. Head h computes with the weights its own and earlier heads own
/// (owner ≤ h), so later tasks can neither change nor see into an earlier task's function.
/// </summary>
internal sealed class WeightOwnership : IDisposable
{
    /// <summary>The owner code of a weight no task owns (larger than every head index, so "owner ≤ h" excludes it).</summary>
    public const short Free = short.MaxValue;

    private readonly Tensor[] _owners;
    private readonly Dictionary<(int Head, int Layer), Tensor> _masks = new();

    private WeightOwnership(Tensor[] owners) => _owners = owners;

    /// <summary>Every weight of every trunk layer free.</summary>
    public static WeightOwnership AllFree(ContinualNetwork network) =>
        new(network.SharedTrunkLayers().Select(l => full(l.Weight.shape, Free, ScalarType.Int16, l.Weight.device).DetachFromDisposeScope()).ToArray());

    public int LayerCount => _owners.Length;

    public Tensor this[int layer] => _owners[layer];

    /// <summary>What head <paramref name="head"/> may not use in layer <paramref name="layer"/>: true where owner &gt; head (cached; bool).</summary>
    public Tensor HiddenFrom(int head, int layer)
    {
        if (!_masks.TryGetValue((head, layer), out var mask))
        {
            mask = _owners[layer].gt(head).DetachFromDisposeScope();
            _masks[(head, layer)] = mask;
        }
        return mask;
    }

    /// <summary>Sets the owner of the weights selected by <paramref name="where"/> in layer <paramref name="layer"/>.</summary>
    public void Assign(int layer, Tensor where, short owner)
    {
        _owners[layer].masked_fill_(where, owner);
        ClearMasks();
    }

    public void ClearMasks()
    {
        foreach (var mask in _masks.Values) mask.Dispose();
        _masks.Clear();
    }

    /// <summary>Gives the free weights of layer <paramref name="layer"/> to <paramref name="owner"/>, drawn afresh like
    /// nn.Linear's (U(−1/√fan_in, 1/√fan_in), from the fit's generator); pruned ones were zero.</summary>
    public void ClaimFree(int layer, Tensor weight, short owner, Generator random)
    {
        using var _ = no_grad();
        using Tensor isFree = _owners[layer].eq(Free);
        double bound = 1 / Math.Sqrt(weight.shape[1]);
        using Tensor drawn = rand(weight.shape, generator: random, dtype: weight.dtype, device: CPU);
        using Tensor fresh = drawn.to(weight.device).mul_(2 * bound).sub_(bound);
        weight.copy_(where(isFree, fresh, weight));
        Assign(layer, isFree, owner);
    }

    /// <summary>Frees the <paramref name="count"/> weights of <paramref name="owner"/> in layer <paramref name="layer"/> with the
    /// smallest magnitude (ties: lower index first) and zeroes them: magnitude pruning.</summary>
    public void FreeSmallest(int layer, Tensor weight, short owner, long count)
    {
        if (count <= 0) return;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Tensor candidates = _owners[layer].eq(owner).flatten().nonzero().squeeze(1);
        count = Math.Min(count, candidates.shape[0]);
        Tensor magnitudes = weight.detach().flatten().index_select(0, candidates).abs();
        Tensor order = magnitudes.sort(stable: true).Indices;
        Tensor freed = candidates.index_select(0, order.narrow(0, 0, count));
        Tensor freedMask = zeros(weight.numel(), ScalarType.Bool, weight.device).index_fill_(0, freed, true).view(weight.shape);
        weight.masked_fill_(freedMask, 0);
        Assign(layer, freedMask, Free);
    }

    /// <summary>Owners for wider layers: existing entries keep their owner (top-left block), new ones get <paramref name="owner"/>.</summary>
    public void Widen(ContinualNetwork wider, short owner)
    {
        var layers = wider.SharedTrunkLayers();
        for (int i = 0; i < _owners.Length; i++)
        {
            var grown = full(layers[i].Weight.shape, owner, ScalarType.Int16, _owners[i].device);
            grown.narrow(0, 0, _owners[i].shape[0]).narrow(1, 0, _owners[i].shape[1]).copy_(_owners[i]);
            _owners[i].Dispose();
            _owners[i] = grown.DetachFromDisposeScope();
        }
        ClearMasks();
    }

    /// <summary>Weights owned by <paramref name="owner"/> in each layer (pass <see cref="Free"/> for the free ones).</summary>
    public long[] CountOwnedBy(short owner) => _owners.Select(o => o.eq(owner).sum().item<long>()).ToArray();

    public long TotalWeights => _owners.Sum(o => o.numel());

    public WeightOwnership Clone() => new(_owners.Select(o => o.clone().DetachFromDisposeScope()).ToArray());

    public void MoveTo(Device device)
    {
        for (int i = 0; i < _owners.Length; i++)
            if (_owners[i].device != device)
            {
                var moved = _owners[i].to(device).DetachFromDisposeScope();
                _owners[i].Dispose();
                _owners[i] = moved;
            }
        ClearMasks();
    }

    public void Dispose()
    {
        ClearMasks();
        foreach (var owner in _owners) owner.Dispose();
    }

    public void Write(BinaryWriter writer)
    {
        writer.Write(_owners.Length);
        foreach (var owner in _owners) TensorIO.Write(writer, owner);
    }

    /// <summary>Stores the owners under <paramref name="prefix"/>.</summary>
    public void Save(ContinualState state, string prefix)
    {
        state.Set(prefix + "layers", _owners.Length);
        for (int i = 0; i < _owners.Length; i++) state.Set(prefix + i, _owners[i]);
    }

    /// <summary>Reads what <see cref="Save"/> stored.</summary>
    public static WeightOwnership Load(ContinualState state, string prefix)
    {
        int count = state.GetInt32(prefix + "layers", 0, 64);
        var owners = new Tensor[count];
        for (int i = 0; i < count; i++)
        {
            owners[i] = state.GetTensor(prefix + i).DetachFromDisposeScope();
            if (owners[i].dtype != ScalarType.Int16 || owners[i].dim() != 2)
                throw new ContinualModelFormatException("The weight-owner tensors must be two-dimensional int16 tensors.");
        }
        return new WeightOwnership(owners);
    }

    public static WeightOwnership Read(BinaryReader reader)
    {
        int count = ModelIO.ReadCount(reader, "trunk layer");
        var owners = new Tensor[count];
        for (int i = 0; i < count; i++)
        {
            owners[i] = TensorIO.Read(reader, "weight owners");
            if (owners[i].dtype != ScalarType.Int16 || owners[i].dim() != 2)
                throw new ContinualModelFormatException("The weight-owner tensors must be two-dimensional int16 tensors.");
        }
        return new WeightOwnership(owners);
    }

    /// <summary>Checks that the owners match the network's trunk layer by layer.</summary>
    public void CheckMatches(ContinualNetwork network)
    {
        var layers = network.SharedTrunkLayers();
        if (layers.Count != _owners.Length || layers.Zip(_owners).Any(p => !p.First.Weight.shape.SequenceEqual(p.Second.shape)))
            throw new ContinualModelFormatException("The stored weight owners do not match the network's trunk.");
    }

    /// <summary>The capacity each head owns and what is left, for <see cref="ContinualTransformer.Capacity"/>.</summary>
    public ContinualCapacity Report(IReadOnlyList<string> taskIds, int tasksTrained)
    {
        long total = TotalWeights;
        var tasks = new List<TaskCapacity>();
        for (int head = 0; head < tasksTrained; head++)
        {
            long owned = CountOwnedBy((short)head).Sum();
            tasks.Add(new TaskCapacity(head < taskIds.Count ? taskIds[head] : head.ToString(System.Globalization.CultureInfo.InvariantCulture), owned, (double)owned / total));
        }
        long free = CountOwnedBy(Free).Sum();
        return new ContinualCapacity(total, tasks, free);
    }
}

/// <summary>Keeps chosen elements of parameters exactly as they were, whatever the optimizer does (weight decay,
/// momentum): their gradients are zeroed after backward and their values written back after each step.</summary>
internal sealed class FrozenElements : IDisposable
{
    private readonly List<(Parameter Parameter, Tensor Trainable, Tensor GradientScale, Tensor Values)> _parts = new();

    /// <summary>Freezes the elements of <paramref name="parameter"/> where <paramref name="trainable"/> (bool) is false, at their current values.</summary>
    public void Add(Parameter parameter, Tensor trainable) => _parts.Add(Part(parameter, trainable));

    private static (Parameter, Tensor, Tensor, Tensor) Part(Parameter parameter, Tensor trainable)
    {
        using var _ = no_grad();
        return (parameter, trainable.to_type(ScalarType.Bool).clone().DetachFromDisposeScope(), trainable.to_type(parameter.dtype).DetachFromDisposeScope(),
            parameter.detach().clone().DetachFromDisposeScope());
    }

    /// <summary>Freezes all of <paramref name="parameter"/>.</summary>
    public void AddAll(Parameter parameter) => Add(parameter, zeros(parameter.shape, ScalarType.Bool, parameter.device));

    /// <summary>Zeroes the frozen elements' gradients (so no optimizer state builds up for them).</summary>
    public void MaskGradients()
    {
        foreach (var (parameter, _, scale, _) in _parts)
            parameter.grad?.mul_(scale);
    }

    /// <summary>Writes the frozen elements' values back (exactly).</summary>
    public void Restore()
    {
        using var _ = no_grad();
        foreach (var (parameter, trainable, _, values) in _parts)
            parameter.copy_(where(trainable, parameter, values));
    }

    /// <summary>Sets the frozen values of <paramref name="parameter"/> to its current values (after a deliberate change, e.g. pruning).</summary>
    public void Refresh(Parameter parameter, Tensor trainable)
    {
        using var _ = no_grad();
        for (int i = 0; i < _parts.Count; i++)
            if (ReferenceEquals(_parts[i].Parameter, parameter))
            {
                Free(_parts[i]);
                _parts[i] = Part(parameter, trainable);
                return;
            }
        Add(parameter, trainable);
    }

    public void Dispose()
    {
        foreach (var part in _parts) Free(part);
        _parts.Clear();
    }

    private static void Free((Parameter, Tensor Trainable, Tensor GradientScale, Tensor Values) part)
    {
        part.Trainable.Dispose();
        part.GradientScale.Dispose();
        part.Values.Dispose();
    }
}
