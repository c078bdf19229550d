using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// The rows trained on since the last boundary inside a fit: a uniform reservoir sample of at most
/// <see cref="ContinualTrainerOptions.BoundarySampleRows"/> of them (the online memories' <see cref="ReservoirBuffer"/>,
/// emptied at each boundary), which the next consolidation estimates from. Its memory is bounded however many steps a
/// boundary spans.
/// </summary>
internal sealed class BoundaryWindow : IDisposable
{
    private readonly ReservoirBuffer _rows;
    private readonly Random _random;

    /// <param name="capacity">The most rows kept.</param>
    /// <param name="seed">The reservoir's seed.</param>
    /// <param name="savable">Whether the reservoir's generator must be saved with the window (a fit that continues across
    /// fits); otherwise it is <see cref="System.Random"/>, as it has always been.</param>
    public BoundaryWindow(int capacity, long seed, bool savable = false)
    {
        _rows = new ReservoirBuffer(capacity);
        _random = SavableRandom.For(savable, seed ^ 0x424E_4457);
    }

    private BoundaryWindow(ReservoirBuffer rows, Random random)
    {
        _rows = rows;
        _random = random;
    }

    /// <summary>Rows in the sample.</summary>
    public int Count => _rows.Count;

    /// <summary>Offers every row of a trained batch to the reservoir, in the batch's order.</summary>
    public void Add(ContinualBatch batch) => _rows.Add(batch, logits: null, _random);

    /// <summary>The sample as task data (copies, owned by the caller), and an empty reservoir for the next window.</summary>
    public ContinualTaskData Take()
    {
        if (_rows.Count == 0) throw new InvalidOperationException("The boundary window is empty.");
        using var scope = NewDisposeScope();
        var taken = new ContinualTaskData(_rows.Features!.clone().DetachFromDisposeScope(), _rows.Targets!.clone().DetachFromDisposeScope(),
            _rows.Heads?.clone().DetachFromDisposeScope());
        _rows.Clear();
        return taken;
    }

    /// <summary>Writes the sample and its generator's position under <paramref name="prefix"/>.</summary>
    public void Save(ContinualState state, string prefix)
    {
        _rows.Save(state, prefix + "rows/");
        ((SavableRandom)_random).Save(state, prefix + "random");
    }

    /// <summary>The window <see cref="Save"/> wrote, on <paramref name="device"/>.</summary>
    public static BoundaryWindow Load(ContinualState state, string prefix, int capacity, int featureSize, Device device)
    {
        int held = state.GetInt32(prefix + "rows/count");
        if (held > capacity)
            throw new ArgumentException($"The model's window since the last boundary holds {held} rows; BoundarySampleRows is now {capacity}. Keep BoundarySampleRows as it was while a pass continues across fits.", "options");
        var rows = ReservoirBuffer.Load(state, prefix + "rows/", capacity);
        if (rows.Count > 0 && (rows.Features!.shape[1] != featureSize || rows.Features.dtype != ScalarType.Float32))
        {
            rows.Dispose();
            throw new ContinualModelFormatException($"The stream continuation's window does not hold rows of {featureSize} features.");
        }
        rows.MoveTo(device);
        return new BoundaryWindow(rows, SavableRandom.Load(state, prefix + "random"));
    }

    public void Dispose() => _rows.Dispose();
}

/// <summary>
/// Aljundi, Kelchtermans and Tuytelaars (2019), "Task-Free Continual Learning", §3.2, as in the authors' code: a window
/// of the last W steps' task losses, a peak when its mean exceeds the mean plus one standard deviation of the window at
/// the last consolidation, and a consolidation when, after a peak, the mean and the variance are both below their
/// thresholds (<see cref="ContinualBoundaries.OnLossPlateau"/>).
/// </summary>
internal sealed class LossPlateauDetector : IBoundaryDetector
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

    /// <summary>Writes the window of losses and what the last plateau left under <paramref name="prefix"/>.</summary>
    public void Save(ContinualState state, string prefix)
    {
        using var losses = TorchSharp.torch.tensor(_window.ToArray(), TorchSharp.torch.ScalarType.Float64);
        state.Set(prefix + "losses", losses);
        state.Set(prefix + "last mean", _lastMean);
        state.Set(prefix + "last variance", _lastVariance);
        state.Set(prefix + "peak seen", _peakSeen);
    }

    /// <summary>Restores what <see cref="Save"/> wrote into this detector (made with the same options).</summary>
    public void Load(ContinualState state, string prefix)
    {
        using var losses = state.GetTensor(prefix + "losses");
        if (losses.dtype != TorchSharp.torch.ScalarType.Float64 || losses.dim() != 1 || losses.shape[0] > _length)
            throw new ContinualModelFormatException($"The loss-plateau detector's window is not at most {_length} losses.");
        _window.Clear();
        foreach (double loss in losses.data<double>().ToArray()) _window.Enqueue(loss);
        _lastMean = state.GetDouble(prefix + "last mean");
        _lastVariance = state.GetDouble(prefix + "last variance");
        _peakSeen = state.GetBoolean(prefix + "peak seen");
    }

    public string Kind => "loss plateau";

    public bool Observe(ContinualBatch batch, double taskLoss) => Observe(taskLoss);

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
