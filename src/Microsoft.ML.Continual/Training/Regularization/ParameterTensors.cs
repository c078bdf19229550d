using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// One tensor per network parameter, by the parameter's name (e.g. an anchor θ^b or an importance b). When the network
/// grows (new classes add output rows, new tasks add heads), stored tensors are padded with zeros to the new shape, so
/// new outputs start with zero importance.
/// </summary>
internal sealed class ParameterTensors : IDisposable
{
    public void Dispose()
    {
        foreach (var t in _tensors.Values) t.Dispose();
        _tensors.Clear();
    }

    private readonly Dictionary<string, Tensor> _tensors;

    public ParameterTensors(Dictionary<string, Tensor> tensors) => _tensors = tensors;

    public IEnumerable<string> Names => _tensors.Keys;

    public long ElementCount => _tensors.Values.Sum(t => t.numel());

    public bool TryGet(string name, out Tensor tensor) => _tensors.TryGetValue(name, out tensor!);

    public Tensor this[string name] => _tensors[name];

    /// <summary>Copies of the network's current parameter values (detached, on their device).</summary>
    public static ParameterTensors CopyOf(ContinualNetwork network) =>
        new(network.OrderedParameters().ToDictionary(p => p.Name, p => p.Value.detach().clone().DetachFromDisposeScope()));

    /// <summary>Zeros shaped like the network's parameters.</summary>
    public static ParameterTensors ZerosLike(ContinualNetwork network) =>
        new(network.OrderedParameters().ToDictionary(p => p.Name, p => zeros_like(p.Value).DetachFromDisposeScope()));

    /// <summary>A tensor per name, filled with <paramref name="value"/>, shaped like the network's parameters.</summary>
    public static ParameterTensors FullLike(ContinualNetwork network, float value) =>
        new(network.OrderedParameters().ToDictionary(p => p.Name, p => full_like(p.Value, value).DetachFromDisposeScope()));

    /// <summary>Pads every stored tensor to its parameter's current shape (zeros in the new rows) and moves it to the parameter's device.</summary>
    public void AlignTo(ContinualNetwork network)
    {
        foreach (var (name, parameter) in network.OrderedParameters())
        {
            if (!_tensors.TryGetValue(name, out var stored)) continue;
            Tensor aligned = stored.to(parameter.device);
            if (!aligned.shape.SequenceEqual(parameter.shape))
            {
                if (aligned.dim() != parameter.dim() || aligned.shape.Skip(1).SequenceEqual(parameter.shape.Skip(1)) is false || aligned.shape[0] > parameter.shape[0])
                    throw new InvalidOperationException($"Stored state for '{name}' has shape [{string.Join(",", aligned.shape)}]; the parameter has [{string.Join(",", parameter.shape)}].");
                var padded = zeros_like(parameter);
                padded.narrow(0, 0, aligned.shape[0]).copy_(aligned);
                aligned = padded;
            }
            _tensors[name] = aligned.DetachFromDisposeScope();
        }
    }

    /// <summary>A new set: f applied to each tensor and the matching tensor of <paramref name="other"/> (null where it has none).</summary>
    public ParameterTensors Combine(ParameterTensors? other, Func<Tensor, Tensor?, Tensor> f) => Combine(other, (_, t, o) => f(t, o));

    /// <summary>A new set: f applied to each name, tensor and the matching tensor of <paramref name="other"/> (null where it has none).</summary>
    public ParameterTensors Combine(ParameterTensors? other, Func<string, Tensor, Tensor?, Tensor> f)
    {
        var result = new Dictionary<string, Tensor>();
        using var _ = no_grad();
        foreach (var (name, t) in _tensors)
        {
            Tensor? o = other is not null && other._tensors.TryGetValue(name, out var found) ? found : null;
            if (o is not null && !o.shape.SequenceEqual(t.shape)) o = null;
            result[name] = f(name, t, o).detach().DetachFromDisposeScope();
        }
        return new ParameterTensors(result);
    }

    /// <summary>Adds zeros for every network parameter not stored yet (a new head).</summary>
    public void AddMissing(ContinualNetwork network)
    {
        foreach (var (name, p) in network.OrderedParameters())
            if (!_tensors.ContainsKey(name)) _tensors[name] = zeros_like(p).DetachFromDisposeScope();
    }

    /// <summary>Stores every tensor under <paramref name="prefix"/> + its parameter's name.</summary>
    public void Save(ContinualState state, string prefix)
    {
        state.Set(prefix + "#", _tensors.Count);
        foreach (var (name, t) in _tensors) state.Set(prefix + name, t);
    }

    /// <summary>Reads what <see cref="Save"/> stored under <paramref name="prefix"/>.</summary>
    public static ParameterTensors Load(ContinualState state, string prefix)
    {
        int count = state.GetInt32(prefix + "#", 0, 1 << 20);
        var tensors = new Dictionary<string, Tensor>();
        foreach (string key in state.Names)
            if (key.StartsWith(prefix, StringComparison.Ordinal) && key.Length > prefix.Length && key != prefix + "#" && key.IndexOf('/', prefix.Length) < 0)
                tensors[key[prefix.Length..]] = state.GetTensor(key).DetachFromDisposeScope();
        if (tensors.Count != count) throw new ContinualModelFormatException($"The plugin state holds {tensors.Count} tensors under '{prefix}'; {count} were written.");
        return new ParameterTensors(tensors);
    }

    /// <summary>Reads what <see cref="Save"/> stored under <paramref name="prefix"/> in place of <paramref name="like"/> (which it
    /// disposes): in-task progress restored after BeforeTask made <paramref name="like"/> for this network, so every name and
    /// shape must be the same; a difference is a format error.</summary>
    public static ParameterTensors LoadLike(ContinualState state, string prefix, ParameterTensors like, string what)
    {
        var loaded = Load(state, prefix);
        foreach (var (name, expected) in like._tensors)
        {
            if (!loaded._tensors.TryGetValue(name, out var stored) || !stored.shape.SequenceEqual(expected.shape) || stored.dtype != expected.dtype)
            {
                loaded.Dispose();
                throw new ContinualModelFormatException($"The {what} under '{prefix}' does not hold parameter '{name}' as {expected.dtype} [{string.Join(", ", expected.shape)}].");
            }
            var moved = stored.to(expected.device);
            if (!ReferenceEquals(moved, stored)) stored.Dispose();
            loaded._tensors[name] = moved.DetachFromDisposeScope();
        }
        if (loaded._tensors.Count != like._tensors.Count)
        {
            loaded.Dispose();
            throw new ContinualModelFormatException($"The {what} under '{prefix}' holds {loaded._tensors.Count - like._tensors.Count} parameters this network does not have.");
        }
        like.Dispose();
        return loaded;
    }

    public void Write(BinaryWriter w)
    {
        w.Write(_tensors.Count);
        foreach (var (name, t) in _tensors)
        {
            w.Write(name);
            TensorIO.Write(w, t);
        }
    }

    public static ParameterTensors Read(BinaryReader r, string what)
    {
        int n = ModelIO.ReadCount(r, what);
        var tensors = new Dictionary<string, Tensor>();
        for (int i = 0; i < n; i++)
        {
            string name = r.ReadString();
            if (!tensors.TryAdd(name, TensorIO.Read(r, what))) throw new ContinualModelFormatException($"The {what} names parameter '{name}' twice.");
        }
        return new ParameterTensors(tensors);
    }
}
