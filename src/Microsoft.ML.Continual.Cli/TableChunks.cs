using System.Globalization;
using System.Numerics;
using System.Text;

namespace Microsoft.ML.Continual.Cli;

/// <summary>
/// A block of consecutive rows as the file holds them, before conversion to the column's type: what every reader (CSV/TSV
/// in blocks of characters, Parquet by row group) hands to the table's scan and cursors. Columns are the file's readable
/// columns in order; a reader asked for some of them leaves the others unread.
/// </summary>
internal abstract class RawChunk
{
    /// <summary>The rows in this chunk.</summary>
    public abstract int Rows { get; }

    /// <summary>The 0-based data row of the chunk's first row in the file (the header and blank lines not counted).</summary>
    public long FirstRow { get; init; }

    public abstract bool IsMissing(int column, int row);

    /// <summary>The cell as a number, when it is one.</summary>
    public abstract bool TryNumber(int column, int row, out float value);

    /// <summary>The cell as true/false, when it is one.</summary>
    public abstract bool TryBoolean(int column, int row, out bool value);

    /// <summary>The cell as text (numbers in invariant culture); empty when missing.</summary>
    public abstract ReadOnlyMemory<char> Text(int column, int row);
}

/// <summary>Where a table's chunks come from: the file's readable column names and, each time asked, a fresh pass over its rows.</summary>
internal interface ITableSource
{
    IReadOnlyList<string> Names { get; }

    /// <summary>One pass over the file, reading the columns marked in <paramref name="needed"/> (null: all).</summary>
    IEnumerable<RawChunk> Chunks(bool[]? needed);
}

/// <summary>
/// RFC 4180 text (quoted fields may hold separators, quotes as "" and line breaks) read in blocks of characters: each chunk
/// is the complete records of one block, its fields spans of that block (a quoted field unescaped in place), so reading
/// allocates per block, not per cell. A record cut by the block's end starts the next block; a record longer than a block
/// doubles the block. Every chunk has its own block, so text handed out stays valid after the cursor moves on.
/// </summary>
internal sealed class DelimitedSource : ITableSource
{
    /// <summary>Characters per block: 1 Mi (2 MB), tens of thousands of rows of a typical table.</summary>
    public const int DefaultBlockCharacters = 1 << 20;

    private readonly string _path;
    private readonly char _separator;
    private readonly int _blockCharacters;

    public DelimitedSource(string path, char separator, int blockCharacters = DefaultBlockCharacters)
    {
        _path = path;
        _separator = separator;
        _blockCharacters = Math.Max(16, blockCharacters);
        using var reader = new BlockReader(this);
        Names = reader.ReadHeader() ?? throw new CliException(ExitCodes.DataError, $"Data file '{path}' is empty: a header row is expected.");
    }

    public IReadOnlyList<string> Names { get; }

    public IEnumerable<RawChunk> Chunks(bool[]? needed)
    {
        using var reader = new BlockReader(this);
        reader.ReadHeader();
        while (reader.Next() is { } chunk) yield return chunk;
    }

    /// <summary>One pass over the file: the header, then chunk after chunk.</summary>
    private sealed class BlockReader(DelimitedSource source) : IDisposable
    {
        private readonly StreamReader _reader = new(source._path, Encoding.UTF8, detectEncodingFromByteOrderMarks: true);
        private char[] _block = [];
        private int _start, _filled; // the unparsed part of the current block: [_start, _filled)
        private bool _endOfFile;
        private long _record; // records read so far, the header and blank lines included (for messages)
        private long _rows;   // data rows read so far

        public void Dispose() => _reader.Dispose();

        public List<string>? ReadHeader()
        {
            var fields = new List<(int Start, int Length)>();
            while (true)
            {
                Refill(_blockCharacters);
                if (_filled == 0) return null;
                int end = ParseRecord(_start, fields);
                if (end >= 0)
                {
                    _start = end;
                    _record = 1;
                    return fields.Select(f => new string(_block, f.Start, f.Length)).ToList();
                }
                _blockCharacters *= 2; // a header longer than a block
            }
        }

        private int _blockCharacters = source._blockCharacters;

        public DelimitedChunk? Next()
        {
            int columns = source.Names.Count;
            while (true)
            {
                Refill(_blockCharacters);
                if (_start == _filled) return null;
                var starts = new List<int>();
                var lengths = new List<int>();
                var fields = new List<(int Start, int Length)>(columns);
                int position = _start, rows = 0;
                while (position < _filled)
                {
                    int end = ParseRecord(position, fields);
                    if (end < 0) break; // cut by the block's end: it starts the next block
                    position = end;
                    _record++;
                    if (fields.Count == 1 && fields[0].Length == 0) continue; // a blank line
                    if (fields.Count != columns)
                        throw new CliException(ExitCodes.DataError, $"Data file '{source._path}', record {_record}: {fields.Count} fields where the header has {columns}.");
                    foreach (var (start, length) in fields) { starts.Add(start); lengths.Add(length); }
                    rows++;
                }
                bool progressed = position > _start;
                _start = position;
                if (rows > 0)
                {
                    var chunk = new DelimitedChunk(_block, starts.ToArray(), lengths.ToArray(), columns, rows) { FirstRow = _rows };
                    _rows += rows;
                    _blockCharacters = source._blockCharacters; // a block doubled for one long record does not stay doubled
                    return chunk;
                }
                if (!progressed) _blockCharacters *= 2; // one record longer than a block
            }
        }

        /// <summary>Starts a new block of at least <paramref name="size"/> characters holding the unparsed rest of the
        /// current one, then fills it from the file.</summary>
        private void Refill(int size)
        {
            if (_endOfFile && _block.Length > 0) return;
            int rest = _filled - _start;
            var block = new char[Math.Max(size, rest + 16)];
            Array.Copy(_block, _start, block, 0, rest);
            _block = block;
            _start = 0;
            _filled = rest;
            while (_filled < _block.Length)
            {
                int read = _reader.ReadBlock(_block, _filled, _block.Length - _filled);
                if (read == 0) { _endOfFile = true; break; }
                _filled += read;
            }
        }

        /// <summary>Parses the record at <paramref name="position"/> into <paramref name="fields"/> (spans of the block;
        /// unquoted fields trimmed, quoted ones unescaped in place) and returns where the next one starts, or -1 when the
        /// block ends before the record does and the file has more.</summary>
        private int ParseRecord(int position, List<(int Start, int Length)> fields)
        {
            // Unescaping writes into the block, so a record with a quoted field is first parsed without writing: a record cut
            // by the block's end must stay as the file has it for the next block.
            int end = ParseRecord(position, fields, unescape: false, out bool quoted);
            return end >= 0 && quoted ? ParseRecord(position, fields, unescape: true, out _) : end;
        }

        private int ParseRecord(int position, List<(int Start, int Length)> fields, bool unescape, out bool quoted)
        {
            fields.Clear();
            quoted = false;
            char[] block = _block;
            int i = position;
            while (true)
            {
                if (i < _filled && block[i] == '"')
                {
                    quoted = true;
                    int write = i, read = i + 1;
                    while (true) // inside quotes
                    {
                        if (read >= _filled)
                        {
                            if (!_endOfFile) return -1;
                            throw new CliException(ExitCodes.DataError, $"Data file '{source._path}', record {_record + 1}: a quoted field is not closed before the end of the file.");
                        }
                        char ch = block[read++];
                        if (ch != '"') { Put(ch); continue; }
                        if (read < _filled && block[read] == '"') { Put('"'); read++; continue; }
                        if (read >= _filled && !_endOfFile) return -1; // "" may be cut by the block's end
                        break;
                    }
                    while (read < _filled && block[read] != source._separator && block[read] != '\n' && block[read] != '\r')
                        Put(block[read++]); // text after the closing quote belongs to the field, untrimmed
                    fields.Add((i, write - i));
                    i = read;

                    void Put(char c)
                    {
                        if (unescape) block[write] = c;
                        write++;
                    }
                }
                else
                {
                    int start = i;
                    while (i < _filled && block[i] != source._separator && block[i] != '\n' && block[i] != '\r') i++;
                    int from = start, to = i;
                    while (from < to && char.IsWhiteSpace(block[from])) from++;
                    while (to > from && char.IsWhiteSpace(block[to - 1])) to--;
                    fields.Add((from, to - from));
                }
                if (i >= _filled) return _endOfFile ? i : -1;
                char end = block[i];
                if (end == source._separator) { i++; continue; }
                if (end == '\r')
                {
                    if (i + 1 >= _filled && !_endOfFile) return -1; // a "\r\n" may be cut between blocks
                    return i + 1 < _filled && block[i + 1] == '\n' ? i + 2 : i + 1;
                }
                return i + 1; // '\n'
            }
        }
    }
}

/// <summary>The records of one block of a delimited file: each cell a span of the block.</summary>
internal sealed class DelimitedChunk(char[] block, int[] starts, int[] lengths, int columns, int rows) : RawChunk
{
    public override int Rows => rows;

    private ReadOnlySpan<char> Span(int column, int row)
    {
        int cell = row * columns + column;
        return block.AsSpan(starts[cell], lengths[cell]);
    }

    public override bool IsMissing(int column, int row) => lengths[row * columns + column] == 0;

    public override bool TryNumber(int column, int row, out float value) =>
        float.TryParse(Span(column, row), NumberStyles.Float, CultureInfo.InvariantCulture, out value);

    public override bool TryBoolean(int column, int row, out bool value) => bool.TryParse(Span(column, row), out value);

    public override ReadOnlyMemory<char> Text(int column, int row)
    {
        int cell = row * columns + column;
        return block.AsMemory(starts[cell], lengths[cell]);
    }
}

/// <summary>
/// A Parquet file read by row group, typed: each column of a row group into an array of its own type (numbers, true/false,
/// text, dates and times), converted cell by cell only where a cursor asks. Only the top-level scalar columns of those
/// types are readable; nested and binary columns are named in <see cref="Unreadable"/> and left out.
/// </summary>
internal sealed class ParquetSource : ITableSource
{
    private readonly string _path;
    private readonly List<Parquet.Schema.DataField> _fields;

    public ParquetSource(string path)
    {
        _path = path;
        var reader = Open(path);
        using var closing = Closing(reader);
        _fields = [];
        foreach (var field in reader.Schema.Fields)
        {
            if (field is Parquet.Schema.DataField { IsArray: false } data && ParquetCells.CanRead(data.ClrType)) _fields.Add(data);
            else Unreadable[field.Name] = field is Parquet.Schema.DataField { IsArray: false } other ? $"a {other.ClrType.Name} column" : NestedKind(field);
        }
        Names = _fields.Select(f => f.Name).ToList();
        Rows = reader.RowGroups.Sum(g => g.RowCount);
    }

    public IReadOnlyList<string> Names { get; }

    /// <summary>The columns the tool cannot read, with what each is ("a list (a nested column)", "a Byte[] column", ...).</summary>
    public Dictionary<string, string> Unreadable { get; } = new(StringComparer.Ordinal);

    /// <summary>The rows of every row group, from the file's footer.</summary>
    public long Rows { get; }

    /// <summary>The column's kind from its Parquet type: numbers are Single, true/false Boolean, anything else Text.</summary>
    public ColumnKind NaturalKind(int column) => ParquetCells.IsNumber(_fields[column].ClrType) ? ColumnKind.Single
        : _fields[column].ClrType == typeof(bool) ? ColumnKind.Boolean : ColumnKind.Text;

    /// <summary>Whether the column may hold nulls (a required column has a value in every row).</summary>
    public bool IsNullable(int column) => _fields[column].IsNullable;

    public IEnumerable<RawChunk> Chunks(bool[]? needed)
    {
        var reader = Open(_path);
        using var closing = Closing(reader);
        long firstRow = 0;
        for (int g = 0; g < reader.RowGroupCount; g++)
        {
            ParquetChunk chunk;
            using (var group = reader.OpenRowGroupReader(g))
            {
                int rows = checked((int)group.RowCount);
                var cells = new ParquetCells?[_fields.Count];
                for (int c = 0; c < _fields.Count; c++)
                    if (needed is null || needed[c]) cells[c] = Read(group, _fields[c], rows);
                chunk = new ParquetChunk(cells, rows) { FirstRow = firstRow };
            }
            firstRow += chunk.Rows;
            yield return chunk;
        }
    }

    private ParquetCells Read(Parquet.ParquetRowGroupReader group, Parquet.Schema.DataField field, int rows)
    {
        try
        {
            return ParquetCells.Read(group, field, rows);
        }
        catch (Exception e) when (IsParquetFailure(e))
        {
            throw new CliException(ExitCodes.DataError, $"Data file '{_path}', column '{field.Name}' cannot be read: {e.Message}");
        }
    }

    private static Parquet.ParquetReader Open(string path)
    {
        try
        {
            return Parquet.ParquetReader.CreateAsync(path).GetAwaiter().GetResult();
        }
        catch (Exception e) when (IsParquetFailure(e))
        {
            throw new CliException(ExitCodes.DataError, $"Data file '{path}' is not a readable Parquet file: {e.Message}");
        }
    }

    /// <summary>The reader closes asynchronously only; the tool's passes are synchronous.</summary>
    private static IDisposable Closing(Parquet.ParquetReader reader) => new Closer(() => reader.DisposeAsync().AsTask().GetAwaiter().GetResult());

    private sealed class Closer(Action close) : IDisposable
    {
        public void Dispose() => close();
    }

    private static bool IsParquetFailure(Exception e) => e is IOException or InvalidDataException or NotSupportedException or InvalidOperationException
        or ArgumentException or InvalidCastException or IndexOutOfRangeException || e.GetType().Namespace?.StartsWith("Parquet") == true;

    private static string NestedKind(Parquet.Schema.Field field) => field switch
    {
        Parquet.Schema.ListField => "a list (a nested column)",
        Parquet.Schema.StructField => "a struct (a nested column)",
        Parquet.Schema.MapField => "a map (a nested column)",
        Parquet.Schema.DataField { IsArray: true } => "a repeated field (a nested column)",
        _ => "a nested column",
    };
}

/// <summary>One column of one row group in its own type, with nulls; text in invariant culture (as the tool has always
/// written Parquet values: <c>IFormattable.ToString(null, InvariantCulture)</c>).</summary>
internal abstract class ParquetCells
{
    public static bool IsNumber(Type type) => type == typeof(float) || type == typeof(double) || type == typeof(decimal) || type == typeof(int)
        || type == typeof(long) || type == typeof(short) || type == typeof(sbyte) || type == typeof(byte) || type == typeof(ushort)
        || type == typeof(uint) || type == typeof(ulong);

    private static bool IsText(Type type) => type == typeof(string) || type == typeof(ReadOnlyMemory<char>); // Parquet.Net 6 names UTF-8 columns ReadOnlyMemory<char>

    private static readonly Type[] Formatted = [typeof(DateTime), typeof(DateTimeOffset), typeof(DateOnly), typeof(TimeOnly), typeof(TimeSpan), typeof(Guid)];

    /// <summary>The types the tool reads: numbers, true/false, text, dates, times and GUIDs (not binary, nor nested).</summary>
    public static bool CanRead(Type type) => IsNumber(type) || IsText(type) || type == typeof(bool) || Formatted.Contains(type);

    public abstract bool IsMissing(int row);
    public abstract bool TryNumber(int row, out float value);
    public abstract bool TryBoolean(int row, out bool value);
    public abstract ReadOnlyMemory<char> Text(int row);

    public static ParquetCells Read(Parquet.ParquetRowGroupReader group, Parquet.Schema.DataField field, int rows)
    {
        Type type = field.ClrType;
        if (IsText(type))
        {
            var texts = new string?[rows];
            group.ReadAsync(field, texts.AsMemory()).AsTask().GetAwaiter().GetResult();
            return new TextCells(texts);
        }
        return type switch
        {
            _ when type == typeof(bool) => new BooleanCells(Values<bool>(group, field, rows)),
            _ when type == typeof(float) => new NumberCells<float>(Values<float>(group, field, rows)),
            _ when type == typeof(double) => new NumberCells<double>(Values<double>(group, field, rows)),
            _ when type == typeof(decimal) => new NumberCells<decimal>(Values<decimal>(group, field, rows)),
            _ when type == typeof(int) => new NumberCells<int>(Values<int>(group, field, rows)),
            _ when type == typeof(long) => new NumberCells<long>(Values<long>(group, field, rows)),
            _ when type == typeof(short) => new NumberCells<short>(Values<short>(group, field, rows)),
            _ when type == typeof(sbyte) => new NumberCells<sbyte>(Values<sbyte>(group, field, rows)),
            _ when type == typeof(byte) => new NumberCells<byte>(Values<byte>(group, field, rows)),
            _ when type == typeof(ushort) => new NumberCells<ushort>(Values<ushort>(group, field, rows)),
            _ when type == typeof(uint) => new NumberCells<uint>(Values<uint>(group, field, rows)),
            _ when type == typeof(ulong) => new NumberCells<ulong>(Values<ulong>(group, field, rows)),
            _ when type == typeof(DateTime) => new FormattedCells<DateTime>(Values<DateTime>(group, field, rows)),
            _ when type == typeof(DateTimeOffset) => new FormattedCells<DateTimeOffset>(Values<DateTimeOffset>(group, field, rows)),
            _ when type == typeof(DateOnly) => new FormattedCells<DateOnly>(Values<DateOnly>(group, field, rows)),
            _ when type == typeof(TimeOnly) => new FormattedCells<TimeOnly>(Values<TimeOnly>(group, field, rows)),
            _ when type == typeof(TimeSpan) => new FormattedCells<TimeSpan>(Values<TimeSpan>(group, field, rows)),
            _ when type == typeof(Guid) => new FormattedCells<Guid>(Values<Guid>(group, field, rows)),
            _ => throw new NotSupportedException($"the Parquet type {type.Name} is not one the tool reads"),
        };
    }

    /// <summary>The column's values, null where the file has none (a required column has none missing).</summary>
    private static T?[] Values<T>(Parquet.ParquetRowGroupReader group, Parquet.Schema.DataField field, int rows) where T : struct
    {
        var values = new T?[rows];
        if (field.IsNullable)
        {
            group.ReadAsync<T>(field, values.AsMemory()).AsTask().GetAwaiter().GetResult();
            return values;
        }
        var required = new T[rows];
        group.ReadAsync<T>(field, required.AsMemory()).AsTask().GetAwaiter().GetResult();
        for (int i = 0; i < rows; i++) values[i] = required[i];
        return values;
    }

    /// <summary>Numbers of any width: as float for the features (saturating), as their own invariant text for ids and
    /// declared text (so a 64-bit id keeps every digit).</summary>
    private sealed class NumberCells<T>(T?[] values) : ParquetCells where T : struct, INumberBase<T>
    {
        public override bool IsMissing(int row) => values[row] is null;

        public override bool TryNumber(int row, out float value)
        {
            value = values[row] is T v ? float.CreateSaturating(v) : 0;
            return values[row] is not null;
        }

        public override bool TryBoolean(int row, out bool value) { value = false; return false; }

        public override ReadOnlyMemory<char> Text(int row) => values[row] is T v ? v.ToString(null, CultureInfo.InvariantCulture).AsMemory() : ReadOnlyMemory<char>.Empty;
    }

    private sealed class BooleanCells(bool?[] values) : ParquetCells
    {
        public override bool IsMissing(int row) => values[row] is null;
        public override bool TryNumber(int row, out float value) { value = 0; return false; }

        public override bool TryBoolean(int row, out bool value)
        {
            value = values[row] ?? false;
            return values[row] is not null;
        }

        public override ReadOnlyMemory<char> Text(int row) => (values[row]?.ToString() ?? "").AsMemory();
    }

    /// <summary>Text; an empty string is missing, as in a CSV.</summary>
    private sealed class TextCells(string?[] values) : ParquetCells
    {
        public override bool IsMissing(int row) => string.IsNullOrEmpty(values[row]);
        public override bool TryNumber(int row, out float value) => float.TryParse(values[row], NumberStyles.Float, CultureInfo.InvariantCulture, out value);
        public override bool TryBoolean(int row, out bool value) => bool.TryParse(values[row], out value);
        public override ReadOnlyMemory<char> Text(int row) => (values[row] ?? "").AsMemory();
    }

    /// <summary>Dates, times and GUIDs: text in invariant culture (a declared number parses that text, as before).</summary>
    private sealed class FormattedCells<T>(T?[] values) : ParquetCells where T : struct, IFormattable
    {
        public override bool IsMissing(int row) => values[row] is null;
        public override bool TryNumber(int row, out float value) => float.TryParse(Text(row).Span, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
        public override bool TryBoolean(int row, out bool value) => bool.TryParse(Text(row).Span, out value);
        public override ReadOnlyMemory<char> Text(int row) => values[row] is T v ? v.ToString(null, CultureInfo.InvariantCulture).AsMemory() : ReadOnlyMemory<char>.Empty;
    }
}

/// <summary>The columns of one row group.</summary>
internal sealed class ParquetChunk(ParquetCells?[] cells, int rows) : RawChunk
{
    public override int Rows => rows;
    public override bool IsMissing(int column, int row) => cells[column]!.IsMissing(row);
    public override bool TryNumber(int column, int row, out float value) => cells[column]!.TryNumber(row, out value);
    public override bool TryBoolean(int column, int row, out bool value) => cells[column]!.TryBoolean(row, out value);
    public override ReadOnlyMemory<char> Text(int column, int row) => cells[column]!.Text(row);
}
