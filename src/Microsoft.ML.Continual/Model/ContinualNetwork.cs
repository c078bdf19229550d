using System.Runtime.InteropServices;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>The shape of a <see cref="ContinualNetwork"/>: enough to rebuild it before loading its weights.</summary>
/// <remarks><c>SeparateTrunks</c>: one trunk per head (no sharing at all: the "one model per task" baseline).</remarks>
internal sealed record NetworkShape(int InputSize, int[] HiddenSizes, ContinualActivation Activation, float Dropout, int OutputSize, int HeadCount, bool SeparateTrunks = false)
{
    public void Write(BinaryWriter w)
    {
        w.Write(InputSize);
        ModelIO.WriteInts(w, HiddenSizes);
        w.Write((int)Activation);
        w.Write(Dropout);
        w.Write(OutputSize);
        w.Write(HeadCount);
        w.Write(SeparateTrunks);
    }

    public static NetworkShape Read(BinaryReader r)
    {
        var shape = new NetworkShape(r.ReadInt32(), ModelIO.ReadInts(r, "hidden layer"), (ContinualActivation)r.ReadInt32(), r.ReadSingle(), r.ReadInt32(), r.ReadInt32(), r.ReadBoolean());
        if (shape.InputSize <= 0 || shape.OutputSize <= 0 || shape.HeadCount <= 0 || shape.HiddenSizes.Any(h => h <= 0)
            || !Enum.IsDefined(shape.Activation) || !(shape.Dropout >= 0 && shape.Dropout < 1)
            || (long)shape.InputSize * (shape.HiddenSizes.Length == 0 ? 1 : shape.HiddenSizes.Max()) > ModelIO.MaxCount
            || (long)shape.HeadCount * shape.OutputSize > ModelIO.MaxCount)
            throw new ContinualModelFormatException("The stored network shape is invalid.");
        return shape;
    }

    public long ParameterCount
    {
        get
        {
            long count = 0;
            int previous = InputSize;
            foreach (int h in HiddenSizes) { count += (long)previous * h + h; previous = h; }
            if (SeparateTrunks) count *= HeadCount;
            return count + HeadCount * ((long)previous * OutputSize + OutputSize);
        }
    }
}

/// <summary>
/// A multilayer perceptron with a shared trunk and one or more linear output heads (one per task when the
/// model is task-incremental). Heads are selected per row, so a batch may mix tasks (as replay does).
/// </summary>
internal sealed class ContinualNetwork : nn.Module
{
    private readonly ModuleList<Sequential> trunks;
    private readonly ModuleList<Linear> heads;

    public ContinualNetwork(NetworkShape shape) : base(nameof(ContinualNetwork))
    {
        Shape = shape;
        int previous = shape.HiddenSizes.Length == 0 ? shape.InputSize : shape.HiddenSizes[^1];
        trunks = nn.ModuleList(Enumerable.Range(0, shape.SeparateTrunks ? shape.HeadCount : 1).Select(_ => CreateTrunk(shape)).ToArray());
        heads = nn.ModuleList(Enumerable.Range(0, shape.HeadCount).Select(_ => nn.Linear(previous, shape.OutputSize)).ToArray());
        RegisterComponents();
    }

    private static Sequential CreateTrunk(NetworkShape shape)
    {
        var layers = new List<(string, nn.Module<Tensor, Tensor>)>();
        int previous = shape.InputSize;
        for (int i = 0; i < shape.HiddenSizes.Length; i++)
        {
            layers.Add(($"linear{i}", nn.Linear(previous, shape.HiddenSizes[i])));
            layers.Add(($"activation{i}", shape.Activation switch
            {
                ContinualActivation.Tanh => nn.Tanh(),
                ContinualActivation.Sigmoid => nn.Sigmoid(),
                ContinualActivation.Gelu => nn.GELU(),
                _ => nn.ReLU(),
            }));
            if (shape.Dropout > 0) layers.Add(($"dropout{i}", nn.Dropout(shape.Dropout)));
            previous = shape.HiddenSizes[i];
        }
        return nn.Sequential(layers);
    }

    public NetworkShape Shape { get; }

    /// <summary>Outputs (logits) for each row; <paramref name="headOfRow"/> picks each row's head (null: head 0).</summary>
    public Tensor Forward(Tensor features, Tensor? headOfRow)
    {
        using var scope = NewDisposeScope();
        if (headOfRow is null || Shape.HeadCount == 1)
            return heads[0].call(trunks[0].call(features)).MoveToOuterDisposeScope();
        Tensor? shared = Shape.SeparateTrunks ? null : trunks[0].call(features);
        Tensor output = zeros(features.shape[0], Shape.OutputSize, dtype: features.dtype, device: features.device);
        // Only the heads present in the batch run; rows are gathered, scored and put back in place.
        var present = headOfRow.unique().output.data<long>().ToArray();
        foreach (long head in present)
        {
            Tensor rows = (headOfRow == head).nonzero().squeeze(1);
            Tensor hidden = shared is null ? trunks[(int)head].call(features.index_select(0, rows)) : shared.index_select(0, rows);
            output = output.index_copy(0, rows, heads[(int)head].call(hidden));
        }
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>The last hidden layer's output (the shared trunk's), e.g. for herding.</summary>
    public Tensor Embed(Tensor features) => trunks[0].call(features);

    private IReadOnlyList<(string Name, Parameter Value)>? _orderedParameters;

    /// <summary>Moves the network to <paramref name="device"/> (moving may replace the parameter objects, so the cached list is rebuilt).</summary>
    public void MoveTo(Device device)
    {
        this.to(device);
        _orderedParameters = null;
    }

    /// <summary>All parameters in a fixed order (trunk first, then heads); the list is built once (hooks call this at every step).</summary>
    public IReadOnlyList<(string Name, Parameter Value)> OrderedParameters() =>
        _orderedParameters ??= named_parameters().Select(p => (p.name, p.parameter)).ToList();

    /// <summary>A new network of shape <paramref name="shape"/> holding this network's weights: the trunk
    /// unchanged, every existing head's existing outputs unchanged; new outputs and new heads keep their fresh
    /// initialisation (drawn from torch's generator, which the caller seeds).</summary>
    public ContinualNetwork GrowTo(NetworkShape shape)
    {
        if (shape.InputSize != Shape.InputSize || !shape.HiddenSizes.SequenceEqual(Shape.HiddenSizes) || shape.SeparateTrunks != Shape.SeparateTrunks
            || shape.OutputSize < Shape.OutputSize || shape.HeadCount < Shape.HeadCount)
            throw new InvalidOperationException("A network can only grow its outputs and heads.");
        var grown = new ContinualNetwork(shape);
        var source = named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (no_grad())
        {
            foreach (var (name, target) in grown.named_parameters())
            {
                if (!source.TryGetValue(name, out var old)) continue; // a new head (or trunk)
                if (old.shape.SequenceEqual(target.shape)) target.copy_(old);
                else target.narrow(0, 0, old.shape[0]).copy_(old); // a grown head: old outputs first
            }
        }
        return grown;
    }

    /// <summary>An independent copy (same shape, same weights).</summary>
    public ContinualNetwork Copy() => GrowTo(Shape);

    /// <summary>Gives every parameter a fresh initialisation (drawn from torch's generator, which the caller seeds).</summary>
    public void Reinitialize()
    {
        using var fresh = new ContinualNetwork(Shape);
        fresh.MoveTo(parameters().First().device);
        var source = fresh.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var _ = no_grad();
        foreach (var (name, target) in named_parameters()) target.copy_(source[name]);
    }

    public void WriteWeights(BinaryWriter w)
    {
        var parameters = OrderedParameters();
        w.Write(parameters.Count);
        foreach (var (name, value) in parameters)
        {
            w.Write(name);
            w.Write((int)value.dim());
            foreach (long d in value.shape) w.Write(d);
            float[] data = value.detach().cpu().data<float>().ToArray();
            w.Write(MemoryMarshal.AsBytes(data.AsSpan()));
        }
    }

    public void ReadWeights(BinaryReader r)
    {
        var parameters = OrderedParameters();
        int count = ModelIO.ReadCount(r, "parameter");
        if (count != parameters.Count)
            throw new ContinualModelFormatException($"The network entry has {count} parameters; a network of this shape has {parameters.Count}.");
        using var _ = no_grad();
        foreach (var (name, value) in parameters)
        {
            string storedName = r.ReadString();
            int rank = r.ReadInt32();
            if (storedName != name || rank != value.dim())
                throw new ContinualModelFormatException($"The network entry holds '{storedName}' (rank {rank}) where '{name}' (rank {value.dim()}) was expected.");
            for (int i = 0; i < rank; i++)
            {
                long d = r.ReadInt64();
                if (d != value.shape[i])
                    throw new ContinualModelFormatException($"Parameter '{name}' has size {d} in dimension {i}; {value.shape[i]} was expected.");
            }
            var data = new float[value.numel()];
            int bytes = data.Length * sizeof(float);
            byte[] raw = r.ReadBytes(bytes);
            if (raw.Length != bytes) throw new ContinualModelFormatException($"The network entry ends inside parameter '{name}'.");
            Buffer.BlockCopy(raw, 0, data, 0, bytes);
            using Tensor loaded = tensor(data, value.shape).clone();
            value.copy_(loaded);
        }
    }
}
