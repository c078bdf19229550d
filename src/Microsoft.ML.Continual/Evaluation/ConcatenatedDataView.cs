using Microsoft.ML.Data;

namespace Microsoft.ML.Continual;

/// <summary>The rows of several data views with the same columns, one view after the other, in their order
/// (<see cref="TaskStream.TrainingInOrder"/>): a task-free pass over a stream's tasks as one fit.</summary>
internal sealed class ConcatenatedDataView : IDataView
{
    private readonly IReadOnlyList<IDataView> _views;

    public ConcatenatedDataView(IReadOnlyList<IDataView> views)
    {
        if (views.Count == 0) throw new ArgumentException("Nothing to concatenate.", nameof(views));
        var first = views[0].Schema;
        for (int v = 1; v < views.Count; v++)
        {
            var schema = views[v].Schema;
            bool same = schema.Count == first.Count && Enumerable.Range(0, first.Count).All(i => schema[i].Name == first[i].Name && schema[i].Type.Equals(first[i].Type));
            if (!same)
                throw new ArgumentException($"View {v + 1} has other columns than the first ({string.Join(", ", schema.Select(c => $"{c.Name}: {c.Type}"))} against {string.Join(", ", first.Select(c => $"{c.Name}: {c.Type}"))}).", nameof(views));
            // A key column's values name its keys: the same key must mean the same class in every view.
            foreach (var column in first.Where(c => c.Type is KeyDataViewType))
            {
                IReadOnlyList<string> mine = TrainingLoop.KeyNames(schema[column.Index]) ?? [], firsts = TrainingLoop.KeyNames(column) ?? [];
                if (!mine.SequenceEqual(firsts))
                    throw new ArgumentException($"View {v + 1}'s key column '{column.Name}' names its keys otherwise than the first view's ({string.Join(", ", mine.Take(10))} against {string.Join(", ", firsts.Take(10))}): the same key would mean another class.", nameof(views));
            }
        }
        _views = views;
    }

    public bool CanShuffle => false;
    public DataViewSchema Schema => _views[0].Schema;

    public long? GetRowCount()
    {
        long total = 0;
        foreach (var view in _views)
            if (view.GetRowCount() is long count) total += count;
            else return null;
        return total;
    }

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) =>
        new Cursor(this, columnsNeeded.Select(c => c.Index).ToArray());

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly ConcatenatedDataView _parent;
        private readonly int[] _needed;
        private readonly bool[] _active;
        private DataViewRowCursor? _inner;
        private int _view = -1, _innerVersion;
        private long _position = -1;

        public Cursor(ConcatenatedDataView parent, int[] needed)
        {
            _parent = parent;
            _needed = needed;
            _active = new bool[parent.Schema.Count];
            foreach (int i in needed) _active[i] = true;
        }

        public override DataViewSchema Schema => _parent.Schema;
        public override long Position => _position;
        public override long Batch => 0;
        public override bool IsColumnActive(DataViewSchema.Column column) => _active[column.Index];
        public override ValueGetter<DataViewRowId> GetIdGetter() => (ref DataViewRowId id) => id = new DataViewRowId((ulong)_position, 0);

        public override bool MoveNext()
        {
            while (true)
            {
                if (_inner is not null && _inner.MoveNext())
                {
                    _position++;
                    return true;
                }
                _inner?.Dispose();
                _inner = null;
                if (++_view >= _parent._views.Count) return false;
                var view = _parent._views[_view];
                _inner = view.GetRowCursor(_needed.Select(i => view.Schema[i]));
                _innerVersion++;
            }
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (!_active[column.Index]) throw new InvalidOperationException($"Column '{column.Name}' is not active in this cursor.");
            int version = -1;
            ValueGetter<TValue>? inner = null;
            return (ref TValue value) =>
            {
                if (_inner is null) throw new InvalidOperationException("The cursor is not on a row.");
                if (version != _innerVersion)
                {
                    inner = _inner.GetGetter<TValue>(_inner.Schema[column.Index]);
                    version = _innerVersion;
                }
                inner!(ref value);
            };
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) _inner?.Dispose();
            base.Dispose(disposing);
        }
    }
}
