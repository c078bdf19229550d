using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Data;
using Parquet.Schema;
using Parquet.Serialization;

namespace Microsoft.ML.Continual.Cli;

/// <summary>The type of a column read from a file.</summary>
internal enum ColumnKind { Single, Boolean, Text }

/// <summary>One column of a file: its name, kind and values (float, bool or string per row; NaN / null when empty).</summary>
internal sealed record TableColumn(string Name, ColumnKind Kind, Array Values);

/// <summary>
/// A CSV, TSV or Parquet file read into memory: columns with inferred (or declared) types. Becomes an
/// <see cref="IDataView"/> of scalar columns; the tool concatenates the feature columns into a vector.
/// </summary>
internal sealed class Table
{
    /// <summary>The most columns a file may have. ML.NET's model save writes the input schema at about 50 KB of memory per
    /// column whatever the row count, so 16,384 columns already take about 1 GB to save; wider files are refused up front.</summary>
    public const int MaxColumns = 16_384;

    private readonly Dictionary<string, TableColumn> _byName = new(StringComparer.Ordinal);

    public Table(string source, IReadOnlyList<TableColumn> columns, IReadOnlyDictionary<string, string>? unreadable = null)
    {
        Source = source;
        Columns = columns;
        Rows = columns.Count == 0 ? 0 : columns[0].Values.Length;
        Unreadable = unreadable ?? new Dictionary<string, string>();
        foreach (var column in columns) _byName.TryAdd(column.Name, column);
    }

    public string Source { get; }
    public IReadOnlyList<TableColumn> Columns { get; }
    public int Rows { get; }

    /// <summary>Columns of the file that the tool cannot read (nested Parquet columns), with what they are ("a list", ...).</summary>
    public IReadOnlyDictionary<string, string> Unreadable { get; }

    public TableColumn? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>Why a column is not in the table: "is missing", or what kind of unreadable column it is.</summary>
    public string WhyAbsent(string name) => Unreadable.TryGetValue(name, out string? what)
        ? $"is {what} in the Parquet file, which the tool cannot read (flatten it into scalar columns)"
        : "is missing";

    /// <summary>Reads <paramref name="path"/> by its extension (.csv, .tsv/.tab/.txt, .parquet); <paramref name="schemaPath"/>
    /// optionally declares column types (JSON: <c>{"columns": [{"name": "x", "type": "Single|Boolean|Text"}]}</c>).
    /// <paramref name="identifierColumns"/> (task ids) are read as text whatever their values, with numbers written one way
    /// ("1.0", "01" and a Parquet integer 1 are all "1"), so that numeric ids name the same task in every file.</summary>
    public static Table Read(string path, string? schemaPath, IReadOnlyCollection<string> identifierColumns)
    {
        if (!File.Exists(path)) throw new CliException(ExitCodes.DataError, $"Data file '{path}' does not exist.");
        var declared = schemaPath is null ? new Dictionary<string, ColumnKind>() : ReadSchema(schemaPath);
        // Declared Text: kept exactly as written. Otherwise an identifier column is text in its canonical numeric form.
        var identifiers = identifierColumns.Where(c => !(declared.TryGetValue(c, out var kind) && kind == ColumnKind.Text)).ToHashSet(StringComparer.Ordinal);
        string extension = Path.GetExtension(path).ToLowerInvariant();
        try
        {
            return extension switch
            {
                ".csv" => ReadDelimited(path, ',', declared, identifiers),
                ".tsv" or ".tab" or ".txt" => ReadDelimited(path, '\t', declared, identifiers),
                ".parquet" => ReadParquet(path, declared, identifiers),
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
            using var document = JsonDocument.Parse(File.ReadAllText(path));
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

    private static Table ReadDelimited(string path, char separator, Dictionary<string, ColumnKind> declared, HashSet<string> identifiers)
    {
        using var reader = new StreamReader(path, Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        var header = ParseRecord(reader, separator, 1) ?? throw new CliException(ExitCodes.DataError, $"Data file '{path}' is empty: a header row is expected.");
        CheckHeader(path, header);
        var cells = header.Select(_ => new List<string>()).ToArray();
        int line = 1;
        while (ParseRecord(reader, separator, ++line) is { } record)
        {
            if (record.Count == 1 && record[0].Length == 0) continue; // blank line
            if (record.Count != header.Count)
                throw new CliException(ExitCodes.DataError, $"Data file '{path}', record {line}: {record.Count} fields where the header has {header.Count}.");
            for (int i = 0; i < record.Count; i++) cells[i].Add(record[i]);
        }
        var columns = new List<TableColumn>();
        for (int i = 0; i < header.Count; i++)
            columns.Add(ColumnOf(path, header[i], cells[i], declared, identifiers));
        return new Table(path, columns);
    }

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

    /// <summary>One column from its text values: an identifier (text, numbers in canonical form), the declared kind, or the inferred one.</summary>
    private static TableColumn ColumnOf(string path, string name, IReadOnlyList<string> values, Dictionary<string, ColumnKind> declared, HashSet<string> identifiers)
    {
        if (identifiers.Contains(name)) return new TableColumn(name, ColumnKind.Text, Identifiers(values));
        var kind = declared.TryGetValue(name, out var k) ? k : Infer(values);
        return Convert(path, name, kind, values);
    }

    /// <summary>Identifiers as text; when every present value is a number, each is written in one canonical form.</summary>
    private static string[] Identifiers(IReadOnlyList<string> values)
    {
        bool numeric = values.Where(v => v.Length > 0).All(v => double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out _));
        return numeric ? values.Select(CanonicalNumber).ToArray() : values.ToArray();
    }

    private static string CanonicalNumber(string value)
    {
        if (value.Length == 0) return value;
        if (long.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out long whole)) return whole.ToString(CultureInfo.InvariantCulture);
        double number = double.Parse(value, NumberStyles.Float, CultureInfo.InvariantCulture);
        const double exactIntegers = 9_007_199_254_740_992; // 2^53: every integer below it is exact as a double
        return number == Math.Floor(number) && Math.Abs(number) < exactIntegers
            ? ((long)number).ToString(CultureInfo.InvariantCulture)
            : number.ToString("R", CultureInfo.InvariantCulture);
    }

    /// <summary>One record of RFC 4180 text (quoted fields may hold separators, quotes as "" and line breaks); null at the end.</summary>
    private static List<string>? ParseRecord(TextReader reader, char separator, int line)
    {
        int c = reader.Peek();
        if (c < 0) return null;
        var fields = new List<string>();
        var field = new StringBuilder();
        bool quoted = false, wasQuoted = false;
        while (true)
        {
            c = reader.Read();
            if (c < 0)
            {
                if (quoted) throw new CliException(ExitCodes.DataError, $"Record {line}: a quoted field is not closed before the end of the file.");
                fields.Add(field.ToString());
                return fields;
            }
            char ch = (char)c;
            if (quoted)
            {
                if (ch == '"')
                {
                    if (reader.Peek() == '"') { reader.Read(); field.Append('"'); }
                    else quoted = false;
                }
                else field.Append(ch);
            }
            else if (ch == '"' && field.Length == 0 && !wasQuoted) { quoted = true; wasQuoted = true; }
            else if (ch == separator) { fields.Add(wasQuoted ? field.ToString() : field.ToString().Trim()); field.Clear(); wasQuoted = false; }
            else if (ch == '\n' || ch == '\r')
            {
                if (ch == '\r' && reader.Peek() == '\n') reader.Read();
                fields.Add(wasQuoted ? field.ToString() : field.ToString().Trim());
                return fields;
            }
            else field.Append(ch);
        }
    }

    private static ColumnKind Infer(IReadOnlyList<string> values)
    {
        var present = values.Where(v => v.Length > 0).ToList();
        if (present.Count == 0) return ColumnKind.Single;
        if (present.All(v => float.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out _))) return ColumnKind.Single;
        if (present.All(v => bool.TryParse(v, out _))) return ColumnKind.Boolean;
        return ColumnKind.Text;
    }

    private static TableColumn Convert(string path, string name, ColumnKind kind, IReadOnlyList<string> values)
    {
        switch (kind)
        {
            case ColumnKind.Single:
                var floats = new float[values.Count];
                for (int r = 0; r < floats.Length; r++)
                {
                    if (values[r].Length == 0) { floats[r] = float.NaN; continue; }
                    if (!float.TryParse(values[r], NumberStyles.Float, CultureInfo.InvariantCulture, out floats[r]))
                        throw new CliException(ExitCodes.DataError, $"Data file '{path}', column '{name}', row {r + 1}: '{values[r]}' is not a number.");
                }
                return new TableColumn(name, kind, floats);
            case ColumnKind.Boolean:
                var bools = new bool[values.Count];
                for (int r = 0; r < bools.Length; r++)
                    if (!bool.TryParse(values[r], out bools[r]))
                        throw new CliException(ExitCodes.DataError, values[r].Length == 0
                            ? $"Data file '{path}', column '{name}', row {r + 1}: a true/false column has a missing value; fill it, drop the row, or declare the column Text in --schema."
                            : $"Data file '{path}', column '{name}', row {r + 1}: '{values[r]}' is not true or false.");
                return new TableColumn(name, kind, bools);
            default:
                return new TableColumn(name, kind, values.ToArray());
        }
    }

    private static Table ReadParquet(string path, Dictionary<string, ColumnKind> declared, HashSet<string> identifiers)
    {
        IList<Dictionary<string, object>> rows;
        List<string> names;
        var unreadable = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            using var stream = File.OpenRead(path);
            var result = ParquetSerializer.DeserializeUntypedAsync(stream).GetAwaiter().GetResult();
            rows = result.Data;
            // Only top-level scalar columns: a nested column's leaves (a list's "element", a struct's members) are not columns of the rows.
            names = result.Schema.Fields.Where(f => f is DataField { IsArray: false }).Select(f => f.Name).ToList();
            foreach (var field in result.Schema.Fields.Where(f => f is not DataField { IsArray: false }))
                unreadable[field.Name] = NestedKind(field);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException or InvalidOperationException or ArgumentException || e.GetType().Namespace?.StartsWith("Parquet") == true)
        {
            throw new CliException(ExitCodes.DataError, $"Data file '{path}' is not a readable Parquet file: {e.Message}");
        }
        CheckHeader(path, names);
        foreach (var (name, what) in unreadable)
            Console.Error.WriteLine($"note: column '{name}' of '{path}' is {what}, which the tool cannot read; it is left out (flatten it into scalar columns to use it).");
        var columns = new List<TableColumn>();
        foreach (string name in names)
        {
            var values = rows.Select(r => r.TryGetValue(name, out var v) ? v : null).ToList();
            var text = values.Select(v => v switch
            {
                null => "",
                IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
                _ => v.ToString() ?? "",
            }).ToList();
            if (identifiers.Contains(name) || declared.ContainsKey(name)) { columns.Add(ColumnOf(path, name, text, declared, identifiers)); continue; }
            var kind = values.All(v => v is null or float or double or int or long or short or byte or decimal) ? ColumnKind.Single
                : values.All(v => v is null or bool) ? ColumnKind.Boolean : ColumnKind.Text;
            columns.Add(Convert(path, name, kind, text));
        }
        return new Table(path, columns, unreadable);
    }

    private static string NestedKind(Field field) => field switch
    {
        ListField => "a list (a nested column)",
        StructField => "a struct (a nested column)",
        MapField => "a map (a nested column)",
        DataField { IsArray: true } => "a repeated field (a nested column)",
        _ => "a nested column",
    };

    /// <summary>The table as an <see cref="IDataView"/> of scalar columns (Single, Boolean, Text).</summary>
    public IDataView ToDataView() => new TableDataView(this);
}

/// <summary>An in-memory <see cref="IDataView"/> over a <see cref="Table"/>.</summary>
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

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) => new Cursor(this);

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) => [new Cursor(this)];

    private sealed class Cursor(TableDataView view) : DataViewRowCursor
    {
        private long _position = -1;
        public override DataViewSchema Schema => view.Schema;
        public override long Position => _position;
        public override long Batch => 0;
        public override bool IsColumnActive(DataViewSchema.Column column) => true;
        public override bool MoveNext() => ++_position < view._table.Rows;
        public override ValueGetter<DataViewRowId> GetIdGetter() => (ref DataViewRowId id) => id = new DataViewRowId((ulong)_position, 0);

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            var values = view._table.Columns[column.Index].Values;
            if (typeof(TValue) == typeof(float) && values is float[] floats)
                return (ValueGetter<TValue>)(Delegate)(ValueGetter<float>)((ref float v) => v = floats[_position]);
            if (typeof(TValue) == typeof(bool) && values is bool[] bools)
                return (ValueGetter<TValue>)(Delegate)(ValueGetter<bool>)((ref bool v) => v = bools[_position]);
            if (typeof(TValue) == typeof(ReadOnlyMemory<char>) && values is string[] texts)
                return (ValueGetter<TValue>)(Delegate)(ValueGetter<ReadOnlyMemory<char>>)((ref ReadOnlyMemory<char> v) => v = texts[_position].AsMemory());
            throw new InvalidOperationException($"Column '{column.Name}' cannot be read as {typeof(TValue).Name}.");
        }
    }
}
