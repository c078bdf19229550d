using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Data;
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
    public Table(string source, IReadOnlyList<TableColumn> columns)
    {
        Source = source;
        Columns = columns;
        Rows = columns.Count == 0 ? 0 : columns[0].Values.Length;
    }

    public string Source { get; }
    public IReadOnlyList<TableColumn> Columns { get; }
    public int Rows { get; }
    public TableColumn? Find(string name) => Columns.FirstOrDefault(c => c.Name == name);

    /// <summary>Reads <paramref name="path"/> by its extension (.csv, .tsv/.tab/.txt, .parquet); <paramref name="schemaPath"/>
    /// optionally declares column types (JSON: <c>{"columns": [{"name": "x", "type": "Single|Boolean|Text"}]}</c>).</summary>
    public static Table Read(string path, string? schemaPath, IReadOnlyCollection<string> textColumns)
    {
        if (!File.Exists(path)) throw new CliException(ExitCodes.DataError, $"Data file '{path}' does not exist.");
        var declared = schemaPath is null ? new Dictionary<string, ColumnKind>() : ReadSchema(schemaPath);
        foreach (string c in textColumns) declared.TryAdd(c, ColumnKind.Text);
        string extension = Path.GetExtension(path).ToLowerInvariant();
        return extension switch
        {
            ".csv" => ReadDelimited(path, ',', declared),
            ".tsv" or ".tab" or ".txt" => ReadDelimited(path, '\t', declared),
            ".parquet" => ReadParquet(path, declared),
            _ => throw new CliException(ExitCodes.DataError, $"Data file '{path}': unknown extension '{extension}' (expected .csv, .tsv, .tab, .txt or .parquet)."),
        };
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

    private static Table ReadDelimited(string path, char separator, Dictionary<string, ColumnKind> declared)
    {
        using var reader = new StreamReader(path, Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        var header = ParseRecord(reader, separator, 1) ?? throw new CliException(ExitCodes.DataError, $"Data file '{path}' is empty: a header row is expected.");
        var duplicate = header.GroupBy(h => h).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new CliException(ExitCodes.DataError, $"Data file '{path}': column '{duplicate.Key}' appears twice in the header.");
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
        {
            var kind = declared.TryGetValue(header[i], out var k) ? k : Infer(cells[i]);
            columns.Add(Convert(path, header[i], kind, cells[i]));
        }
        return new Table(path, columns);
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

    private static Table ReadParquet(string path, Dictionary<string, ColumnKind> declared)
    {
        IList<Dictionary<string, object>> rows;
        List<string> names;
        try
        {
            using var stream = File.OpenRead(path);
            var result = ParquetSerializer.DeserializeUntypedAsync(stream).GetAwaiter().GetResult();
            rows = result.Data;
            names = result.Schema.GetDataFields().Select(f => f.Name).ToList();
        }
        catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException or InvalidOperationException or ArgumentException || e.GetType().Namespace?.StartsWith("Parquet") == true)
        {
            throw new CliException(ExitCodes.DataError, $"Data file '{path}' is not a readable Parquet file: {e.Message}");
        }
        var columns = new List<TableColumn>();
        foreach (string name in names)
        {
            var values = rows.Select(r => r.TryGetValue(name, out var v) ? v : null).ToList();
            var kind = declared.TryGetValue(name, out var k) ? k
                : values.All(v => v is null or float or double or int or long or short or byte or decimal) ? ColumnKind.Single
                : values.All(v => v is null or bool) ? ColumnKind.Boolean : ColumnKind.Text;
            columns.Add(Convert(path, name, kind, values.Select(v => v switch
            {
                null => "",
                IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
                _ => v.ToString() ?? "",
            }).ToList()));
        }
        return new Table(path, columns);
    }

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
