using Microsoft.ML.Data;

namespace Microsoft.ML.Continual;

/// <summary>
/// An in-memory task: a feature vector per row (made on demand by a <see cref="FeatureFiller"/>, so permuted and rotated
/// tasks share one copy of the source images), a key label (classes 0..K-1 stored as keys 1..K) and a text task id.
/// Cursors allocate nothing per row.
/// </summary>
internal sealed class ArrayDataView : IDataView
{
    public delegate void FeatureFiller(int row, Span<float> destination);

    private readonly int[] _classes;
    private readonly FeatureFiller _fill;
    private readonly ReadOnlyMemory<char> _taskId;

    public ArrayDataView(int featureSize, int[] classes, int classCount, string[]? classNames, string taskId, FeatureFiller fill,
        string featureColumn = "Features", string labelColumn = "Label", string taskIdColumn = "TaskId")
    {
        _classes = classes;
        _fill = fill;
        _taskId = taskId.AsMemory();
        FeatureSize = featureSize;
        var builder = new DataViewSchema.Builder();
        builder.AddColumn(featureColumn, new VectorDataViewType(NumberDataViewType.Single, featureSize));
        var keyAnnotations = new DataViewSchema.Annotations.Builder();
        if (classNames is not null)
        {
            var names = classNames.Select(n => n.AsMemory()).ToArray();
            keyAnnotations.AddKeyValues(classCount, TextDataViewType.Instance, (ref VBuffer<ReadOnlyMemory<char>> v) => v = new VBuffer<ReadOnlyMemory<char>>(names.Length, names));
        }
        builder.AddColumn(labelColumn, new KeyDataViewType(typeof(uint), classCount), keyAnnotations.ToAnnotations());
        builder.AddColumn(taskIdColumn, TextDataViewType.Instance);
        Schema = builder.ToSchema();
    }

    public int FeatureSize { get; }
    public int Count => _classes.Length;
    public bool CanShuffle => false;
    public DataViewSchema Schema { get; }
    public long? GetRowCount() => _classes.Length;

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) =>
        new Cursor(this, columnsNeeded);

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly ArrayDataView _view;
        private readonly bool[] _active = new bool[3];
        private long _position = -1;

        public Cursor(ArrayDataView view, IEnumerable<DataViewSchema.Column> needed)
        {
            _view = view;
            foreach (var c in needed) _active[c.Index] = true;
        }

        public override DataViewSchema Schema => _view.Schema;
        public override long Position => _position;
        public override long Batch => 0;
        public override bool IsColumnActive(DataViewSchema.Column column) => _active[column.Index];
        public override bool MoveNext() => ++_position < _view.Count;

        public override ValueGetter<DataViewRowId> GetIdGetter() =>
            (ref DataViewRowId id) => id = new DataViewRowId((ulong)_position, 0);

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            Delegate getter = column.Index switch
            {
                0 => (ValueGetter<VBuffer<float>>)((ref VBuffer<float> value) =>
                {
                    var editor = VBufferEditor.Create(ref value, _view.FeatureSize);
                    _view._fill((int)_position, editor.Values);
                    value = editor.Commit();
                }),
                1 => (ValueGetter<uint>)((ref uint value) => value = (uint)_view._classes[_position] + 1),
                _ => (ValueGetter<ReadOnlyMemory<char>>)((ref ReadOnlyMemory<char> value) => value = _view._taskId),
            };
            return getter as ValueGetter<TValue> ?? throw new InvalidOperationException($"Column '{column.Name}' cannot be read as {typeof(TValue).Name}.");
        }
    }
}

/// <summary>A labelled data set held in memory: row-major features and a class index per row.</summary>
internal sealed class LabeledArrays
{
    public LabeledArrays(float[] features, int featureSize, int[] classes, string[] classNames)
    {
        Features = features;
        FeatureSize = featureSize;
        Classes = classes;
        ClassNames = classNames;
    }

    public float[] Features { get; }
    public int FeatureSize { get; }
    public int[] Classes { get; }
    public string[] ClassNames { get; }
    public int Count => Classes.Length;

    public ReadOnlySpan<float> Row(int i) => Features.AsSpan(i * FeatureSize, FeatureSize);

    /// <summary>Reads an <see cref="IDataView"/> with a feature vector and a key, integer or text label.</summary>
    public static LabeledArrays Read(IDataView data, string featureColumn, string labelColumn)
    {
        int size = TaskData.FeatureSize(data.Schema, featureColumn, null);
        var kind = TaskData.CheckValueColumn(data.Schema, labelColumn, "Label", null,
            k => k is ValueKind.Key or ValueKind.Text or ValueKind.Int32 or ValueKind.Int64 or ValueKind.UInt32, "a key, text or integer label");
        using var task = TaskData.Read(data, featureColumn, size, labelColumn, null, CancellationToken.None);
        var vocabulary = new LabelVocabulary(kind);
        if (kind == ValueKind.Key) vocabulary.EnsureKeyCount(((KeyDataViewType)data.Schema[labelColumn].Type).Count, null);
        vocabulary.AddRange(task.Labels);
        var classes = task.Labels.Select(l => vocabulary.IndexOf(l)).ToArray();
        var names = Enumerable.Range(0, vocabulary.Count).Select(vocabulary.Describe).ToArray();
        return new LabeledArrays(task.Features.data<float>().ToArray(), size, classes, names);
    }
}
