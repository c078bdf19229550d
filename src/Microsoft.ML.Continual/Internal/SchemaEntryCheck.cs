using System.IO.Compression;
using System.Text;

namespace Microsoft.ML.Continual.Internal;

/// <summary>
/// Checks a model zip's <c>Schema</c> entry (an ML.NET binary data view of zero rows) before ML.NET reads it. ML.NET 5.0's
/// binary loader reads a vector codec's dimension array with a loop that never ends when the stream ends first, so a
/// damaged dimension count hangs <c>mlContext.Model.Load</c> (found by the fuzz test). This check walks the same table of
/// contents with bounds: every codec definition must fit in its declared length and a vector's dimensions in its definition.
/// </summary>
internal static class SchemaEntryCheck
{
    private const int HeaderSize = 256;
    private static readonly byte[] Signature = "CML\0DVB\0"u8.ToArray();

    /// <summary>Throws <see cref="ContinualModelFormatException"/> when the <c>Schema</c> entry's bytes are damaged (called by <see cref="ModelFileCheck"/>).</summary>
    public static void Check(byte[] data, string what)
    {
        void Fail(string why) => throw new ContinualModelFormatException($"{what}: the 'Schema' entry is damaged ({why}).");
        if (data.Length < HeaderSize + 8 || !data.AsSpan(0, 8).SequenceEqual(Signature)) Fail("no binary data-view header");
        long toc = BitConverter.ToInt64(data, 24), tail = BitConverter.ToInt64(data, 32);
        int columns = BitConverter.ToInt32(data, 48);
        if (tail < HeaderSize || tail > data.Length - 8) Fail("tail offset out of range");
        if (columns < 0 || columns > 1_000_000) Fail($"column count {columns}");
        if (columns > 0 && (toc < HeaderSize || toc >= tail)) Fail("table of contents out of range");
        int end = (int)tail;
        int pos = (int)toc;

        int Byte() { if (pos >= end) Fail("truncated"); return data[pos++]; }
        long Int(int size) { if (pos + size > end) Fail("truncated"); long v = size == 4 ? BitConverter.ToInt32(data, pos) : BitConverter.ToInt64(data, pos); pos += size; return v; }
        ulong Leb128()
        {
            ulong value = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                int b = Byte();
                value |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return value;
            }
            Fail("malformed variable-length integer");
            return 0;
        }
        string Text()
        {
            int length = 0;
            for (int shift = 0; ; shift += 7)
            {
                if (shift > 28) Fail("malformed string length");
                int b = Byte();
                length |= (b & 0x7F) << shift;
                if ((b & 0x80) == 0) break;
            }
            if (length < 0 || pos + length > end) Fail("string past the end");
            string s = Encoding.UTF8.GetString(data, pos, length);
            pos += length;
            return s;
        }
        void Codec(int limit)
        {
            string name = Text();
            ulong length = Leb128();
            if (length > (ulong)(limit - pos)) Fail($"codec '{name}' definition past its end");
            int definitionEnd = pos + (int)length;
            if (name == "VBuffer")
            {
                int saved = end;
                end = definitionEnd;
                Codec(definitionEnd);
                long dims = Int(4);
                if (dims < 0 || dims > (definitionEnd - pos) / 4) Fail($"vector with {dims} dimensions in a {length}-byte definition");
                end = saved;
            }
            pos = definitionEnd;
        }

        var metadataTables = new List<long>();
        for (int c = 0; c < columns; c++)
        {
            Text();
            Codec(end);
            Byte();
            Leb128();
            Int(8);
            long metadata = Int(8);
            if (metadata != 0)
            {
                if (metadata < HeaderSize || metadata >= tail) Fail("annotation table out of range");
                metadataTables.Add(metadata);
            }
        }
        foreach (long table in metadataTables)
        {
            pos = (int)table;
            ulong count = Leb128();
            if (count == 0 || count > 100_000) Fail($"annotation count {count}");
            for (ulong i = 0; i < count; i++)
            {
                Text();
                Codec(end);
                Byte();
                Int(8);
                Leb128();
            }
        }
    }
}
