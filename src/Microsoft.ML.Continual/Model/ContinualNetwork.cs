using System.Runtime.InteropServices;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>How a <see cref="ContinualNetwork"/>'s trunks relate to its heads.</summary>
internal enum NetworkColumns : byte
{
    /// <summary>One trunk shared by every head.</summary>
    Shared = 0,
    /// <summary>One trunk per head, nothing shared (the "one model per task" baseline).</summary>
    PerTask = 1,
    /// <summary>One trunk ("column") per head with lateral connections from every earlier column (progressive networks).</summary>
    Progressive = 2,
}

/// <summary>The shape of a <see cref="ContinualNetwork"/>: enough to rebuild it before loading its weights.</summary>
/// <remarks>The columns are stored in the byte that format 0x00010001 wrote as the Boolean <c>SeparateTrunks</c>
/// (0 = shared, 1 = one per task), so every model of that format reads unchanged; 2 (progressive) only occurs in
/// models of the progressive-networks trainer, which older versions refuse by its name.</remarks>
internal sealed record NetworkShape(int InputSize, int[] HiddenSizes, ContinualActivation Activation, float Dropout, int OutputSize, int HeadCount, NetworkColumns Columns = NetworkColumns.Shared)
{
    public bool SeparateTrunks => Columns != NetworkColumns.Shared;

    /// <summary>The backbone under the heads, or null for the multilayer perceptron of <see cref="HiddenSizes"/> (the
    /// architecture family's masks and columns work on that perceptron only).</summary>
    public ContinualBackbone? Backbone { get; init; }

    /// <summary>The width of the features the heads read.</summary>
    public int TrunkOutputSize => Backbone?.OutputSize(InputSize) ?? (HiddenSizes.Length == 0 ? InputSize : HiddenSizes[^1]);

    /// <summary>Format 0x00010002 adds the backbone after the first format's fields: its name ("" for the perceptron) and settings.</summary>
    public void WriteBackbone(BinaryWriter w)
    {
        w.Write(Backbone is null ? "" : Backbone.Name);
        var pairs = Backbone is null ? [] : Settings.ToPairs(Backbone);
        w.Write(pairs.Count);
        foreach (var (name, value) in pairs) { w.Write(name); w.Write(value); }
    }

    /// <summary>Reads what <see cref="WriteBackbone"/> wrote and checks it against the input size.</summary>
    public NetworkShape ReadBackbone(BinaryReader r)
    {
        string name = r.ReadString();
        int count = ModelIO.ReadCount(r, "backbone setting");
        if (count > 1024) throw new ContinualModelFormatException($"The backbone has {count} settings.");
        var pairs = new List<KeyValuePair<string, string>>();
        for (int i = 0; i < count; i++) pairs.Add(new(r.ReadString(), r.ReadString()));
        if (name.Length == 0) return this;
        var backbone = ContinualBackbones.Create(name, pairs);
        try { backbone.Validate(InputSize); }
        catch (ArgumentException e) { throw new ContinualModelFormatException($"The stored backbone '{name}' is invalid: {e.Message}", e); }
        if (backbone.OutputSize(InputSize) is <= 0 or > ModelIO.MaxCount) throw new ContinualModelFormatException($"The stored backbone '{name}' gives {backbone.OutputSize(InputSize)} features.");
        return this with { Backbone = backbone };
    }

    public void Write(BinaryWriter w)
    {
        w.Write(InputSize);
        ModelIO.WriteInts(w, HiddenSizes);
        w.Write((int)Activation);
        w.Write(Dropout);
        w.Write(OutputSize);
        w.Write(HeadCount);
        w.Write((byte)Columns);
    }

    public static NetworkShape Read(BinaryReader r)
    {
        var shape = new NetworkShape(r.ReadInt32(), ModelIO.ReadInts(r, "hidden layer"), (ContinualActivation)r.ReadInt32(), r.ReadSingle(), r.ReadInt32(), r.ReadInt32(), (NetworkColumns)r.ReadByte());
        if (shape.InputSize <= 0 || shape.OutputSize <= 0 || shape.HeadCount <= 0 || shape.HiddenSizes.Any(h => h <= 0)
            || !Enum.IsDefined(shape.Activation) || !(shape.Dropout >= 0 && shape.Dropout < 1) || !Enum.IsDefined(shape.Columns)
            || shape.HiddenSizes.Length > 64 || shape.HeadCount > 1 << 16)
            throw new ContinualModelFormatException("The stored network shape is invalid.");
        return shape;
    }

    /// <summary>Fails unless a network of this shape holds at most <paramref name="maxParameters"/> parameters (checked before
    /// anything is allocated, against what the weights entry can hold: a damaged header cannot ask for gigabytes).</summary>
    public void CheckSize(long maxParameters, string what)
    {
        long count;
        try { count = checked(ParameterCountChecked()); }
        catch (OverflowException) { count = long.MaxValue; }
        if (count > maxParameters)
            throw new ContinualModelFormatException($"The stored network shape has {(count == long.MaxValue ? "more than 2^63" : count.ToString("N0", System.Globalization.CultureInfo.InvariantCulture))} parameters; {what} holds at most {maxParameters:N0}.");
    }

    private long ParameterCountChecked()
    {
        checked
        {
            long trunk = Backbone?.ParameterCount(InputSize) ?? 0;
            int previous = InputSize;
            foreach (int h in HiddenSizes) { trunk += (long)previous * h + h; previous = h; }
            long head = (long)TrunkOutputSize * OutputSize + OutputSize;
            long lateral = LateralParameterCountPerSource * ((long)HeadCount * (HeadCount - 1) / 2);
            return trunk * (SeparateTrunks ? HeadCount : 1) + HeadCount * head + lateral;
        }
    }

    /// <summary>Lateral layers from column <c>source</c> into column <c>target</c> (progressive only): one into each hidden
    /// layer after the first and one into the head, so as many as there are hidden layers.</summary>
    public int LateralsPerPair => Columns == NetworkColumns.Progressive ? HiddenSizes.Length : 0;

    /// <summary>Index of the first lateral layer of column <paramref name="target"/> in the flat list (pairs ordered by target, then source, then layer).</summary>
    public int FirstLateral(int target) => LateralsPerPair * (target * (target - 1) / 2);

    /// <summary>Weights and biases of one trunk (column).</summary>
    public long TrunkParameterCount
    {
        get
        {
            long count = 0;
            int previous = InputSize;
            foreach (int h in HiddenSizes) { count += (long)previous * h + h; previous = h; }
            return count;
        }
    }

    /// <summary>Weights and biases of one head.</summary>
    public long HeadParameterCount => (long)TrunkOutputSize * OutputSize + OutputSize;

    /// <summary>Lateral weights (no bias) from one source column into one target column: source layer i−1 into target
    /// layer i for every hidden layer after the first, and the last hidden layer into the head (progressive only).</summary>
    public long LateralParameterCountPerSource
    {
        get
        {
            if (Columns != NetworkColumns.Progressive || HiddenSizes.Length == 0) return 0;
            long perPair = (long)HiddenSizes[^1] * OutputSize;
            for (int i = 1; i < HiddenSizes.Length; i++) perPair += (long)HiddenSizes[i - 1] * HiddenSizes[i];
            return perPair;
        }
    }

    public long ParameterCount =>
        TrunkParameterCount * (SeparateTrunks ? HeadCount : 1) + HeadCount * HeadParameterCount
        + LateralParameterCountPerSource * ((long)HeadCount * (HeadCount - 1) / 2);
}

/// <summary>Per-head views of the shared trunk's layers (PackNet's and CPG's masks): for each head, the weight and bias
/// each trunk layer computes with. Attached to a network by its plugin (<see cref="ContinualPlugin.AttachTo"/>).</summary>
internal interface ITrunkWeightView
{
    /// <summary>The weight and bias layer <paramref name="layer"/> uses for rows of head <paramref name="head"/>: the
    /// parameters themselves, a masked copy that gradients flow through, or a masked slice (the widths the head was
    /// trained with, when the layers grew later). The head's own output layer reads as many inputs as the trunk gives.</summary>
    (Tensor Weight, Tensor Bias) LayerFor(int head, int layer, Tensor weight, Tensor bias);
}

/// <summary>
/// A continual model's network: a backbone (the trunk; by default a multilayer perceptron) and one or more linear output
/// heads (one per task when the model is task-incremental), which the library grows when new classes or task ids
/// arrive. Heads are selected per row, so a batch may mix tasks (as replay does). With one trunk per head (the
/// independent baseline) each head has its own backbone; with progressive columns each head's perceptron also receives
/// lateral connections from every earlier column (Rusu et al. 2016, eq. 1):
/// h_i^(k) = f(W_i^(k) h_{i-1}^(k) + b_i^(k) + Σ_{j&lt;k} U_i^(k:j) h_{i-1}^(j)).
/// </summary>
public sealed class ContinualNetwork : nn.Module
{
    private readonly ModuleList<nn.Module<Tensor, Tensor>> trunks;
    private readonly ModuleList<Linear> heads;
    private readonly ModuleList<Linear> laterals;
    private readonly RandomSource _random = new();

    /// <summary>A network of <paramref name="shape"/>, its parameters drawn from <paramref name="init"/> (in the order the
    /// layers are made: trunks, heads, laterals; each weight, then its bias), or left as TorchSharp's layers draw them from
    /// the process-wide generator when null (a network about to be loaded from a file).</summary>
    internal ContinualNetwork(NetworkShape shape, Generator? init) : base(nameof(ContinualNetwork))
    {
        Shape = shape;
        int previous = shape.TrunkOutputSize;
        trunks = nn.ModuleList(Enumerable.Range(0, shape.SeparateTrunks ? shape.HeadCount : 1).Select(_ => CreateTrunk(shape, init)).ToArray());
        heads = nn.ModuleList(Enumerable.Range(0, shape.HeadCount).Select(_ => Initialized(nn.Linear(previous, shape.OutputSize), init)).ToArray());
        var lateralLayers = new List<Linear>();
        for (int target = 1; target < shape.HeadCount && shape.LateralsPerPair > 0; target++)
            for (int source = 0; source < target; source++)
                for (int i = 1; i <= shape.HiddenSizes.Length; i++)
                    lateralLayers.Add(Initialized(nn.Linear(shape.HiddenSizes[i - 1], i < shape.HiddenSizes.Length ? shape.HiddenSizes[i] : shape.OutputSize, hasBias: false), init));
        laterals = nn.ModuleList(lateralLayers.ToArray());
        RegisterComponents();
    }

    private static Linear Initialized(Linear layer, Generator? init)
    {
        if (init is not null) Initializer.Reset(layer.weight!, layer.bias, init);
        return layer;
    }

    private nn.Module<Tensor, Tensor> CreateTrunk(NetworkShape shape, Generator? init)
    {
        if (shape.Backbone is { } backbone) return backbone.CreateModule(new ContinualBackboneContext(shape.InputSize, init, _random));
        var layers = new List<(string, nn.Module<Tensor, Tensor>)>();
        int previous = shape.InputSize;
        for (int i = 0; i < shape.HiddenSizes.Length; i++)
        {
            layers.Add(($"linear{i}", Initialized(nn.Linear(previous, shape.HiddenSizes[i]), init)));
            layers.Add(($"activation{i}", shape.Activation switch
            {
                ContinualActivation.Tanh => nn.Tanh(),
                ContinualActivation.Sigmoid => nn.Sigmoid(),
                ContinualActivation.Gelu => nn.GELU(),
                _ => nn.ReLU(),
            }));
            if (shape.Dropout > 0) layers.Add(($"dropout{i}", new SeededDropout(shape.Dropout, _random)));
            previous = shape.HiddenSizes[i];
        }
        return nn.Sequential(layers);
    }

    internal NetworkShape Shape { get; }

    /// <summary>The backbone under the heads, or null for the default multilayer perceptron.</summary>
    public ContinualBackbone? Backbone => Shape.Backbone;

    /// <summary>The number of heads (one per task for a task-incremental model, else 1).</summary>
    public int HeadCount => Shape.HeadCount;

    /// <summary>The width of every head's outputs.</summary>
    public int OutputSize => Shape.OutputSize;

    /// <summary>The generator dropout draws its masks from while the network trains in a fit (null: torch's process-wide one).</summary>
    internal Generator? Random
    {
        get => _random.Generator;
        set => _random.Generator = value;
    }

    /// <summary>Whether the trunk is the default multilayer perceptron (the architecture family needs it).</summary>
    internal bool IsPerceptron => Shape.Backbone is null;

    /// <summary>Per-head views of the shared trunk's weights, or null (every head uses the weights as they are).
    /// Not saved with the weights: the plugin that owns the masks attaches itself after making or loading the network.</summary>
    internal ITrunkWeightView? TrunkWeightView { get; set; }

    /// <summary>Outputs (logits) for each row; <paramref name="headOfRow"/> picks each row's head (null: head 0).</summary>
    /// <param name="features">[rows, features].</param>
    /// <param name="headOfRow">[rows] int64, or null.</param>
    public Tensor Forward(Tensor features, Tensor? headOfRow)
    {
        using var scope = NewDisposeScope();
        if ((headOfRow is null || Shape.HeadCount == 1) && TrunkWeightView is null)
            return heads[0].call(trunks[0].call(features)).MoveToOuterDisposeScope();
        if (headOfRow is null || Shape.HeadCount == 1)
            return HeadOutput(0, features).MoveToOuterDisposeScope();
        Tensor? shared = Shape.Columns == NetworkColumns.Shared && TrunkWeightView is null ? trunks[0].call(features) : null;
        Tensor output = zeros(features.shape[0], Shape.OutputSize, dtype: features.dtype, device: features.device);
        // Only the heads present in the batch run; rows are gathered, scored and put back in place.
        var present = headOfRow.unique().output.data<long>().ToArray();
        foreach (long head in present)
        {
            Tensor rows = headOfRow.eq(CachedScalars.Index(head)).nonzero().squeeze(1);
            Tensor scored = shared is null ? HeadOutput((int)head, features.index_select(0, rows)) : heads[(int)head].call(shared.index_select(0, rows));
            output = output.index_copy(0, rows, scored);
        }
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>The outputs of head <paramref name="head"/> for rows that all belong to it.</summary>
    private Tensor HeadOutput(int head, Tensor features)
    {
        switch (Shape.Columns)
        {
            case NetworkColumns.PerTask:
                return heads[head].call(trunks[head].call(features));
            case NetworkColumns.Progressive:
                return ProgressiveOutput(head, features);
            default:
                if (TrunkWeightView is null) return heads[head].call(trunks[0].call(features));
                Tensor hidden = MaskedTrunk(head, features);
                var output = heads[head];
                // A head trained before the layers grew reads only the units that existed then.
                // (copied contiguous: the same memory layout, so the same arithmetic, as before the layers grew)
                return hidden.shape[1] == output.weight!.shape[1] ? output.call(hidden)
                    : nn.functional.linear(hidden, output.weight!.narrow(1, 0, hidden.shape[1]).contiguous(), output.bias);
        }
    }

    /// <summary>The weight and bias of each dense layer rows of head <paramref name="head"/> pass through, trunk first and
    /// the head last, as <see cref="Forward"/> computes them (perceptron trunks, shared or one per task; not progressive).</summary>
    internal IReadOnlyList<(Tensor Weight, Tensor Bias)> DenseChain(int head)
    {
        if (!IsPerceptron || Shape.Columns == NetworkColumns.Progressive)
            throw new InvalidOperationException("Only a perceptron without lateral connections is a chain of dense layers.");
        var trunk = TrunkLinears(Shape.Columns == NetworkColumns.PerTask ? head : 0);
        var chain = new List<(Tensor Weight, Tensor Bias)>();
        for (int i = 0; i < trunk.Count; i++)
            chain.Add(TrunkWeightView is { } view && Shape.Columns == NetworkColumns.Shared
                ? view.LayerFor(head, i, trunk[i].weight!, trunk[i].bias!)
                : (trunk[i].weight!, trunk[i].bias!));
        var output = heads[head];
        long width = chain.Count > 0 ? chain[^1].Weight.shape[0] : Shape.InputSize;
        chain.Add((width == output.weight!.shape[1] ? output.weight! : output.weight!.narrow(1, 0, width), output.bias!));
        return chain;
    }

    /// <summary>The shared trunk computed with head <paramref name="head"/>'s view of the weights.</summary>
    private Tensor MaskedTrunk(int head, Tensor x)
    {
        var view = TrunkWeightView!;
        var trunk = TrunkLinears(0);
        for (int i = 0; i < trunk.Count; i++)
        {
            var (weight, bias) = view.LayerFor(head, i, trunk[i].weight!, trunk[i].bias!);
            x = nn.functional.linear(x, weight, bias);
            x = Activate(x);
            if (Shape.Dropout > 0) x = SeededDropout.Apply(x, Shape.Dropout, training, _random);
        }
        return x;
    }

    /// <summary>Progressive networks: columns 0..<paramref name="head"/> are run layer by layer; every earlier column is
    /// computed without gradients (it is frozen: Rusu et al. train only the newest column and its lateral connections).</summary>
    private Tensor ProgressiveOutput(int head, Tensor x)
    {
        int depth = Shape.HiddenSizes.Length;
        var activations = new Tensor[head + 1]; // each column's output of the previous layer
        for (int column = 0; column <= head; column++) activations[column] = x;
        for (int i = 0; i < depth; i++)
        {
            var next = new Tensor[head + 1];
            for (int column = 0; column <= head; column++)
            {
                using var frozen = column < head ? no_grad() : null;
                var layer = TrunkLinears(column)[i];
                Tensor z = layer.call(activations[column]);
                if (i > 0)
                    for (int source = 0; source < column; source++)
                        z = z + laterals[LateralIndex(column, source, i)].call(activations[source]);
                z = Activate(z);
                // Frozen columns are fixed functions: only the column being trained drops units.
                if (Shape.Dropout > 0 && column == head) z = SeededDropout.Apply(z, Shape.Dropout, training, _random);
                next[column] = z;
            }
            activations = next;
        }
        Tensor output = heads[head].call(activations[head]);
        if (depth > 0)
            for (int source = 0; source < head; source++)
                output = output + laterals[LateralIndex(head, source, depth)].call(activations[source]);
        return output;
    }

    /// <summary>Progressive networks, for export: column <paramref name="column"/>'s dense layer <paramref name="layer"/>.</summary>
    internal (Tensor Weight, Tensor Bias) ColumnLayer(int column, int layer) => (TrunkLinears(column)[layer].weight!, TrunkLinears(column)[layer].bias!);

    /// <summary>Progressive networks, for export: the lateral weight (no bias) from column <paramref name="source"/>'s
    /// output of layer <paramref name="layer"/> − 1 into column <paramref name="target"/>'s layer <paramref name="layer"/>
    /// (layer = depth: into the head).</summary>
    internal Tensor LateralWeight(int target, int source, int layer) => laterals[LateralIndex(target, source, layer)].weight!;

    /// <summary>Trunk <paramref name="trunk"/>'s module (a backbone's, for export).</summary>
    internal nn.Module<Tensor, Tensor> TrunkModule(int trunk) => trunks[trunk];

    /// <summary>Head <paramref name="head"/>'s output layer.</summary>
    internal (Tensor Weight, Tensor Bias) HeadLayer(int head) => (heads[head].weight!, heads[head].bias!);

    private int LateralIndex(int target, int source, int layer) => Shape.FirstLateral(target) + source * Shape.LateralsPerPair + (layer - 1);

    private readonly Dictionary<int, List<Linear>> _trunkLinears = new();

    private List<Linear> TrunkLinears(int trunk)
    {
        if (!IsPerceptron) throw new InvalidOperationException("Only the multilayer perceptron's layers are addressed one by one.");
        if (!_trunkLinears.TryGetValue(trunk, out var list))
        {
            list = trunks[trunk].named_children().Where(c => c.name.StartsWith("linear", StringComparison.Ordinal)).Select(c => (Linear)c.module).ToList();
            _trunkLinears[trunk] = list;
        }
        return list;
    }

    private Tensor Activate(Tensor x) => Shape.Activation switch
    {
        ContinualActivation.Tanh => x.tanh(),
        ContinualActivation.Sigmoid => x.sigmoid(),
        ContinualActivation.Gelu => nn.functional.gelu(x),
        _ => nn.functional.relu(x),
    };

    /// <summary>The weight and bias of each shared-trunk layer, in order (for masks over the perceptron's trunk).</summary>
    internal IReadOnlyList<(Parameter Weight, Parameter Bias)> SharedTrunkLayers() =>
        TrunkLinears(0).Select(l => ((Parameter)l.weight!, (Parameter)l.bias!)).ToList();

    /// <summary>The parameters of head <paramref name="head"/> (its linear layer).</summary>
    public IEnumerable<Parameter> HeadParameters(int head) => heads[head].parameters();

    /// <summary>The backbone's output for each row (the shared trunk's features the heads read), e.g. for herding or class means.</summary>
    public Tensor Embed(Tensor features) => trunks[0].call(features);

    /// <summary>The outputs of head <paramref name="head"/> for the backbone features <paramref name="embedded"/> (shared trunk only).</summary>
    public Tensor HeadOutputs(int head, Tensor embedded) => heads[head].call(embedded);

    private IReadOnlyList<(string Name, Parameter Value)>? _orderedParameters;

    /// <summary>Moves the network to <paramref name="device"/> (moving may replace the parameter objects, so the cached list is rebuilt).</summary>
    internal void MoveTo(Device device)
    {
        this.to(device);
        _orderedParameters = null;
        _trunkLinears.Clear();
    }

    /// <summary>All parameters in a fixed order (trunk first, then heads, then laterals) with their names; the list is built once (hooks call this at every step).</summary>
    public IReadOnlyList<(string Name, Parameter Value)> OrderedParameters() =>
        _orderedParameters ??= named_parameters().Select(p => (p.name, p.parameter)).ToList();

    /// <summary>A new network of shape <paramref name="shape"/> holding this network's weights: the trunk
    /// unchanged, every existing head's existing outputs unchanged; new outputs and new heads keep their fresh
    /// initialisation (drawn from torch's generator, which the caller seeds).</summary>
    internal ContinualNetwork GrowTo(NetworkShape shape, Generator? init)
    {
        if (shape.InputSize != Shape.InputSize || !shape.HiddenSizes.SequenceEqual(Shape.HiddenSizes) || shape.Columns != Shape.Columns
            || shape.OutputSize < Shape.OutputSize || shape.HeadCount < Shape.HeadCount || !SameBackbone(shape.Backbone, Shape.Backbone))
            throw new InvalidOperationException("A network can only grow its outputs and heads.");
        var grown = new ContinualNetwork(shape, init);
        var source = named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (no_grad())
        {
            foreach (var (name, target) in grown.named_parameters())
            {
                if (!source.TryGetValue(name, out var old)) continue; // a new head (or trunk, or lateral layer)
                if (old.shape.SequenceEqual(target.shape)) target.copy_(old);
                else target.narrow(0, 0, old.shape[0]).copy_(old); // a grown head (or lateral into a head): old outputs first
            }
        }
        return grown;
    }

    /// <summary>A new network whose hidden layers are <paramref name="hiddenSizes"/> wide (at least the current widths; shared
    /// trunk only): every existing weight, bias and head input keeps its value and place (the top-left block); the new
    /// units' weights keep their fresh initialisation (drawn from torch's generator).</summary>
    internal ContinualNetwork WidenTo(int[] hiddenSizes, Generator? init)
    {
        if (!IsPerceptron || Shape.Columns != NetworkColumns.Shared || hiddenSizes.Length != Shape.HiddenSizes.Length || hiddenSizes.Zip(Shape.HiddenSizes).Any(p => p.First < p.Second))
            throw new InvalidOperationException("Only a shared perceptron trunk's hidden layers can be widened, and only wider.");
        var wider = new ContinualNetwork(Shape with { HiddenSizes = hiddenSizes }, init);
        var source = named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using (no_grad())
        {
            foreach (var (name, target) in wider.named_parameters())
            {
                var old = source[name];
                Tensor block = target;
                for (int d = 0; d < old.dim(); d++) block = block.narrow(d, 0, old.shape[d]);
                block.copy_(old);
            }
        }
        return wider;
    }

    /// <summary>Whether two backbones are the same kind with the same settings (the perceptron is null).</summary>
    internal static bool SameBackbone(ContinualBackbone? a, ContinualBackbone? b) =>
        a is null ? b is null : b is not null && a.GetType() == b.GetType() && Settings.ToPairs(a).SequenceEqual(Settings.ToPairs(b));

    /// <summary>An independent copy (same shape, same weights), in evaluation mode; its fresh layers' draws (overwritten
    /// by the copy) come from <paramref name="random"/>, as a fit's every draw does.</summary>
    public ContinualNetwork Copy(Generator? random = null)
    {
        var copy = GrowTo(Shape, random);
        copy.MoveTo(parameters().First().device);
        copy.TrunkWeightView = TrunkWeightView;
        copy.eval();
        return copy;
    }

    /// <summary>Gives every parameter a fresh initialisation drawn from <paramref name="init"/>.</summary>
    internal void Reinitialize(Generator? init)
    {
        using var fresh = new ContinualNetwork(Shape, init);
        fresh.MoveTo(parameters().First().device);
        var source = fresh.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var _ = no_grad();
        foreach (var (name, target) in named_parameters()) target.copy_(source[name]);
    }

    internal void WriteWeights(BinaryWriter w)
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

    /// <summary>Reads what <see cref="WriteWeights"/> wrote; with <paramref name="wholeEntry"/>, the stream must end right after.</summary>
    internal void ReadWeights(BinaryReader r, bool wholeEntry = false)
    {
        var budget = TensorIO.Budget(r, "network entry ('Network.bin')");
        var parameters = OrderedParameters();
        int count = budget.Int32();
        if (count < 0 || count > ModelIO.MaxCount) throw new ContinualModelFormatException($"The network entry's parameter count {count} is out of range.");
        if (count != parameters.Count)
            throw new ContinualModelFormatException($"The network entry has {count} parameters; a network of this shape has {parameters.Count}.");
        using var _ = no_grad();
        foreach (var (name, value) in parameters)
        {
            string storedName = budget.String(1024);
            int rank = budget.Int32();
            if (storedName != name || rank != value.dim())
                throw new ContinualModelFormatException($"The network entry holds '{storedName}' (rank {rank}) where '{name}' (rank {value.dim()}) was expected.");
            for (int i = 0; i < rank; i++)
            {
                long d = budget.Int64();
                if (d != value.shape[i])
                    throw new ContinualModelFormatException($"Parameter '{name}' has size {d} in dimension {i}; {value.shape[i]} was expected.");
            }
            float[] data = budget.Array<float>(value.numel());
            using Tensor loaded = tensor(data, value.shape).clone();
            value.copy_(loaded);
        }
        if (wholeEntry) budget.CheckConsumed();
    }
}
