using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// The rows trained on since the last boundary inside a fit (<see cref="ContinualBoundaries.EverySteps"/>): a uniform
/// reservoir sample of at most <see cref="ContinualTrainerOptions.BoundarySampleRows"/> of them (Vitter's algorithm R),
/// which the next consolidation estimates from. Its memory is bounded however many steps a boundary spans.
/// </summary>
internal sealed class BoundaryWindow : IDisposable
{
    private readonly int _capacity;
    private readonly Random _random;
    private Tensor? _features, _targets, _heads;
    private int _filled;
    private long _seen;

    public BoundaryWindow(int capacity, long seed)
    {
        _capacity = capacity;
        _random = new Random(unchecked((int)(seed ^ 0x424E_4457)));
    }

    /// <summary>Rows in the sample.</summary>
    public int Count => _filled;

    /// <summary>Offers every row of a trained batch to the reservoir, in the batch's order.</summary>
    public void Add(ContinualBatch batch)
    {
        var slotOfRow = new SortedDictionary<long, long>(); // slot → the batch row that ends in it (a later row wins, as one row at a time would)
        for (long row = 0; row < batch.Rows; row++)
        {
            long seen = _seen++;
            long slot = _filled < _capacity ? _filled++ : _random.NextInt64(seen + 1);
            if (slot < _capacity) slotOfRow[slot] = row;
        }
        if (slotOfRow.Count == 0) return;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        _features ??= Allocate(batch.Features);
        _targets ??= Allocate(batch.Targets);
        if (batch.Heads is not null) _heads ??= Allocate(batch.Heads);
        var device = batch.Features.device;
        Tensor slots = tensor(slotOfRow.Keys.ToArray(), device: device), rows = tensor(slotOfRow.Values.ToArray(), device: device);
        _features.index_copy_(0, slots, batch.Features.index_select(0, rows));
        _targets.index_copy_(0, slots, batch.Targets.index_select(0, rows));
        if (batch.Heads is not null) _heads!.index_copy_(0, slots, batch.Heads.index_select(0, rows));
    }

    private Tensor Allocate(Tensor like) =>
        zeros([_capacity, .. like.shape.Skip(1)], dtype: like.dtype, device: like.device).DetachFromDisposeScope();

    /// <summary>The sample as task data (copies, owned by the caller), and an empty reservoir for the next window.</summary>
    public ContinualTaskData Take()
    {
        if (_filled == 0 || _features is null || _targets is null) throw new InvalidOperationException("The boundary window is empty.");
        using var scope = NewDisposeScope();
        var taken = new ContinualTaskData(_features.narrow(0, 0, _filled).clone().DetachFromDisposeScope(),
            _targets.narrow(0, 0, _filled).clone().DetachFromDisposeScope(), _heads?.narrow(0, 0, _filled).clone().DetachFromDisposeScope());
        _filled = 0;
        _seen = 0;
        return taken;
    }

    public void Dispose()
    {
        _features?.Dispose();
        _targets?.Dispose();
        _heads?.Dispose();
    }
}

/// <summary>
/// Aljundi, Kelchtermans and Tuytelaars (2019), "Task-Free Continual Learning", §3.2, as in the authors' code: a window
/// of the last W steps' task losses, a peak when its mean exceeds the mean plus one standard deviation of the window at
/// the last consolidation, and a consolidation when, after a peak, the mean and the variance are both below their
/// thresholds (<see cref="ContinualBoundaries.OnLossPlateau"/>).
/// </summary>
internal sealed class LossPlateauDetector
{
    private readonly int _length;
    private readonly double _meanThreshold, _varianceThreshold;
    private readonly Queue<double> _window = new();
    private double _lastMean, _lastVariance;
    private bool _peakSeen = true; // the first plateau needs no peak

    public LossPlateauDetector(int length, double meanThreshold, double varianceThreshold)
    {
        _length = length;
        _meanThreshold = meanThreshold;
        _varianceThreshold = varianceThreshold;
    }

    /// <summary>Adds a step's task loss; true when the loss has reached a plateau after a peak (a boundary).</summary>
    public bool Observe(double loss)
    {
        _window.Enqueue(loss);
        if (_window.Count > _length) _window.Dequeue();
        double mean = _window.Average();
        double variance = _window.Sum(l => (l - mean) * (l - mean)) / _window.Count; // numpy's var: the population variance
        if (!_peakSeen && mean > _lastMean + Math.Sqrt(_lastVariance)) _peakSeen = true;
        if (!(_peakSeen && mean < _meanThreshold && variance < _varianceThreshold)) return false;
        _lastMean = mean;
        _lastVariance = variance;
        _peakSeen = false;
        return true;
    }
}
