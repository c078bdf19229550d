using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// A task too large for memory (<see cref="ContinualTrainerOptions.MemoryBudgetMegabytes"/>), read in one streaming pass:
/// what the loop needs from every row (the classes and task ids in order of first appearance, which classes each task
/// has, the row count) and a uniform sample of rows (Vitter's algorithm R) that the methods' consolidation hooks see as
/// the task (Fisher estimates, memories, accuracy checks). The epochs stream the cursor again (<see cref="StreamingBatches"/>).
/// </summary>
internal sealed class StreamedTask
{
    public required TaskData Sample { get; init; }
    public required List<LabelValue> Labels { get; init; }
    public List<LabelValue>? TaskIds { get; init; }
    public HashSet<(string TaskId, LabelValue Label)>? TaskLabels { get; init; }
    public long RowCount { get; init; }
    public long RowsSkipped { get; init; }

    public static StreamedTask Read(IDataView data, string featureColumn, int featureSize, string labelColumn, string? taskIdColumn,
        int sampleRows, int seed, CancellationToken cancellation)
    {
        var random = new Random(seed);
        // The sample is written straight into torch memory: no managed copy to outlive it.
        Tensor sampleFeatures = empty(sampleRows, featureSize);
        var sampleWriter = sampleFeatures.data<float>();
        var sampleLabels = new LabelValue[sampleRows];
        var sampleTasks = taskIdColumn is null ? null : new LabelValue[sampleRows];
        var labels = new List<LabelValue>();
        var seenLabels = new HashSet<LabelValue>();
        var taskIds = taskIdColumn is null ? null : new List<LabelValue>();
        var seenTasks = new HashSet<LabelValue>();
        var taskLabels = taskIdColumn is null ? null : new HashSet<(string, LabelValue)>();
        long kept = 0, skipped, rowIndex;
        var row = new float[featureSize];
        using (var reader = new TaskRowReader(data, featureColumn, featureSize, labelColumn, taskIdColumn))
        {
            while (reader.Next(row, out LabelValue label, out LabelValue taskId, cancellation)) // every row is checked, sampled or not
            {
                if (seenLabels.Add(label)) labels.Add(label);
                if (taskIds is not null)
                {
                    if (seenTasks.Add(taskId)) taskIds.Add(taskId);
                    taskLabels!.Add((taskId.ToString(), label));
                }
                // Algorithm R: row k (0-based) replaces a random slot with probability n / (k + 1).
                long slot = kept < sampleRows ? kept : random.NextInt64(kept + 1);
                if (slot < sampleRows)
                {
                    sampleWriter.CopyFrom(row, 0, slot * featureSize);
                    sampleLabels[slot] = label;
                    if (sampleTasks is not null) sampleTasks[slot] = taskId;
                }
                kept++;
            }
            skipped = reader.RowsSkipped;
            rowIndex = reader.RowsRead;
        }
        if (kept == 0)
            throw new ContinualDataException(labelColumn, rowIndex == 0
                ? "The task has no rows; a task needs at least one labelled row."
                : $"The task has {rowIndex} rows but every value of label column '{labelColumn}' is missing.");
        int count = (int)Math.Min(kept, sampleRows);
        if (count < sampleRows)
        {
            using var full = sampleFeatures;
            sampleFeatures = full.narrow(0, 0, count).clone();
        }
        return new StreamedTask
        {
            Sample = TaskData.FromTensor(sampleFeatures, sampleLabels[..count], sampleTasks?[..count], skipped),
            Labels = labels,
            TaskIds = taskIds,
            TaskLabels = taskLabels,
            RowCount = kept,
            RowsSkipped = skipped,
        };
    }
}

/// <summary>
/// The minibatches of one epoch of a streamed task: the cursor is read again and rows pass through a shuffle buffer of
/// fixed size (once the buffer is full, each incoming row takes the place of a uniformly drawn row, which joins the
/// batch; the rest is shuffled at the end). Memory: the buffer and one batch, whatever the task's size.
/// </summary>
internal sealed class StreamingBatches
{
    private readonly IDataView _data;
    private readonly ContinualTrainerOptions _options;
    private readonly int _featureSize;
    private readonly int _bufferRows;
    private readonly Func<LabelValue, float> _targetOf;
    private readonly bool _classTargets;
    private readonly Func<LabelValue, long>? _headOf;

    public StreamingBatches(IDataView data, ContinualTrainerOptions options, int featureSize, int bufferRows, long rowCount,
        bool classTargets, Func<LabelValue, float> targetOf, Func<LabelValue, long>? headOf)
    {
        _data = data;
        _options = options;
        _featureSize = featureSize;
        _bufferRows = Math.Max(bufferRows, options.BatchSize);
        RowCount = rowCount;
        _classTargets = classTargets;
        _targetOf = targetOf;
        _headOf = headOf;
    }

    /// <summary>Rows per epoch (labelled rows of the task).</summary>
    public long RowCount { get; }

    public int BufferRows => _bufferRows;

    // Made once and reused by every epoch (one epoch runs at a time).
    private float[]? _bufferFeatures, _bufferTargets, _batchFeatures, _batchTargets;
    private long[]? _bufferHeads, _batchHeads;

    /// <summary>The epoch's batches, drawn with a generator seeded by the task's seed and the epoch (so a resumed epoch is the same).</summary>
    public IEnumerable<ContinualBatch> Epoch(long taskSeed, int epoch, Device device, CancellationToken cancellation)
    {
        var random = new Random(HashCode32(taskSeed, epoch));
        int size = _featureSize, batchSize = _options.BatchSize;
        var bufferFeatures = _bufferFeatures ??= new float[(long)_bufferRows * size];
        var bufferTargets = _bufferTargets ??= new float[_bufferRows];
        var bufferHeads = _bufferHeads ??= new long[_bufferRows];
        var batchFeatures = _batchFeatures ??= new float[(long)batchSize * size];
        var batchTargets = _batchTargets ??= new float[batchSize];
        var batchHeads = _batchHeads ??= new long[batchSize];
        int filled = 0, inBatch = 0;
        using var reader = new TaskRowReader(_data, _options.FeatureColumnName, size, _options.LabelColumnName, _options.TaskIdColumnName);
        var row = new float[size];

        void Take(int slot)
        {
            Array.Copy(bufferFeatures, (long)slot * size, batchFeatures, (long)inBatch * size, size);
            batchTargets[inBatch] = bufferTargets[slot];
            batchHeads[inBatch] = bufferHeads[slot];
            inBatch++;
        }

        while (reader.Next(row, out LabelValue label, out LabelValue taskId, cancellation))
        {
            int slot = filled;
            if (filled == _bufferRows)
            {
                slot = random.Next(_bufferRows);
                Take(slot);
                if (inBatch == batchSize) { yield return MakeBatch(batchFeatures, batchTargets, batchHeads, inBatch, device); inBatch = 0; }
            }
            else filled++;
            row.CopyTo(bufferFeatures.AsSpan(slot * size, size));
            bufferTargets[slot] = _targetOf(label);
            bufferHeads[slot] = _headOf?.Invoke(taskId) ?? 0;
        }
        // The rows still in the buffer, in random order (Fisher–Yates).
        for (int i = filled - 1; i >= 0; i--)
        {
            int j = random.Next(i + 1);
            Take(j);
            // Move the last unused row into the taken slot.
            Array.Copy(bufferFeatures, (long)i * size, bufferFeatures, (long)j * size, size);
            bufferTargets[j] = bufferTargets[i];
            bufferHeads[j] = bufferHeads[i];
            if (inBatch == batchSize) { yield return MakeBatch(batchFeatures, batchTargets, batchHeads, inBatch, device); inBatch = 0; }
        }
        if (inBatch > 0) yield return MakeBatch(batchFeatures, batchTargets, batchHeads, inBatch, device);
    }

    private ContinualBatch MakeBatch(float[] features, float[] targets, long[] heads, int rows, Device device)
    {
        // Copied into torch memory (tensor() over a managed array would alias it, and the arrays are reused).
        Tensor x = tensor(features.AsSpan(0, rows * _featureSize).ToArray(), new long[] { rows, _featureSize }).to(device);
        Tensor y = _classTargets
            ? tensor(targets.AsSpan(0, rows).ToArray()).to_type(ScalarType.Int64).to(device)
            : tensor(targets.AsSpan(0, rows).ToArray()).to(device);
        Tensor? h = _headOf is null ? null : tensor(heads.AsSpan(0, rows).ToArray()).to(device);
        return new ContinualBatch(x, y, h);
    }

    private static int HashCode32(long seed, int epoch)
    {
        ulong z = (ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)epoch + 0x632BE59BD9B4E019UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return (int)(z ^ (z >> 31));
    }
}
