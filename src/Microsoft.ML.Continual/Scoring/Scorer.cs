using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>Scores blocks of rows for <see cref="ScoredDataView"/> and <see cref="ContinualRowMapper"/>: a network, or boosted trees.</summary>
internal interface IBlockScorer
{
    int OutputSize { get; }

    /// <summary>Scores <paramref name="rows"/> rows of <paramref name="features"/> (each of the model's feature size) into
    /// <paramref name="outputs"/> (rows x OutputSize); <paramref name="heads"/> is each row's head for a multi-head model.</summary>
    void Score(float[] features, long[]? heads, int rows, float[] outputs);

    /// <summary>Scores one row (its head in <paramref name="heads"/>[0] for a multi-head model) into <paramref name="outputs"/>,
    /// for prediction engines: the same values as <see cref="Score"/> within 1e-6, by the fastest path the model has.</summary>
    void ScoreRow(float[] features, long[]? heads, float[] outputs) => Score(features, heads, 1, outputs);

    /// <summary>A buffer of <paramref name="capacity"/> input rows that a cursor fills row by row and scores in place:
    /// by default managed memory scored through <see cref="Score"/>.</summary>
    IInputBlock CreateInputBlock(int capacity, int featureSize) => new ManagedInputBlock(this, new float[capacity * featureSize], featureSize);
}

/// <summary>One block of input rows, filled by a cursor and scored without another copy; owned by one cursor.</summary>
internal interface IInputBlock : IDisposable
{
    /// <summary>Where the features of row <paramref name="index"/> of the block go.</summary>
    Span<float> Row(int index);

    /// <summary>Scores the first <paramref name="rows"/> rows into <paramref name="outputs"/> (rows x OutputSize).</summary>
    void Score(long[]? heads, int rows, float[] outputs);
}

internal sealed class ManagedInputBlock(IBlockScorer scorer, float[] features, int featureSize) : IInputBlock
{
    public Span<float> Row(int index) => features.AsSpan(index * featureSize, featureSize);
    public void Score(long[]? heads, int rows, float[] outputs) => scorer.Score(features, heads, rows, outputs);
    public void Dispose() { }
}

/// <summary>
/// Scores rows with a trained network: blocks (<see cref="ScoredDataView"/>) with one libtorch forward each, no
/// gradients, evaluation mode; single rows (prediction engines) with <see cref="DenseInference"/> when the network is a
/// plain perceptron, else with libtorch too. Outputs per row: multiclass, the class probabilities (0 for classes the
/// row's head may not predict); binary, the logit; regression, the value.
/// </summary>
/// <remarks>Concurrent scoring: a perceptron with no per-head weight views and no plugin at prediction time is scored
/// without a lock (libtorch's forward of fixed modules is reentrant, and the per-head class mask is made here, once);
/// other networks (a user's backbone, masks, progressive columns, iCaRL's and BiC's outputs) run one block at a time,
/// since their modules or plugins may keep caches.</remarks>
internal sealed class Scorer : IBlockScorer
{
    private readonly ContinualModelState _state;
    private readonly object? _lock;
    private readonly Device _device;
    private readonly Lazy<DenseInference?> _dense;

    public Scorer(ContinualModelState state)
    {
        _state = state;
        _device = new Device(state.Options.Device);
        _dense = new Lazy<DenseInference?>(() => DenseInference.TryCreate(state), LazyThreadSafetyMode.ExecutionAndPublication);
        bool reentrant = DenseInference.WhyNotADenseChain(state) is null && state.Network.TrunkWeightView is null;
        if (reentrant) state.AllowedOutputs(_device); // made now, read-only afterwards
        else _lock = new object();
    }

    public int OutputSize => _state.OutputSize;

    /// <summary>Whether single rows are scored by the managed copy of the network (<see cref="DenseInference"/>).</summary>
    internal bool ScoresRowsManaged => _dense.Value is not null;

    /// <inheritdoc/>
    public void ScoreRow(float[] features, long[]? heads, float[] outputs)
    {
        if (_dense.Value is { } dense) dense.Score(features.AsSpan(0, _state.FeatureSize), heads is null ? 0 : (int)heads[0], outputs.AsSpan(0, OutputSize));
        else Score(features, heads, 1, outputs);
    }

    /// <summary>Scores <paramref name="rows"/> rows of <paramref name="features"/> into <paramref name="outputs"/> (rows x OutputSize).</summary>
    public void Score(float[] features, long[]? heads, int rows, float[] outputs)
    {
        if (rows == 0) return;
        if (_lock is null) { Forward(features, heads, rows, outputs); return; }
        lock (_lock) Forward(features, heads, rows, outputs);
    }

    /// <summary>A block in libtorch's own memory, which the cursor fills directly: one copy fewer per row than filling
    /// managed memory and copying it in (<see cref="ToNative"/>), and the same 64-byte-aligned start.</summary>
    public IInputBlock CreateInputBlock(int capacity, int featureSize) => new NativeInputBlock(this, capacity, featureSize);

    /// <summary>The block copied into libtorch's own memory with one memory copy: wrapping the managed array made results
    /// drift by 1 ulp between runs (its alignment changes the kernels' paths), and TensorAccessor's copy goes value by value.</summary>
    private unsafe Tensor ToNative(ReadOnlySpan<float> block, int rows)
    {
        Tensor x = empty(rows, _state.FeatureSize);
        block.CopyTo(new Span<float>((void*)x.storage<float>().data_ptr(), block.Length));
        return x;
    }

    private void Forward(float[] features, long[]? heads, int rows, float[] outputs)
    {
        using var scope = NewDisposeScope();
        Forward(ToNative(features.AsSpan(0, rows * _state.FeatureSize), rows), heads, rows, outputs);
    }

    /// <summary>Scores the first <paramref name="rows"/> rows of <paramref name="block"/> (a contiguous CPU tensor).</summary>
    private void Forward(Tensor block, long[]? heads, int rows, float[] outputs)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        // On the CPU the moves and the copy to contiguous memory are skipped: each is a native call and a new handle per block.
        bool onCpu = _device.type == TorchSharp.DeviceType.CPU;
        Tensor x = rows == block.shape[0] ? block : block.narrow(0, 0, rows);
        if (!onCpu) x = x.to(_device);
        Tensor? h = heads is null ? null : tensor(heads.AsSpan(0, rows).ToArray());
        if (h is not null && !onCpu) h = h.to(_device);
        Tensor output = _state.Plugins.ScoringOutputs(_state.Network, x, h, _state.Network.Forward(x, h));
        if (_state.Kind == ContinualPredictionKind.Multiclass)
            output = nn.functional.softmax(_state.MaskLogits(output, h), 1);
        if (!onCpu) output = output.cpu();
        if (!output.is_contiguous()) output = output.contiguous();
        output.data<float>().CopyTo(outputs.AsSpan(0, rows * OutputSize));
    }

    private sealed unsafe class NativeInputBlock : IInputBlock
    {
        private readonly Scorer _scorer;
        private readonly Tensor _block;
        private readonly float* _start;
        private readonly int _featureSize;

        public NativeInputBlock(Scorer scorer, int capacity, int featureSize)
        {
            _scorer = scorer;
            _featureSize = featureSize;
            // Owned by the cursor, not by any dispose scope a caller has open around it.
            _block = empty(capacity, featureSize).DetachFromDisposeScope();
            _start = (float*)_block.storage<float>().data_ptr();
        }

        public Span<float> Row(int index) => new(_start + (long)index * _featureSize, _featureSize);

        public void Score(long[]? heads, int rows, float[] outputs)
        {
            if (rows == 0) return;
            if (_scorer._lock is null) { _scorer.Forward(_block, heads, rows, outputs); return; }
            lock (_scorer._lock) _scorer.Forward(_block, heads, rows, outputs);
        }

        public void Dispose() => _block.Dispose();
    }
}
