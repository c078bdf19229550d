using System.Globalization;
using System.Text.Json;
using Microsoft.ML.Data;

namespace Microsoft.ML.Continual.Cli;

/// <summary>The type of a column read from a file.</summary>
internal enum ColumnKind { Single, Boolean, Text }

/// <summary>How a column's cells become its values.</summary>
internal enum CellReading
{
    /// <summary>Numbers; a missing cell is NaN.</summary>
    Number,
    /// <summary>true/false.</summary>
    Boolean,
    /// <summary>Text as written; a missing cell is empty.</summary>
    Text,
    /// <summary>Text, with numbers written one way when every cell of the column is a number ("1.0", "01" and 1 are all "1").</summary>
    Identifier,
    /// <summary>A 0/1 number label read as false/true.</summary>
    LabelAsBoolean,
    /// <summary>A number label read as text (its classes); a missing cell is empty.</summary>
    LabelAsText,
}

/// <summary>One column of a file: its name, the type it is read as, how its cells are read, its position among the
/// file's readable columns and what the scan found in it.</summary>
internal sealed record TableColumn(string Name, ColumnKind Kind, CellReading Reading, int Field, ColumnProfile Profile);

/// <summary>What the scan of a file found in one column (every row is seen; memory is bounded by the distinct-value caps).</summary>
internal sealed class ColumnProfile
{
    /// <summary>Distinct values kept for a tracked (label) column: enough to tell classes (at most 1,000) from numbers.</summary>
    public const int DistinctCap = 1_001;

    public long Present { get; set; }
    public long Missing { get; set; }
    /// <summary>Present cells that are the number NaN, and those that are an infinity.</summary>
    public long NaNs { get; set; }
    public long Infinities { get; set; }

    /// <summary>The first data row (1-based) with no value, if any.</summary>
    public long? FirstMissingRow { get; set; }
    public bool AllNumbers { get; set; } = true;
    public bool AllBooleans { get; set; } = true;

    /// <summary>Label columns only: distinct text and number values (up to <see cref="DistinctCap"/> each), whether every
    /// finite number is whole, and the first row that is not 0 or 1.</summary>
    public bool Tracked { get; init; }
    public HashSet<string> DistinctText { get; } = new(StringComparer.Ordinal);
    public HashSet<float> DistinctNumbers { get; } = [];
    public bool AllWholeNumbers { get; set; } = true;
    public (long Row, string Text)? FirstNotBinary { get; set; }
}

/// <summary>
/// A CSV, TSV or Parquet file as columns with inferred (or declared) types and a row count, read without holding its
/// rows: one scan at <see cref="Read"/> infers the types and checks every cell (so bad data fails before any training),
/// and every cursor of <see cref="ToDataView"/> reads the file again, chunk by chunk (blocks of characters for CSV/TSV,
/// row groups for Parquet), converting only the columns it is asked for. Memory is one chunk, whatever the file's size.
/// </summary>
internal sealed class Table
{
    /// <summary>The most columns a file may have. ML.NET's model save writes the input schema at about 50 KB of memory per
    /// column whatever the row count, so 16,384 columns already take about 1 GB to save; wider files are refused up front.</summary>
    public const int MaxColumns = 16_384;

    private readonly Dictionary<string, TableColumn> _byName = new(StringComparer.Ordinal);

    private Table(string source, ITableSource file, IReadOnlyList<TableColumn> columns, long rows, IReadOnlyDictionary<string, string> unreadable,
        (long Length, DateTime Written) stamp)
    {
        Stamp = stamp;
        Source = source;
        File = file;
        Columns = columns;
        Rows = rows;
        Unreadable = unreadable;
        foreach (var column in columns) _byName.TryAdd(column.Name, column);
    }

    public string Source { get; }
    internal ITableSource File { get; }

    /// <summary>The file's length and last write time when it was scanned: a cursor on a file that differs fails.</summary>
    internal (long Length, DateTime Written) Stamp { get; }

    internal static (long Length, DateTime Written) StampOf(string path)
    {
        var info = new FileInfo(path);
        return (info.Length, info.LastWriteTimeUtc);
    }
    public IReadOnlyList<TableColumn> Columns { get; }
    public long Rows { get; }

    /// <summary>Columns of the file that the tool cannot read (nested Parquet columns), with what they are ("a list", ...).</summary>
    public IReadOnlyDictionary<string, string> Unreadable { get; }

    public TableColumn? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>The same file with some columns read another way (a label read as the model's type).</summary>
    public Table With(IReadOnlyList<TableColumn> columns) => new(Source, File, columns, Rows, Unreadable, Stamp);

    /// <summary>Why a column is not in the table: "is missing", or what kind of unreadable column it is.</summary>
    public string WhyAbsent(string name) => Unreadable.TryGetValue(name, out string? what)
        ? $"is {what} in the Parquet file, which the tool cannot read (flatten it into scalar columns)"
        : "is missing";

    /// <summary>Reads <paramref name="path"/> by its extension (.csv, .tsv/.tab/.txt, .parquet); <paramref name="schemaPath"/>
    /// optionally declares column types (JSON: <c>{"columns": [{"name": "x", "type": "Single|Boolean|Text"}]}</c>).
    /// <paramref name="identifierColumns"/> (task ids) are read as text whatever their values, with numbers written one way
    /// ("1.0", "01" and a Parquet integer 1 are all "1"), so that numeric ids name the same task in every file.
    /// <paramref name="labelColumns"/> get distinct values and 0/1 checks in their profile. <paramref name="blockCharacters"/>
    /// sets a CSV/TSV chunk's size (tests use tiny ones to cut records across chunks).</summary>
    public static Table Read(string path, string? schemaPath, IReadOnlyCollection<string> identifierColumns, IReadOnlyCollection<string>? labelColumns = null,
        int blockCharacters = DelimitedSource.DefaultBlockCharacters)
    {
        if (!System.IO.File.Exists(path)) throw new CliException(ExitCodes.DataError, $"Data file '{path}' does not exist.");
        var declared = schemaPath is null ? new Dictionary<string, ColumnKind>() : ReadSchema(schemaPath);
        // Declared Text: kept exactly as written. Otherwise an identifier column is text in its canonical numeric form.
        var identifiers = identifierColumns.Where(c => !(declared.TryGetValue(c, out var kind) && kind == ColumnKind.Text)).ToHashSet(StringComparer.Ordinal);
        var tracked = (labelColumns ?? []).ToHashSet(StringComparer.Ordinal);
        string extension = Path.GetExtension(path).ToLowerInvariant();
        try
        {
            return extension switch
            {
                ".csv" => Scan(path, new DelimitedSource(path, ',', blockCharacters), declared, identifiers, tracked),
                ".tsv" or ".tab" or ".txt" => Scan(path, new DelimitedSource(path, '\t', blockCharacters), declared, identifiers, tracked),
                ".parquet" => ScanParquet(path, declared, identifiers, tracked),
                _ => throw new CliException(ExitCodes.DataError, $"Data file '{path}': unknown extension '{extension}' (expected .csv, .tsv, .tab, .txt or .parquet)."),
            };
        }
        catch (UnauthorizedAccessException e)
        {
            throw new CliException(ExitCodes.DataError, $"Data file '{path}' cannot be read: permission denied ({e.Message}).");
        }
    }

    private static Dictionary<string, ColumnKind> ReadSchema(string path)
    {
        try
        {
            using var document = JsonDocument.Parse(System.IO.File.ReadAllText(path));
            var result = new Dictionary<string, ColumnKind>(StringComparer.Ordinal);
            foreach (var column in document.RootElement.GetProperty("columns").EnumerateArray())
            {
                string name = column.GetProperty("name").GetString() ?? throw new FormatException("a column without a name");
                string type = column.GetProperty("type").GetString() ?? "";
                if (!Enum.TryParse<ColumnKind>(type, ignoreCase: true, out var kind))
                    throw new FormatException($"column '{name}' has type '{type}' (expected Single, Boolean or Text)");
                result[name] = kind;
            }
            return result;
        }
        catch (Exception e) when (e is JsonException or FormatException or KeyNotFoundException or InvalidOperationException or IOException)
        {
            throw new CliException(ExitCodes.DataError, $"Schema file '{path}' is not valid: {e.Message}.");
        }
    }

    /// <summary>A CSV/TSV file: one pass over every cell profiles each column (and checks the declared ones); the kinds are
    /// then the declared or inferred ones.</summary>
    private static Table Scan(string path, DelimitedSource file, Dictionary<string, ColumnKind> declared, HashSet<string> identifiers, HashSet<string> tracked)
    {
        var stamp = StampOf(path);
        CheckHeader(path, file.Names);
        var profiles = file.Names.Select(n => new ColumnProfile { Tracked = tracked.Contains(n) }).ToArray();
        var checks = file.Names.Select(n => identifiers.Contains(n) ? (ColumnKind?)null : declared.TryGetValue(n, out var k) ? k : null).ToArray();
        long rows = Profile(path, file, profiles, checks, null);
        var columns = file.Names.Select((name, i) => identifiers.Contains(name) ? new TableColumn(name, ColumnKind.Text, CellReading.Identifier, i, profiles[i])
            : ColumnOf(name, checks[i] ?? Infer(profiles[i]), i, profiles[i])).ToList();
        RefuseMissingBooleans(path, columns);
        return new Table(path, file, columns, rows, new Dictionary<string, string>(), stamp);
    }

    /// <summary>A Parquet file: the kinds come from the file's types; only the declared, identifier and label columns are
    /// scanned (for their checks and profiles).</summary>
    private static Table ScanParquet(string path, Dictionary<string, ColumnKind> declared, HashSet<string> identifiers, HashSet<string> tracked)
    {
        var stamp = StampOf(path);
        var file = new ParquetSource(path);
        CheckHeader(path, file.Names);
        foreach (var (name, what) in file.Unreadable)
            Console.Error.WriteLine($"note: column '{name}' of '{path}' is {what}, which the tool cannot read; it is left out (flatten it into scalar columns to use it).");
        var profiles = file.Names.Select(n => new ColumnProfile { Tracked = tracked.Contains(n) }).ToArray();
        var checks = file.Names.Select(n => identifiers.Contains(n) ? (ColumnKind?)null : declared.TryGetValue(n, out var k) ? k : null).ToArray();
        // A column's Parquet type guarantees its cells, except where a declaration or a role asks more of them, or where a
        // true/false column may have nulls (which a Boolean column cannot hold).
        var scanned = file.Names.Select((n, i) => identifiers.Contains(n) || declared.ContainsKey(n) || tracked.Contains(n)
            || (file.NaturalKind(i) == ColumnKind.Boolean && file.IsNullable(i))).ToArray();
        if (scanned.Any(s => s)) Profile(path, file, profiles, checks, scanned);
        var columns = file.Names.Select((name, i) => identifiers.Contains(name) ? new TableColumn(name, ColumnKind.Text, CellReading.Identifier, i, profiles[i])
            : ColumnOf(name, checks[i] ?? file.NaturalKind(i), i, profiles[i])).ToList();
        RefuseMissingBooleans(path, columns);
        return new Table(path, file, columns, file.Rows, file.Unreadable, stamp);
    }

    /// <summary>A true/false column cannot hold a missing value: the first one is refused with its row (declared columns
    /// are refused during the scan itself).</summary>
    private static void RefuseMissingBooleans(string path, IEnumerable<TableColumn> columns)
    {
        foreach (var column in columns)
            if (column.Reading == CellReading.Boolean && column.Profile.FirstMissingRow is long row)
                throw BadCell(path, column.Name, row - 1, "", ColumnKind.Boolean);
    }

    private static TableColumn ColumnOf(string name, ColumnKind kind, int field, ColumnProfile profile) => new(name, kind, kind switch
    {
        ColumnKind.Single => CellReading.Number,
        ColumnKind.Boolean => CellReading.Boolean,
        _ => CellReading.Text,
    }, field, profile);

    private static ColumnKind Infer(ColumnProfile profile) =>
        profile.Present == 0 || profile.AllNumbers ? ColumnKind.Single : profile.AllBooleans ? ColumnKind.Boolean : ColumnKind.Text;

    /// <summary>Reads every cell of the <paramref name="scanned"/> columns (null: all) once, filling the profiles and
    /// failing on the first cell that does not fit its declared kind; returns the row count.</summary>
    private static long Profile(string path, ITableSource file, ColumnProfile[] profiles, ColumnKind?[] declared, bool[]? scanned)
    {
        long rows = 0;
        foreach (var chunk in file.Chunks(scanned))
        {
            for (int c = 0; c < profiles.Length; c++)
            {
                if (scanned is not null && !scanned[c]) continue;
                var profile = profiles[c];
                for (int r = 0; r < chunk.Rows; r++)
                {
                    if (chunk.IsMissing(c, r))
                    {
                        profile.Missing++;
                        profile.FirstMissingRow ??= chunk.FirstRow + r + 1;
                        if (declared[c] == ColumnKind.Boolean) throw BadCell(path, file.Names[c], chunk.FirstRow + r, "", ColumnKind.Boolean);
                        if (profile.Tracked) profile.FirstNotBinary ??= (chunk.FirstRow + r + 1, "");
                        continue;
                    }
                    profile.Present++;
                    float number = float.NaN;
                    bool isNumber = (profile.AllNumbers || profile.Tracked || declared[c] == ColumnKind.Single) && chunk.TryNumber(c, r, out number);
                    if (!isNumber) { profile.AllNumbers = false; number = float.NaN; }
                    if (isNumber && float.IsNaN(number)) profile.NaNs++;
                    if (isNumber && float.IsInfinity(number)) profile.Infinities++;
                    if (profile.AllBooleans && !chunk.TryBoolean(c, r, out _)) profile.AllBooleans = false;
                    if (declared[c] == ColumnKind.Single && !isNumber) throw BadCell(path, file.Names[c], chunk.FirstRow + r, chunk.Text(c, r).ToString(), ColumnKind.Single);
                    if (declared[c] == ColumnKind.Boolean && !chunk.TryBoolean(c, r, out _)) throw BadCell(path, file.Names[c], chunk.FirstRow + r, chunk.Text(c, r).ToString(), ColumnKind.Boolean);
                    if (profile.Tracked) Track(profile, chunk, c, r, isNumber, number);
                }
            }
            rows += chunk.Rows;
        }
        return rows;
    }

    /// <summary>A label column's extra profile: distinct values, whole numbers, the first value that is not 0 or 1.</summary>
    private static void Track(ColumnProfile profile, RawChunk chunk, int column, int row, bool isNumber, float number)
    {
        if (profile.DistinctText.Count < ColumnProfile.DistinctCap) // looked up by span: a string only for a new value
            profile.DistinctText.GetAlternateLookup<ReadOnlySpan<char>>().Add(chunk.Text(column, row).Span);
        if (isNumber && float.IsFinite(number))
        {
            if (profile.DistinctNumbers.Count < ColumnProfile.DistinctCap) profile.DistinctNumbers.Add(number);
            if (number != MathF.Round(number)) profile.AllWholeNumbers = false;
        }
        if (!(isNumber && number is 0 or 1)) profile.FirstNotBinary ??= (chunk.FirstRow + row + 1, chunk.Text(column, row).ToString());
    }

    private static CliException BadCell(string path, string name, long row, string value, ColumnKind kind) => new(ExitCodes.DataError, kind == ColumnKind.Single
        ? $"Data file '{path}', column '{name}', row {row + 1}: '{value}' is not a number."
        : value.Length == 0
            ? $"Data file '{path}', column '{name}', row {row + 1}: a true/false column has a missing value; fill it, drop the row, or declare the column Text in --schema."
            : $"Data file '{path}', column '{name}', row {row + 1}: '{value}' is not true or false.");

    /// <summary>Refuses a header the tool cannot use, naming the problem: too many columns, a column without a name, a name twice.</summary>
    private static void CheckHeader(string path, IReadOnlyList<string> names)
    {
        if (names.Count > MaxColumns)
            throw new CliException(ExitCodes.DataError, $"Data file '{path}' has {names.Count:N0} columns; the tool reads at most {MaxColumns:N0} " +
                "(an ML.NET model file costs about 50 KB of memory per input column to save). Keep the columns the model needs, " +
                "or use the library with one vector column of features.");
        int unnamed = names.ToList().FindIndex(n => n.Length == 0);
        if (unnamed >= 0)
            throw new CliException(ExitCodes.DataError, $"Data file '{path}': column {unnamed + 1} of {names.Count} in the header has no name; every column needs one.");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (string name in names)
            if (!seen.Add(name)) throw new CliException(ExitCodes.DataError, $"Data file '{path}': column '{name}' appears twice in the header.");
    }

    /// <summary>An identifier as one canonical number ("1.0", "01" and 1 are all "1").</summary>
    internal static string CanonicalNumber(string value)
    {
        if (value.Length == 0) return value;
        if (long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out long whole)) return whole.ToString(CultureInfo.InvariantCulture);
        if (!double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double number)) return value; // the scan saw numbers: only a changed file gets here
        const double exactIntegers = 9_007_199_254_740_992; // 2^53: every integer below it is exact as a double
        return number == Math.Floor(number) && Math.Abs(number) < exactIntegers
            ? ((long)number).ToString(CultureInfo.InvariantCulture)
            : number.ToString("R", CultureInfo.InvariantCulture);
    }

    /// <summary>The table as an <see cref="IDataView"/> of scalar columns (Single, Boolean, Text) that reads the file at each cursor.</summary>
    public IDataView ToDataView() => new TableDataView(this);
}

/// <summary>
/// An <see cref="IDataView"/> over a <see cref="Table"/>'s file: each cursor makes its own pass, chunk by chunk, and
/// converts the active columns of each chunk into typed arrays (float, bool, text spans of the chunk) that the getters
/// serve. A file that changes between the scan and a pass (other rows, a cell that no longer reads) fails the pass.
/// </summary>
internal sealed class TableDataView : IDataView
{
    private readonly Table _table;

    public TableDataView(Table table)
    {
        _table = table;
        var builder = new DataViewSchema.Builder();
        foreach (var c in table.Columns)
            builder.AddColumn(c.Name, c.Kind switch
            {
                ColumnKind.Single => NumberDataViewType.Single,
                ColumnKind.Boolean => BooleanDataViewType.Instance,
                _ => TextDataViewType.Instance,
            });
        Schema = builder.ToSchema();
    }

    public bool CanShuffle => false;
    public DataViewSchema Schema { get; }
    public long? GetRowCount() => _table.Rows;

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) => new Cursor(this, columnsNeeded);

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) => [new Cursor(this, columnsNeeded)];

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly TableDataView _view;
        private readonly bool[] _active;
        private readonly IEnumerator<RawChunk> _chunks;
        private readonly Array?[] _values; // per table column: the current chunk's float[], bool[] or ReadOnlyMemory<char>[]
        private long _position = -1;
        private bool _done;
        private int _row, _rows; // the current row within the chunk, and the chunk's rows

        public Cursor(TableDataView view, IEnumerable<DataViewSchema.Column> columnsNeeded)
        {
            _view = view;
            var columns = view._table.Columns;
            _active = new bool[columns.Count];
            foreach (var column in columnsNeeded) _active[column.Index] = true;
            var fields = new bool[view._table.File.Names.Count];
            for (int c = 0; c < columns.Count; c++) if (_active[c]) fields[columns[c].Field] = true;
            if (Table.StampOf(view._table.Source) != view._table.Stamp)
                throw Changed("its size or last write time differs from when it was first read");
            _chunks = view._table.File.Chunks(fields).GetEnumerator();
            _values = new Array?[columns.Count];
        }

        public override DataViewSchema Schema => _view.Schema;
        public override long Position => _position;
        public override long Batch => 0;
        public override bool IsColumnActive(DataViewSchema.Column column) => _active[column.Index];
        public override ValueGetter<DataViewRowId> GetIdGetter() => (ref DataViewRowId id) => id = new DataViewRowId((ulong)_position, 0);

        protected override void Dispose(bool disposing)
        {
            if (disposing) _chunks.Dispose();
            base.Dispose(disposing);
        }

        public override bool MoveNext()
        {
            if (_done) return false;
            if (++_row < _rows) { _position++; return true; }
            while (_chunks.MoveNext())
            {
                var chunk = _chunks.Current;
                if (chunk.Rows == 0) continue;
                for (int c = 0; c < _values.Length; c++)
                    _values[c] = _active[c] ? Convert(_view._table, _view._table.Columns[c], chunk) : null;
                _row = 0;
                _rows = chunk.Rows;
                _position++;
                if (_position >= _view._table.Rows) throw Changed("it has more rows than when it was first read");
                return true;
            }
            _rows = 0;
            _done = true;
            if (_position + 1 != _view._table.Rows) throw Changed($"it has {_position + 1:N0} rows, not the {_view._table.Rows:N0} first read");
            _position = -1; // ML.NET's cursor contract: -1 once the cursor is done
            return false;
        }

        private CliException Changed(string what) => new(ExitCodes.DataError, $"Data file '{_view._table.Source}' changed while the tool was reading it: {what}.");

        /// <summary>One chunk's cells of <paramref name="column"/> as its typed values.</summary>
        private Array Convert(Table table, TableColumn column, RawChunk chunk)
        {
            int f = column.Field, rows = chunk.Rows;
            switch (column.Reading)
            {
                case CellReading.Number:
                case CellReading.LabelAsBoolean:
                    var numbers = new float[rows];
                    for (int r = 0; r < rows; r++)
                        if (chunk.IsMissing(f, r)) numbers[r] = float.NaN;
                        else if (!chunk.TryNumber(f, r, out numbers[r])) throw Changed($"column '{column.Name}', row {chunk.FirstRow + r + 1} is no longer a number");
                    if (column.Reading == CellReading.Number) return numbers;
                    return Array.ConvertAll(numbers, v => v == 1);
                case CellReading.Boolean:
                    var booleans = new bool[rows];
                    for (int r = 0; r < rows; r++)
                        if (!chunk.TryBoolean(f, r, out booleans[r])) throw Changed($"column '{column.Name}', row {chunk.FirstRow + r + 1} is no longer true or false");
                    return booleans;
                case CellReading.LabelAsText:
                    var classes = new ReadOnlyMemory<char>[rows];
                    for (int r = 0; r < rows; r++)
                        classes[r] = chunk.TryNumber(f, r, out float v) && float.IsFinite(v) ? v.ToString(CultureInfo.InvariantCulture).AsMemory() : ReadOnlyMemory<char>.Empty;
                    return classes;
                default:
                    var texts = new ReadOnlyMemory<char>[rows];
                    bool canonical = column.Reading == CellReading.Identifier && column.Profile.AllNumbers;
                    for (int r = 0; r < rows; r++)
                        texts[r] = canonical && !chunk.IsMissing(f, r) ? Table.CanonicalNumber(chunk.Text(f, r).ToString()).AsMemory() : chunk.Text(f, r);
                    return texts;
            }
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            int c = column.Index;
            if (!_active[c]) throw new InvalidOperationException($"Column '{column.Name}' is not active in this cursor.");
            if (typeof(TValue) == typeof(float) && column.Type is NumberDataViewType)
                return (ValueGetter<TValue>)(Delegate)(ValueGetter<float>)((ref float v) => v = ((float[])_values[c]!)[_row]);
            if (typeof(TValue) == typeof(bool) && column.Type is BooleanDataViewType)
                return (ValueGetter<TValue>)(Delegate)(ValueGetter<bool>)((ref bool v) => v = ((bool[])_values[c]!)[_row]);
            if (typeof(TValue) == typeof(ReadOnlyMemory<char>) && column.Type is TextDataViewType)
                return (ValueGetter<TValue>)(Delegate)(ValueGetter<ReadOnlyMemory<char>>)((ref ReadOnlyMemory<char> v) => v = ((ReadOnlyMemory<char>[])_values[c]!)[_row]);
            throw new InvalidOperationException($"Column '{column.Name}' cannot be read as {typeof(TValue).Name}.");
        }
    }
}
