using System.Globalization;
using System.Text;
using Microsoft.ML.Continual.Cli;
using Microsoft.ML.Data;
using Parquet.Serialization;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

/// <summary>The tool's file reading: a file read in chunks (tiny blocks of characters, several Parquet row groups) gives
/// every cell exactly as the same file read whole, and a file that changes under a reading job fails it.</summary>
public sealed class TableReadingTests
{
    /// <summary>Every awkward thing RFC 4180 allows, plus the tool's own rules: quoted separators, quotes and line breaks,
    /// CRLF and LF endings, blank lines, padded cells, missing values, numeric ids written three ways, a BOM.</summary>
    private static string AwkwardCsv(int rows)
    {
        var text = new StringBuilder("\uFEFFid,x,flag,note,y\r\n");
        var random = new Random(7);
        for (int i = 0; i < rows; i++)
        {
            string id = (i % 3) switch { 0 => $"{i % 5}", 1 => $"{i % 5}.0", _ => $"0{i % 5}" };
            string x = i % 11 == 0 ? "" : (random.NextDouble() * 100 - 50).ToString("R", CultureInfo.InvariantCulture);
            string flag = i % 2 == 0 ? "true" : " False ";
            string note = (i % 4) switch { 0 => $"\"row {i}, \"\"quoted\"\"\"", 1 => $"\"two\nlines {i}\"", 2 => "", _ => $"  plain {i}  " };
            text.Append($"{id},{x},{flag},{note},{i % 3}");
            text.Append(i % 5 == 0 ? "\r\n" : "\n");
            if (i % 13 == 0) text.Append('\n'); // a blank line
        }
        return text.ToString();
    }

    [Fact]
    public void CsvReadInChunks_EqualsTheSameFileReadWhole_CellByCell()
    {
        using var temp = new TempFolder();
        string path = temp.File("awkward.csv");
        File.WriteAllText(path, AwkwardCsv(500), new UTF8Encoding(false));
        var whole = Table.Read(path, null, ["id"], ["y"], blockCharacters: 1 << 24);
        Assert.Equal(500, whole.Rows);
        var expected = Cells(whole);
        // Known cells, so that equality is not only with itself.
        Assert.Equal("row 0, \"quoted\"", expected[0][3]);
        Assert.Equal("two\nlines 1", expected[1][3]);
        Assert.Equal("plain 3", expected[3][3]);
        Assert.Equal(["0", "1", "2", "3", "4"], expected.Select(r => (string)r[0]).Distinct().Order().ToArray()); // "1", "1.0", "01" are one id
        Assert.Equal(false, expected[1][2]);
        Assert.True(float.IsNaN((float)expected[0][1]));
        Assert.Equal(ColumnKind.Single, whole.Find("x")!.Kind);
        Assert.Equal(ColumnKind.Boolean, whole.Find("flag")!.Kind);
        Assert.Equal(ColumnKind.Text, whole.Find("note")!.Kind);
        Assert.Equal(46, whole.Find("x")!.Profile.Missing); // rows 0, 11, .., 495
        Assert.Equal([0f, 1f, 2f], whole.Find("y")!.Profile.DistinctNumbers.Order().ToArray());
        // Blocks from 16 characters (records cut everywhere: inside quotes, between "" and between \r and \n) to 4 KB.
        foreach (int block in new[] { 16, 17, 23, 64, 100, 4096 })
        {
            var chunked = Table.Read(path, null, ["id"], ["y"], blockCharacters: block);
            Assert.Equal(whole.Rows, chunked.Rows);
            Assert.Equal(whole.Columns.Select(c => (c.Name, c.Kind, c.Reading)), chunked.Columns.Select(c => (c.Name, c.Kind, c.Reading)));
            var cells = Cells(chunked);
            for (int r = 0; r < expected.Count; r++)
                Assert.True(expected[r].SequenceEqual(cells[r]), $"block {block}, row {r + 1}: {string.Join("|", cells[r])} instead of {string.Join("|", expected[r])}");
        }
    }

    [Fact]
    public void CsvCursor_AnswersForItsColumns_AndAChangedFileFailsTheReadingPass()
    {
        using var temp = new TempFolder();
        string path = temp.File("rows.csv");
        File.WriteAllText(path, AwkwardCsv(50));
        var table = Table.Read(path, null, [], null, blockCharacters: 64);
        var view = table.ToDataView();
        using (var cursor = view.GetRowCursor([view.Schema["y"]]))
        {
            Assert.False(cursor.IsColumnActive(view.Schema["note"]));
            Assert.Throws<InvalidOperationException>(() => cursor.GetGetter<ReadOnlyMemory<char>>(view.Schema["note"]));
            var y = cursor.GetGetter<float>(view.Schema["y"]);
            float value = 0, sum = 0;
            while (cursor.MoveNext()) { y(ref value); sum += value; }
            Assert.Equal(Enumerable.Range(0, 50).Sum(i => i % 3), sum);
            Assert.Equal(-1, cursor.Position); // ML.NET's contract once the cursor is done
        }
        // Rewritten in place with the same length and the same time stamp: the cells are checked as they are read.
        var written = File.GetLastWriteTimeUtc(path);
        byte[] bytes = File.ReadAllBytes(path);
        int at = bytes.AsSpan().LastIndexOf("true"u8);
        "mayb"u8.CopyTo(bytes.AsSpan(at));
        File.WriteAllBytes(path, bytes);
        File.SetLastWriteTimeUtc(path, written);
        var error = Assert.Throws<CliException>(() => { using var c = view.GetRowCursor(view.Schema); while (c.MoveNext()) { } });
        Assert.Contains("changed while the tool was reading it", error.Message);
        Assert.Contains("no longer true or false", error.Message);
        // Appended to: refused as the pass opens.
        File.AppendAllText(path, "9,1.5,true,extra,2\n");
        error = Assert.Throws<CliException>(() => view.GetRowCursor(view.Schema));
        Assert.Contains("its size or last write time differs", error.Message);
        Assert.Equal(ExitCodes.DataError, error.ExitCode);
    }

    [Fact]
    public void CsvErrors_AreFoundByTheScan_WithTheirRecordOrRow()
    {
        using var temp = new TempFolder();
        CliException Fails(string name, string content, int block)
        {
            File.WriteAllText(temp.File(name), content);
            var e = Assert.Throws<CliException>(() => Table.Read(temp.File(name), null, [], ["y"], blockCharacters: block));
            Assert.Equal(ExitCodes.DataError, e.ExitCode);
            return e;
        }
        foreach (int block in new[] { 16, 1 << 20 })
        {
            Assert.Contains("record 4: 3 fields where the header has 2", Fails("fields.csv", "x,y\n1,2\n3,4\n5,6,7\n", block).Message);
            Assert.Contains("record 3: a quoted field is not closed", Fails("quote.csv", "x,y\n1,2\n\"open,4\n", block).Message);
            // A true/false column with a missing value, inferred or declared.
            Assert.Contains("column 'flag', row 3: a true/false column has a missing value", Fails("flag.csv", "flag,y\ntrue,1\nfalse,0\n,1\n", block).Message);
        }
        // The last record needs no line break; CRLF and LF mix.
        File.WriteAllText(temp.File("end.csv"), "x,y\r\n1,2\n3,4");
        var table = Table.Read(temp.File("end.csv"), null, [], ["y"], blockCharacters: 16);
        Assert.Equal(2, table.Rows);
        Assert.Equal([2f, 4f], table.Find("y")!.Profile.DistinctNumbers.Order().ToArray());
    }

    [Fact]
    public void FailuresInsideMlNetsParallelCursors_AreReportedByTheirCause()
    {
        // ML.NET's splitter wraps what its worker threads throw; the tool reports the cause (exit code and message).
        static Exception Wrapped(Exception inner) =>
            new InvalidOperationException("Splitter/consolidator worker encountered exception while consuming source data", inner) { Source = "Microsoft.ML.Data" };
        Assert.Equal(ExitCodes.OutOfMemory, Cli.Program.Report(Wrapped(new OutOfMemoryException()), cancelled: false));
        Assert.Equal(ExitCodes.DataError, Cli.Program.Report(Wrapped(new CliException(ExitCodes.DataError, "changed")), cancelled: false));
        Assert.Equal(ExitCodes.Diverged, Cli.Program.Report(new AggregateException(Wrapped(new ContinualTrainingException("NaN", 0, 1, 10, "loss"))), cancelled: false));
        // Another ML.NET error is still a data error with its own message.
        Assert.Equal(ExitCodes.DataError, Cli.Program.Report(new InvalidOperationException("Schema mismatch") { Source = "Microsoft.ML.Data" }, cancelled: false));
    }

    public sealed class TypedRow
    {
        public long id { get; set; }
        public DateTime when { get; set; }
        public decimal price { get; set; }
        public bool? flag { get; set; }
        public uint count { get; set; }
        public string? label { get; set; }
    }

    [Fact]
    public async Task ParquetTypes_KeepTheirValues_AndANullTrueFalseIsRefused()
    {
        using var temp = new TempFolder();
        const long bigId = 9_007_199_254_740_993; // 2^53 + 1: not a double
        var when = new DateTime(2026, 3, 4, 5, 6, 7, DateTimeKind.Utc);
        var rows = new[]
        {
            new TypedRow { id = bigId, when = when, price = 1.50m, flag = true, count = 7, label = "a" },
            new TypedRow { id = 2, when = when.AddDays(1), price = 2m, flag = false, count = 8, label = "" },
        };
        await ParquetSerializer.SerializeAsync(rows, temp.File("typed.parquet"));
        var table = Table.Read(temp.File("typed.parquet"), null, ["id"], ["label"]);
        var cells = Cells(table);
        Assert.Equal(bigId.ToString(CultureInfo.InvariantCulture), cells[0][0]); // an id keeps every digit
        Assert.Equal(when.ToString(null, CultureInfo.InvariantCulture), cells[0][1]); // dates as the tool has always written them
        Assert.Equal(1.5f, cells[0][2]);
        Assert.Equal(true, cells[0][3]);
        Assert.Equal(7f, cells[0][4]); // unsigned integers are numbers
        Assert.Equal(1, table.Find("label")!.Profile.Missing); // an empty string is missing, as in a CSV
        Assert.Equal(ColumnKind.Text, table.Find("when")!.Kind);
        // Declared as text, a number is its invariant text.
        File.WriteAllText(temp.File("schema.json"), """{"columns": [{"name": "price", "type": "Text"}]}""");
        Assert.Equal("1.5", Cells(Table.Read(temp.File("typed.parquet"), temp.File("schema.json"), ["id"], ["label"]))[0][2]);
        // A true/false column with a null cannot be read as true/false.
        rows[1].flag = null;
        await ParquetSerializer.SerializeAsync(rows, temp.File("null-flag.parquet"));
        var error = Assert.Throws<CliException>(() => Table.Read(temp.File("null-flag.parquet"), null, ["id"], ["label"]));
        Assert.Contains("column 'flag', row 2: a true/false column has a missing value", error.Message);
    }

    public sealed class Row
    {
        public int id { get; set; }
        public double? x { get; set; }
        public bool flag { get; set; }
        public string? note { get; set; }
        public float y { get; set; }
    }

    [Fact]
    public async Task ParquetReadByRowGroups_EqualsTheSameRowsInOneRowGroup_AndTheCsvOfThem()
    {
        using var temp = new TempFolder();
        var rows = Enumerable.Range(0, 1000).Select(i => new Row
        {
            id = i % 7, x = i % 9 == 0 ? null : i * 0.25 - 100, flag = i % 3 == 0, note = i % 5 == 0 ? null : $"n{i % 17}", y = i % 2,
        }).ToList();
        await ParquetSerializer.SerializeAsync(rows, temp.File("one.parquet"), new Parquet.ParquetOptions { RowGroupSize = 1000 });
        await ParquetSerializer.SerializeAsync(rows, temp.File("groups.parquet"), new Parquet.ParquetOptions { RowGroupSize = 128 });
        await using (var reader = await Parquet.ParquetReader.CreateAsync(temp.File("groups.parquet")))
            Assert.Equal(8, reader.RowGroupCount); // the file really is in row groups
        var one = Table.Read(temp.File("one.parquet"), null, ["id"], ["y"]);
        var groups = Table.Read(temp.File("groups.parquet"), null, ["id"], ["y"]);
        Assert.Equal(1000, groups.Rows);
        var expected = Cells(one);
        Assert.Equal(expected.Count, Cells(groups).Count);
        Assert.True(expected.Zip(Cells(groups)).All(p => p.First.SequenceEqual(p.Second)));
        Assert.Equal(ColumnKind.Single, groups.Find("x")!.Kind);
        Assert.Equal(112, expected.Count(r => float.IsNaN((float)r[1]))); // a null number is NaN
        // The same rows as CSV read the same values.
        string csv = temp.File("rows.csv");
        File.WriteAllLines(csv, new[] { "id,x,flag,note,y" }.Concat(rows.Select(r =>
            $"{r.id},{r.x?.ToString("R", CultureInfo.InvariantCulture)},{r.flag},{r.note},{r.y}")));
        var fromCsv = Cells(Table.Read(csv, null, ["id"], ["y"], blockCharacters: 100));
        for (int r = 0; r < expected.Count; r++)
            Assert.True(expected[r].SequenceEqual(fromCsv[r]), $"row {r + 1}: {string.Join("|", fromCsv[r])} instead of {string.Join("|", expected[r])}");
    }

    /// <summary>Every cell of the table's view, as float, bool or string.</summary>
    private static List<object[]> Cells(Table table)
    {
        var view = table.ToDataView();
        var rows = new List<object[]>();
        using var cursor = view.GetRowCursor(view.Schema);
        var getters = view.Schema.Select<DataViewSchema.Column, Func<object>>(c => c.Type switch
        {
            NumberDataViewType => Get<float>(cursor, c, v => v),
            BooleanDataViewType => Get<bool>(cursor, c, v => v),
            _ => Get<ReadOnlyMemory<char>>(cursor, c, v => v.ToString()),
        }).ToList();
        while (cursor.MoveNext()) rows.Add(getters.Select(g => g()).ToArray());
        return rows;
    }

    private static Func<object> Get<T>(DataViewRowCursor cursor, DataViewSchema.Column column, Func<T, object> box)
    {
        var getter = cursor.GetGetter<T>(column);
        return () => { T value = default!; getter(ref value); return box(value); };
    }
}
