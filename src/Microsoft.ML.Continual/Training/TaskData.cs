using System.Numerics;
using System.Runtime.InteropServices;
using Microsoft.ML.Data;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// One task's rows, read from its <see cref="IDataView"/> once into contiguous memory: a feature matrix, the raw
/// label of each row and the raw task id of each row. Training then shuffles indices, never rows.
/// </summary>
internal sealed class TaskData : IDisposable
{
    private TaskData(Tensor features, LabelValue[] labels, LabelValue[]? taskIds, long rowsSkipped)
    {
        Features = features;
        Labels = labels;
        TaskIds = taskIds;
        RowsSkipped = rowsSkipped;
    }

    /// <summary>[rows, featureSize] float32, in torch memory (cloned, not wrapping a managed array).</summary>
    public Tensor Features { get; }

    public LabelValue[] Labels { get; }

    public LabelValue[]? TaskIds { get; }

    /// <summary>Rows left out because their label was missing (NaN, missing key, empty text).</summary>
    public long RowsSkipped { get; }

    public int Count => Labels.Length;

    public void Dispose() => Features.Dispose();

    /// <summary>A task of the given rows: <paramref name="features"/> is [rows, featureSize] in torch memory and becomes the task's.</summary>
    public static TaskData FromTensor(Tensor features, LabelValue[] labels, LabelValue[]? taskIds, long rowsSkipped) =>
        new(features, labels, taskIds, rowsSkipped);

    /// <summary>The size of the feature column, checking its type.</summary>
    public static int FeatureSize(DataViewSchema schema, string column, int? expected)
    {
        var col = schema.GetColumnOrNull(column) ?? throw new ContinualDataException(column,
            $"Feature column '{column}' was not found; the data has: {string.Join(", ", schema.Select(c => c.Name))}.");
        int size = col.Type switch
        {
            VectorDataViewType v when v.ItemType == NumberDataViewType.Single && v.IsKnownSize => v.Size,
            VectorDataViewType v when v.ItemType == NumberDataViewType.Single => throw new ContinualDataException(column,
                $"Feature column '{column}' is a vector of variable size; a known-size vector of Single is expected (use a transform that fixes the size)."),
            _ when col.Type == NumberDataViewType.Single => 1,
            _ => throw new ContinualDataException(column,
                $"Feature column '{column}' has type {col.Type}; a known-size vector of Single is expected (convert it with ml.Transforms.Conversion.ConvertType or Concatenate)."),
        };
        if (expected is int e && e != size)
            throw new ContinualDataException(column, $"Feature column '{column}' has {size} features; the model was trained with {e}.");
        return size;
    }

    /// <summary>Checks that a label or task-id column exists and has the kind the model uses.</summary>
    public static ValueKind CheckValueColumn(DataViewSchema schema, string column, string role, ValueKind? expected, Func<ValueKind, bool> accepted, string acceptedText)
    {
        var col = schema.GetColumnOrNull(column) ?? throw new ContinualDataException(column,
            $"{role} column '{column}' was not found; the data has: {string.Join(", ", schema.Select(c => c.Name))}.");
        ValueKind kind = LabelVocabulary.KindOf(col.Type);
        if (kind == 0 || !accepted(kind))
            throw new ContinualDataException(column, $"{role} column '{column}' has type {col.Type}; {acceptedText} is expected.");
        if (expected is ValueKind k && k != kind)
            throw new ContinualDataException(column,
                $"{role} column '{column}' has type {col.Type}; the model was trained with {LabelVocabulary.TypeOf(k, 1).RawType.Name}{(k == ValueKind.Key ? " keys" : "")}.");
        return kind;
    }

    /// <summary>A getter returning false for a missing value (NaN, key 0, empty text).</summary>
    public delegate bool ValueGetter(out LabelValue value);

    public static ValueGetter MakeValueGetter(DataViewRow row, DataViewSchema.Column col)
    {
        switch (LabelVocabulary.KindOf(col.Type))
        {
            case ValueKind.Key:
            {
                var g = row.GetGetter<uint>(col);
                uint v = 0;
                return (out LabelValue value) => { g(ref v); value = new(v, null); return v != 0; };
            }
            case ValueKind.Text:
            {
                var g = row.GetGetter<ReadOnlyMemory<char>>(col);
                ReadOnlyMemory<char> v = default;
                return (out LabelValue value) => { g(ref v); value = new(0, v.ToString()); return !v.IsEmpty; };
            }
            case ValueKind.Boolean:
            {
                var g = row.GetGetter<bool>(col);
                bool v = false;
                return (out LabelValue value) => { g(ref v); value = new(v ? 1 : 0, null); return true; };
            }
            case ValueKind.Int32:
            {
                var g = row.GetGetter<int>(col);
                int v = 0;
                return (out LabelValue value) => { g(ref v); value = new(v, null); return true; };
            }
            case ValueKind.Int64:
            {
                var g = row.GetGetter<long>(col);
                long v = 0;
                return (out LabelValue value) => { g(ref v); value = new(v, null); return true; };
            }
            case ValueKind.UInt32:
            {
                var g = row.GetGetter<uint>(col);
                uint v = 0;
                return (out LabelValue value) => { g(ref v); value = new(v, null); return true; };
            }
            case ValueKind.Single:
            {
                var g = row.GetGetter<float>(col);
                float v = 0;
                return (out LabelValue value) => { g(ref v); value = new(v, null); return !float.IsNaN(v); };
            }
            case ValueKind.Double:
            {
                var g = row.GetGetter<double>(col);
                double v = 0;
                return (out LabelValue value) => { g(ref v); value = new(v, null); return !double.IsNaN(v); };
            }
            default:
                throw new ContinualDataException(col.Name, $"Column '{col.Name}' has unsupported type {col.Type}.");
        }
    }

    /// <summary>A getter that copies a row's features into a span, checking that each is finite.</summary>
    public static Action<Span<float>, long> MakeFeatureReader(DataViewRow row, DataViewSchema.Column col, int size)
    {
        if (col.Type is VectorDataViewType)
        {
            var g = row.GetGetter<VBuffer<float>>(col);
            VBuffer<float> buffer = default;
            return (target, rowIndex) =>
            {
                g(ref buffer);
                if (buffer.Length != size)
                    throw new ContinualDataException(col.Name, $"Row {rowIndex} of feature column '{col.Name}' has {buffer.Length} values; {size} were expected.");
                buffer.CopyTo(target);
                CheckFinite(target, col.Name, rowIndex);
            };
        }
        var s = row.GetGetter<float>(col);
        float value = 0;
        return (target, rowIndex) =>
        {
            s(ref value);
            target[0] = value;
            CheckFinite(target, col.Name, rowIndex);
        };
    }

    /// <summary>Whether no value is NaN or infinite: those, and only those, have every exponent bit set.</summary>
    internal static bool AllFinite(ReadOnlySpan<float> values)
    {
        var bits = MemoryMarshal.Cast<float, uint>(values);
        var exponent = new Vector<uint>(0x7F80_0000u);
        int i = 0;
        for (; i + Vector<uint>.Count <= bits.Length; i += Vector<uint>.Count)
            if (Vector.EqualsAny(new Vector<uint>(bits.Slice(i, Vector<uint>.Count)) & exponent, exponent)) return false;
        for (; i < bits.Length; i++)
            if ((bits[i] & 0x7F80_0000u) == 0x7F80_0000u) return false;
        return true;
    }

    private static void CheckFinite(Span<float> values, string column, long rowIndex)
    {
        if (AllFinite(values)) return; // a vector pass: this runs on every value of every row read
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i]))
                throw new ContinualDataException(column,
                    $"Row {rowIndex} of feature column '{column}' has {(float.IsNaN(values[i]) ? "NaN" : "an infinite value")} at slot {i}; every feature must be finite (replace missing values, e.g. with ml.Transforms.ReplaceMissingValues).");
    }

    /// <summary>Reads every row of <paramref name="data"/>; rows with a missing label are skipped and counted.</summary>
    public static TaskData Read(IDataView data, string featureColumn, int featureSize, string labelColumn, string? taskIdColumn, CancellationToken cancellation)
    {
        // Rows are read into chunks, then copied once into torch memory: no doubling copies whatever the row count
        // (a tensor wrapping a managed array had made scoring drift by 1 ulp between runs, so the tensor owns its copy).
        long capacityHint = data.GetRowCount() ?? 1024;
        int chunkRows = Math.Max(1, Math.Min(65_536, (int)Math.Min(Math.Max(capacityHint, 16), Array.MaxLength / Math.Max(featureSize, 1))));
        var chunks = new List<float[]>();
        var chunk = new float[(long)chunkRows * featureSize];
        int inChunk = 0;
        var labels = new List<LabelValue>((int)Math.Min(capacityHint, 1 << 24));
        var taskIds = taskIdColumn is null ? null : new List<LabelValue>(labels.Capacity);
        long skipped, rowIndex;

        using (var reader = new TaskRowReader(data, featureColumn, featureSize, labelColumn, taskIdColumn))
        {
            while (true)
            {
                if (inChunk == chunkRows)
                {
                    chunks.Add(chunk);
                    chunk = new float[(long)chunkRows * featureSize];
                    inChunk = 0;
                }
                if (!reader.Next(chunk.AsSpan(inChunk * featureSize, featureSize), out LabelValue label, out LabelValue taskId, cancellation)) break;
                inChunk++;
                labels.Add(label);
                taskIds?.Add(taskId);
            }
            skipped = reader.RowsSkipped;
            rowIndex = reader.RowsRead;
        }
        if (labels.Count == 0)
            throw new ContinualDataException(labelColumn, rowIndex == 0
                ? "The task has no rows; a task needs at least one labelled row."
                : $"The task has {rowIndex} rows but every value of label column '{labelColumn}' is missing.");

        // One copy into torch memory: each chunk is viewed in place, and cat writes them into a new tensor.
        chunks.Add(chunk);
        var views = new List<Tensor>(chunks.Count);
        for (int c = 0; c < chunks.Count; c++)
        {
            int rows = c < chunks.Count - 1 ? chunkRows : inChunk;
            if (rows == 0) continue; // the last chunk, when the rows ended at a chunk's boundary
            using Tensor whole = tensor(chunks[c], new long[] { chunkRows, featureSize });
            views.Add(whole.narrow(0, 0, rows));
        }
        Tensor featureTensor = views.Count == 1 ? views[0].clone() : cat(views, 0);
        foreach (var view in views) view.Dispose();
        return new TaskData(featureTensor, labels.ToArray(), taskIds?.ToArray(), skipped);
    }
}

/// <summary>
/// Reads a task's labelled rows from its data view, for every pass over a task (the in-memory read, streaming's first
/// pass and its epochs): features copied and checked finite, rows with a missing label skipped and counted, a missing
/// task id an error, cancellation checked every 1,024 rows.
/// </summary>
internal sealed class TaskRowReader : IDisposable
{
    private readonly DataViewRowCursor _cursor;
    private readonly Action<Span<float>, long> _readFeatures;
    private readonly TaskData.ValueGetter _readLabel;
    private readonly TaskData.ValueGetter? _readTask;
    private readonly string? _taskIdColumn;

    public TaskRowReader(IDataView data, string featureColumn, int featureSize, string labelColumn, string? taskIdColumn)
    {
        var schema = data.Schema;
        var featureCol = schema[featureColumn];
        var labelCol = schema[labelColumn];
        var taskCol = taskIdColumn is null ? (DataViewSchema.Column?)null : schema[taskIdColumn];
        var active = new List<DataViewSchema.Column> { featureCol, labelCol };
        if (taskCol is not null) active.Add(taskCol.Value);
        _cursor = data.GetRowCursor(active);
        _readFeatures = TaskData.MakeFeatureReader(_cursor, featureCol, featureSize);
        _readLabel = TaskData.MakeValueGetter(_cursor, labelCol);
        _readTask = taskCol is null ? null : TaskData.MakeValueGetter(_cursor, taskCol.Value);
        _taskIdColumn = taskIdColumn;
    }

    /// <summary>Rows read so far, labelled or not.</summary>
    public long RowsRead { get; private set; }

    /// <summary>Rows skipped so far because their label was missing.</summary>
    public long RowsSkipped { get; private set; }

    /// <summary>Moves to the next labelled row and writes its features into <paramref name="features"/>; false at the end.</summary>
    public bool Next(Span<float> features, out LabelValue label, out LabelValue taskId, CancellationToken cancellation)
    {
        taskId = default;
        while (_cursor.MoveNext())
        {
            long row = RowsRead++;
            if ((row & 1023) == 0) cancellation.ThrowIfCancellationRequested();
            if (!_readLabel(out label)) { RowsSkipped++; continue; }
            if (_readTask is not null && !_readTask(out taskId))
                throw new ContinualDataException(_taskIdColumn, $"Row {row} has no value in task-id column '{_taskIdColumn}'.");
            _readFeatures(features, row);
            return true;
        }
        label = default;
        return false;
    }

    public void Dispose() => _cursor.Dispose();
}
