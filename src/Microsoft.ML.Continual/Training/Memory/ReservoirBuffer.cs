using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// A memory filled at every step (the online buffer of DER, DER++, ER-ACE and MIR): reservoir sampling over every row ever
/// offered (Vitter 1985, algorithm R: row n is kept with probability capacity / n, replacing a uniformly chosen slot), with
/// each row's features, target, head and, optionally, the logits the network gave it when it was stored. Adding a batch
/// costs O(batch); sampling O(sample). Rows live on the training device while a task runs and on the CPU in the store.
/// </summary>
/// <remarks>Logits are stored at the head's width when they were stored; when the head grows, the buffer widens with zeros
/// and remembers each row's width (<see cref="Widths"/>), so that a logit-matching loss compares only the outputs the row had.</remarks>
internal sealed class ReservoirBuffer : IDisposable
{
    private Tensor? _features, _targets, _heads, _logits, _widths;

    public ReservoirBuffer(int capacity) => Capacity = capacity;

    public int Capacity { get; }

    /// <summary>Rows held.</summary>
    public int Count { get; private set; }

    /// <summary>Rows ever offered (reservoir sampling's n).</summary>
    public long Seen { get; private set; }

    public Tensor? Features => _features?.narrow(0, 0, Count);
    public Tensor? Targets => _targets?.narrow(0, 0, Count);
    public Tensor? Heads => _heads?.narrow(0, 0, Count);
    public Tensor? Logits => _logits?.narrow(0, 0, Count);
    public Tensor? Widths => _widths?.narrow(0, 0, Count);

    /// <summary>Offers every row of a batch (with its logits, when the buffer keeps them); draws from <paramref name="random"/>.</summary>
    public void Add(ContinualBatch batch, Tensor? logits, System.Random random)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        long rows = batch.Rows;
        var sourceOfSlot = new SortedDictionary<long, long>(); // a slot taken twice in one batch keeps the later row, as one at a time would
        for (long i = 0; i < rows; i++)
        {
            Seen++;
            long slot = Count < Capacity ? Count++ : random.NextInt64(Seen);
            if (slot < Capacity) sourceOfSlot[slot] = i;
        }
        if (sourceOfSlot.Count == 0) return;
        var slots = sourceOfSlot.Keys.ToList();
        var sources = sourceOfSlot.Values.ToList();
        Allocate(batch, logits);
        var device = _features!.device;
        Tensor target = tensor(slots.ToArray()).to(device), source = tensor(sources.ToArray()).to(device);
        _features.index_copy_(0, target, batch.Features.index_select(0, source));
        _targets!.index_copy_(0, target, batch.Targets.index_select(0, source).to_type(_targets.dtype));
        if (_heads is not null && batch.Heads is not null) _heads.index_copy_(0, target, batch.Heads.index_select(0, source));
        if (_logits is not null && logits is not null)
        {
            Widen(logits.shape[1]);
            Tensor stored = logits.detach().index_select(0, source);
            if (stored.shape[1] < _logits.shape[1]) stored = nn.functional.pad(stored, [0, _logits.shape[1] - stored.shape[1]]);
            _logits.index_copy_(0, target, stored);
            _widths!.index_fill_(0, target, logits.shape[1]);
        }
    }

    /// <summary>Up to <paramref name="count"/> distinct rows drawn uniformly (as Mammoth's buffer samples, without replacement), as an index on the device.</summary>
    public Tensor? Sample(int count, Generator generator)
    {
        if (Count == 0 || count <= 0) return null;
        using var order = randperm(Count, generator: generator, device: CPU);
        return order.narrow(0, 0, Math.Min(count, Count)).to(_features!.device);
    }

    public ContinualBatch Select(Tensor rows, double weight) =>
        new(_features!.index_select(0, rows), _targets!.index_select(0, rows), _heads?.index_select(0, rows), weight);

    public void MoveTo(Device device)
    {
        Tensor? Move(Tensor? t) { if (t is null || t.device == device) return t; var moved = t.to(device).DetachFromDisposeScope(); t.Dispose(); return moved; }
        _features = Move(_features);
        _targets = Move(_targets);
        _heads = Move(_heads);
        _logits = Move(_logits);
        _widths = Move(_widths);
    }

    private void Allocate(ContinualBatch batch, Tensor? logits)
    {
        if (_features is not null) return;
        var device = batch.Features.device;
        _features = zeros([Capacity, batch.Features.shape[1]], batch.Features.dtype, device).DetachFromDisposeScope();
        _targets = zeros([Capacity], batch.Targets.dtype, device).DetachFromDisposeScope();
        if (batch.Heads is not null) _heads = zeros([Capacity], ScalarType.Int64, device).DetachFromDisposeScope();
        if (logits is not null)
        {
            _logits = zeros([Capacity, logits.shape[1]], ScalarType.Float32, device).DetachFromDisposeScope();
            _widths = zeros([Capacity], ScalarType.Int64, device).DetachFromDisposeScope();
        }
    }

    private void Widen(long width)
    {
        if (_logits is null || width <= _logits.shape[1]) return;
        var wider = zeros([Capacity, width], ScalarType.Float32, _logits.device);
        wider.narrow(1, 0, _logits.shape[1]).copy_(_logits);
        _logits.Dispose();
        _logits = wider.DetachFromDisposeScope();
    }

    /// <summary>Saves a memory that may not exist yet (no task trained) under "has memory" and "memory/": the online replay plugins' state.</summary>
    public static void SaveOptional(ReservoirBuffer? buffer, ContinualState state)
    {
        state.Set("has memory", buffer is not null);
        buffer?.Save(state, "memory/");
    }

    /// <summary>Loads what <see cref="SaveOptional"/> saved: the memory, or null.</summary>
    public static ReservoirBuffer? LoadOptional(ContinualState state, int capacity) =>
        state.GetBoolean("has memory") ? Load(state, "memory/", capacity) : null;

    public void Save(ContinualState state, string prefix)
    {
        state.Set(prefix + "count", Count);
        state.Set(prefix + "seen", Seen);
        if (Count == 0) return;
        state.Set(prefix + "features", Features!);
        state.Set(prefix + "targets", Targets!);
        if (_heads is not null) state.Set(prefix + "heads", Heads!);
        if (_logits is not null)
        {
            state.Set(prefix + "logits", Logits!);
            state.Set(prefix + "widths", Widths!);
        }
    }

    public static ReservoirBuffer Load(ContinualState state, string prefix, int capacity)
    {
        var buffer = new ReservoirBuffer(capacity);
        int count = state.GetInt32(prefix + "count", 0, capacity);
        long seen = state.GetInt64(prefix + "seen");
        if (seen < count) throw new ContinualModelFormatException($"The buffer holds {count} rows but says {seen} were offered.");
        buffer.Seen = seen;
        if (count == 0) return buffer;
        using var features = state.GetTensor(prefix + "features");
        using var targets = state.GetTensor(prefix + "targets");
        using var heads = state.TryGetTensor(prefix + "heads");
        using var logits = state.TryGetTensor(prefix + "logits");
        using var widths = state.TryGetTensor(prefix + "widths");
        if (features.dim() != 2 || features.shape[0] != count || targets.shape[0] != count || (heads is not null && heads.shape[0] != count)
            || (logits is null) != (widths is null) || (logits is not null && (logits.dim() != 2 || logits.shape[0] != count || widths!.shape[0] != count)))
            throw new ContinualModelFormatException($"The buffer's parts do not all hold {count} rows.");
        buffer._features = zeros([capacity, features.shape[1]], features.dtype).DetachFromDisposeScope();
        buffer._features.narrow(0, 0, count).copy_(features);
        buffer._targets = zeros([capacity], targets.dtype).DetachFromDisposeScope();
        buffer._targets.narrow(0, 0, count).copy_(targets);
        if (heads is not null)
        {
            buffer._heads = zeros([capacity], ScalarType.Int64).DetachFromDisposeScope();
            buffer._heads.narrow(0, 0, count).copy_(heads);
        }
        if (logits is not null)
        {
            buffer._logits = zeros([capacity, logits.shape[1]], ScalarType.Float32).DetachFromDisposeScope();
            buffer._logits.narrow(0, 0, count).copy_(logits);
            buffer._widths = zeros([capacity], ScalarType.Int64).DetachFromDisposeScope();
            buffer._widths.narrow(0, 0, count).copy_(widths!);
        }
        buffer.Count = count;
        return buffer;
    }

    /// <summary>Empties the buffer for a new reservoir (the tensors are kept for reuse): the boundary window's next window.</summary>
    public void Clear()
    {
        Count = 0;
        Seen = 0;
    }

    public void Dispose()
    {
        _features?.Dispose();
        _targets?.Dispose();
        _heads?.Dispose();
        _logits?.Dispose();
        _widths?.Dispose();
    }
}
