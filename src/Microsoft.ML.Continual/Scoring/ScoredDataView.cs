using Microsoft.ML.Data;

namespace Microsoft.ML.Continual;

/// <summary>
/// The lazily scored output of <see cref="ContinualTransformer.Transform"/>. Its cursor scores rows in blocks:
/// a second cursor over the same input runs ahead, reads the features of the next block and scores them with one
/// forward, while the main cursor supplies the pass-through columns. IDataView cursors without a random order
/// visit rows in the same order, which is what keeps the two in step (and it is checked).
/// </summary>
/// <remarks>It is also the step of an ML.NET pipeline that <c>ml.Model.ConvertToOnnx</c> finds and asks for its ONNX graph
/// (Internal/OnnxExport.cs).</remarks>
internal sealed partial class ScoredDataView : IDataView
{
    internal const int BlockSize = 256;
    private readonly IDataView _input;
    private readonly OutputColumns _columns;
    private readonly IBlockScorer _scorer;
    private readonly ContinualModelState? _network; // null for models that are not a network (boosted trees)

    public ScoredDataView(IDataView input, OutputColumns columns, IBlockScorer scorer, ContinualModelState? network = null)
    {
        _input = input;
        _columns = columns;
        _scorer = scorer;
        _network = network;
    }

    public bool CanShuffle => false;
    public DataViewSchema Schema => _columns.Output;
    public long? GetRowCount() => _input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var needed = columnsNeeded.ToList();
        bool scoring = needed.Any(c => _columns.IsOutput(c.Index));
        var inputNeeded = needed.Where(c => !_columns.IsOutput(c.Index)).Select(c => _input.Schema[c.Index]);
        return new Cursor(this, _input.GetRowCursor(inputNeeded), scoring ? _input.GetRowCursor(_columns.Dependencies) : null, needed);
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly ScoredDataView _parent;
        private readonly DataViewRowCursor _main;
        private readonly DataViewRowCursor? _ahead;
        private readonly bool[] _active;
        private readonly Action<Span<float>, long>? _readFeatures;
        private readonly TaskData.ValueGetter? _readTask;
        private readonly IInputBlock? _block;
        private readonly long[]? _heads;
        private readonly float[] _scores;
        private int _blockCount, _blockIndex = -1;
        private bool _aheadDone, _disposed;

        public Cursor(ScoredDataView parent, DataViewRowCursor main, DataViewRowCursor? ahead, List<DataViewSchema.Column> needed)
        {
            _parent = parent;
            _main = main;
            _ahead = ahead;
            _active = new bool[parent.Schema.Count];
            foreach (var c in needed) _active[c.Index] = true;
            var columns = parent._columns;
            _scores = new float[BlockSize * columns.OutputSize];
            if (ahead is not null)
            {
                _block = parent._scorer.CreateInputBlock(BlockSize, columns.FeatureSize);
                _readFeatures = TaskData.MakeFeatureReader(ahead, columns.FeatureColumn, columns.FeatureSize);
                if (columns.TaskIdColumn is { } t)
                {
                    _readTask = TaskData.MakeValueGetter(ahead, t);
                    _heads = new long[BlockSize];
                }
            }
        }

        public override DataViewSchema Schema => _parent.Schema;
        public override long Position => _main.Position;
        public override long Batch => _main.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => _main.GetIdGetter();
        public override bool IsColumnActive(DataViewSchema.Column column) => _active[column.Index];

        public override bool MoveNext()
        {
            if (_disposed || !_main.MoveNext()) return false; // the block's native memory is freed with the cursor
            if (_ahead is null) return true;
            if (++_blockIndex >= _blockCount) FillBlock();
            if (_blockIndex >= _blockCount)
                throw new InvalidOperationException("The input data view returned fewer rows to the scoring cursor than to the main cursor; its row order is not deterministic.");
            return true;
        }

        private void FillBlock()
        {
            var columns = _parent._columns;
            _blockIndex = 0;
            _blockCount = 0;
            while (!_aheadDone && _blockCount < BlockSize)
            {
                if (!_ahead!.MoveNext()) { _aheadDone = true; break; }
                _readFeatures!(_block!.Row(_blockCount), _ahead.Position);
                if (_readTask is not null)
                {
                    if (!_readTask(out LabelValue id))
                        throw new ContinualDataException(columns.TaskIdColumn?.Name, $"Row {_ahead.Position} has no value in task-id column '{columns.TaskIdColumn?.Name}'.");
                    _heads![_blockCount] = columns.HeadOf(id);
                }
                _blockCount++;
            }
            _block!.Score(_heads, _blockCount, _scores);
        }

        private ReadOnlyMemory<float> CurrentScores()
        {
            int size = _parent._columns.OutputSize;
            return new ReadOnlyMemory<float>(_scores, _blockIndex * size, size);
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!_active[column.Index]) throw new InvalidOperationException($"Column '{column.Name}' is not active in this cursor.");
            if (!_parent._columns.IsOutput(column.Index))
                return _main.GetGetter<TValue>(_main.Schema[column.Index]);
            long position = -1;
            ReadOnlyMemory<float> scores = default;
            Delegate getter = _parent._columns.MakeGetter(column.Index, () =>
            {
                if (position != _main.Position) { scores = CurrentScores(); position = _main.Position; }
                return scores;
            });
            return getter as ValueGetter<TValue>
                ?? throw new InvalidOperationException($"Column '{column.Name}' has type {column.Type}; it cannot be read as {typeof(TValue).Name}.");
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _disposed = true;
                _main.Dispose();
                _ahead?.Dispose();
                _block?.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}

/// <summary>
/// Scores one row at a time, for prediction engines (which call <see cref="ITransformer.GetRowToRowMapper"/>).
/// </summary>
internal sealed class ContinualRowMapper : IRowToRowMapper
{
    private readonly OutputColumns _columns;
    private readonly IBlockScorer _scorer;

    public ContinualRowMapper(OutputColumns columns, IBlockScorer scorer)
    {
        _columns = columns;
        _scorer = scorer;
    }

    public DataViewSchema InputSchema => _columns.Input;
    public DataViewSchema OutputSchema => _columns.Output;

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        var columns = dependingColumns.ToList();
        var inputs = columns.Where(c => !_columns.IsOutput(c.Index)).Select(c => InputSchema[c.Index]).ToList();
        if (columns.Any(c => _columns.IsOutput(c.Index))) inputs.AddRange(_columns.Dependencies);
        return inputs.DistinctBy(c => c.Index);
    }

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns) =>
        new Row(this, input, activeColumns);

    private sealed class Row : DataViewRow
    {
        private readonly ContinualRowMapper _parent;
        private readonly DataViewRow _input;
        private readonly bool[] _active;
        private readonly float[] _features;
        private readonly long[]? _heads;
        private readonly float[] _scores;
        private Action<Span<float>, long>? _readFeatures;
        private TaskData.ValueGetter? _readTask;
        private long _scoredPosition = -1;

        public Row(ContinualRowMapper parent, DataViewRow input, IEnumerable<DataViewSchema.Column> active)
        {
            _parent = parent;
            _input = input;
            _active = new bool[parent.OutputSchema.Count];
            foreach (var c in active) _active[c.Index] = true;
            _features = new float[parent._columns.FeatureSize];
            _scores = new float[parent._columns.OutputSize];
            if (parent._columns.TaskIdColumn is not null) _heads = new long[1];
        }

        public override DataViewSchema Schema => _parent.OutputSchema;
        public override long Position => _input.Position;
        public override long Batch => _input.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => _input.GetIdGetter();
        public override bool IsColumnActive(DataViewSchema.Column column) => _active[column.Index];

        private ReadOnlyMemory<float> Scores()
        {
            if (_scoredPosition != _input.Position || _input.Position < 0)
            {
                var columns = _parent._columns;
                _readFeatures ??= TaskData.MakeFeatureReader(_input, columns.FeatureColumn, columns.FeatureSize);
                _readFeatures(_features, _input.Position);
                if (columns.TaskIdColumn is { } t)
                {
                    _readTask ??= TaskData.MakeValueGetter(_input, t);
                    if (!_readTask(out LabelValue id))
                        throw new ContinualDataException(t.Name, $"The row has no value in task-id column '{t.Name}'.");
                    _heads![0] = columns.HeadOf(id);
                }
                _parent._scorer.ScoreRow(_features, _heads, _scores);
                _scoredPosition = _input.Position;
            }
            return _scores;
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!_parent._columns.IsOutput(column.Index))
                return _input.GetGetter<TValue>(_input.Schema[column.Index]);
            return _parent._columns.MakeGetter(column.Index, Scores) as ValueGetter<TValue>
                ?? throw new InvalidOperationException($"Column '{column.Name}' has type {column.Type}; it cannot be read as {typeof(TValue).Name}.");
        }
    }
}
