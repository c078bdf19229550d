using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>What places boundaries inside a fit from what the steps see (<see cref="ContinualBoundaries.OnLossPlateau"/>,
/// <see cref="ContinualBoundaries.OnInputShift"/>); <see cref="ContinualBoundaries.EverySteps"/> needs none.</summary>
internal interface IBoundaryDetector
{
    /// <summary>The detector's name in a stream continuation (a fit that continues with another kind starts it empty).</summary>
    string Kind { get; }

    /// <summary>Takes a trained step's batch and task loss; true when a boundary is due.</summary>
    bool Observe(ContinualBatch batch, double taskLoss);

    /// <summary>Writes what the detector has seen under <paramref name="prefix"/>.</summary>
    void Save(ContinualState state, string prefix);

    /// <summary>Restores what <see cref="Save"/> wrote into this detector (made with the same options).</summary>
    void Load(ContinualState state, string prefix);
}

/// <summary>
/// Boundaries where the inputs shift (<see cref="ContinualBoundaries.OnInputShift"/>): the trained rows are taken in
/// blocks of <see cref="ContinualTrainerOptions.BoundaryShiftRows"/>; each full block is compared with a uniform sample
/// (as many rows, a reservoir) of the rows trained on since the last boundary before it, by shift detection's two-sample
/// test (<see cref="ShiftTest.MmdPermutationTest"/>: the MMD with a Gaussian kernel and a permutation p-value, Gretton et
/// al. 2012). When p ≤ <see cref="ContinualTrainerOptions.BoundaryShiftAlpha"/> a boundary is due and the reference starts
/// again from that block; otherwise the block joins the reference. Features beyond 32 are first projected on 32 fixed
/// Gaussian directions (Johnson–Lindenstrauss: the distances the kernel reads are kept up to a small factor), which
/// keeps a test at O(n² · 32) whatever the width.
/// </summary>
/// <remarks>Each test is a test at level α, and a pass makes one per block, so a stream with no shift still gets about
/// α · blocks boundaries (a consolidation on rows of one distribution, as <see cref="ContinualBoundaries.EverySteps"/>
/// makes). A gradual shift can be found more than once while it lasts: the reference restarts at the first block that
/// differs.</remarks>
internal sealed class InputShiftDetector : IBoundaryDetector, IDisposable
{
    private const long MaxCount = 1L << 50; // bounds the counters read from a file (far above any stream's rows)
    public const int ProjectedWidth = 32;

    private readonly int _featureSize, _width, _blockRows, _permutations;
    private readonly double _alpha;
    private readonly long _seed;
    private readonly Tensor? _projection; // [features, 32] on the CPU, or null when the features are at most 32
    private Random _random;
    private readonly float[] _reference, _block;
    private int _referenceCount, _blockCount;
    private long _referenceSeen, _tests;

    /// <param name="featureSize">The network's input width.</param>
    /// <param name="blockRows">Rows per tested block, and the most rows of the reference.</param>
    /// <param name="alpha">The level of each test.</param>
    /// <param name="seed">The fit's seed (the projection, the reservoir and the permutations derive from it).</param>
    /// <param name="savable">Whether the reservoir's generator must be saved (a pass continued across fits).</param>
    public InputShiftDetector(int featureSize, int blockRows, double alpha, long seed, bool savable)
    {
        _featureSize = featureSize;
        _width = Math.Min(featureSize, ProjectedWidth);
        _blockRows = blockRows;
        _alpha = alpha;
        // p = (1 + #at least as large) / (1 + B) can reach α only when B ≥ 1/α − 1; twice that resolves it.
        _permutations = (int)Math.Max(Math.Ceiling(2 / alpha) - 1, 99); // α ≥ 1e-4 (validated): at most 19,999
        _seed = seed;
        _random = SavableRandom.For(savable, seed ^ 0x5348_4654);
        _reference = new float[(long)blockRows * _width];
        _block = new float[(long)blockRows * _width];
        if (featureSize > ProjectedWidth) _projection = Projection(featureSize, seed);
    }

    public string Kind => "input shift";

    /// <summary>A [features, 32] matrix of independent N(0, 1/32) entries from <paramref name="seed"/> (Box–Muller), the same on every machine.</summary>
    private static Tensor Projection(int featureSize, long seed)
    {
        var random = new Random(unchecked((int)(seed ^ 0x4A4C_5052)));
        var values = new float[(long)featureSize * ProjectedWidth];
        double scale = 1 / Math.Sqrt(ProjectedWidth);
        for (long i = 0; i < values.Length; i++)
            values[i] = (float)(scale * Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
        return tensor(values, [featureSize, ProjectedWidth]).DetachFromDisposeScope();
    }

    public bool Observe(ContinualBatch batch, double taskLoss)
    {
        float[] rows = Projected(batch.Features);
        bool due = false;
        for (int row = 0; row < rows.Length / _width; row++)
        {
            Array.Copy(rows, (long)row * _width, _block, (long)_blockCount * _width, _width);
            if (++_blockCount < _blockRows) continue;
            if (_referenceCount >= _blockRows && Shifted())
            {
                // A boundary: the rows since it start with this block.
                Array.Copy(_block, _reference, _block.Length);
                _referenceCount = _blockRows;
                _referenceSeen = _blockRows;
                due = true;
            }
            else for (int i = 0; i < _blockRows; i++) Offer(i);
            _blockCount = 0;
        }
        return due;
    }

    private float[] Projected(Tensor features)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Tensor cpu = features.detach().cpu().to_type(ScalarType.Float32);
        if (_projection is not null) cpu = cpu.mm(_projection);
        return cpu.contiguous().data<float>().ToArray();
    }

    /// <summary>Algorithm R over the block's row <paramref name="row"/>: the reference stays a uniform sample of the rows since the boundary.</summary>
    private void Offer(int row)
    {
        _referenceSeen++;
        long slot = _referenceCount < _blockRows ? _referenceCount++ : _random.NextInt64(_referenceSeen);
        if (slot < _blockRows) Array.Copy(_block, (long)row * _width, _reference, slot * _width, _width);
    }

    private bool Shifted()
    {
        var features = Enumerable.Range(0, _width).ToArray();
        int seed = unchecked((int)(_seed * 1_000_003 + _tests * 7919 + 11));
        _tests++;
        var (pValue, _) = ShiftTest.MmdPermutationTest(new ShiftReference(_reference, _referenceCount, _width),
            new ShiftReference(_block, _blockRows, _width), features, _permutations, seed);
        return pValue <= _alpha;
    }

    public void Save(ContinualState state, string prefix)
    {
        using (var reference = tensor(_reference.AsSpan(0, _referenceCount * _width).ToArray(), [_referenceCount, _width])) state.Set(prefix + "reference", reference);
        using (var block = tensor(_block.AsSpan(0, _blockCount * _width).ToArray(), [_blockCount, _width])) state.Set(prefix + "block", block);
        state.Set(prefix + "reference seen", _referenceSeen);
        state.Set(prefix + "tests", _tests);
        ((SavableRandom)_random).Save(state, prefix + "random");
    }

    public void Load(ContinualState state, string prefix)
    {
        using var reference = state.GetTensor(prefix + "reference");
        using var block = state.GetTensor(prefix + "block");
        foreach (var (rows, name) in new[] { (reference, "reference"), (block, "block") })
            if (rows.dtype != ScalarType.Float32 || rows.dim() != 2 || rows.shape[1] != _width)
                throw new ContinualModelFormatException($"The input-shift detector's {name} is not rows of {_width} values.");
        // A full block is tested as it fills, so a saved one holds fewer rows than a block.
        if (reference.shape[0] > _blockRows || block.shape[0] >= _blockRows)
            throw new ArgumentException($"The model's input-shift detector holds blocks of more rows than BoundaryShiftRows = {_blockRows}. Keep BoundaryShiftRows as it was while a pass continues across fits.", "options");
        long seen = state.GetInt64(prefix + "reference seen"), tests = state.GetInt64(prefix + "tests");
        if (seen < reference.shape[0] || seen > MaxCount || tests < 0 || tests > MaxCount) throw new ContinualModelFormatException("The input-shift detector's counts are out of range.");
        _referenceCount = (int)reference.shape[0];
        if (_referenceCount > 0) reference.data<float>().CopyTo(_reference, 0); // (TorchSharp's CopyTo throws on an empty tensor)
        _blockCount = (int)block.shape[0];
        if (_blockCount > 0) block.data<float>().CopyTo(_block, 0);
        _referenceSeen = seen;
        _tests = tests;
        _random = SavableRandom.Load(state, prefix + "random");
    }

    public void Dispose() => _projection?.Dispose();
}
