using System.Runtime.InteropServices;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// The store through which a <see cref="ContinualPlugin"/> saves and loads its state: named tensors and scalars, with the
/// plugin's own state <see cref="Version"/>. The model zip keeps one store per plugin. Reading a store from a file is
/// bounded: every size is checked against the bytes the entry holds before anything is allocated, names and counts are
/// limited, and a store that does not end exactly where its bytes do is refused; no type is ever created from a name in
/// the file.
/// </summary>
/// <remarks>Tensors are kept as CPU copies: <see cref="Set(string, Tensor)"/> copies the tensor in, and
/// <see cref="GetTensor"/> returns a new tensor the caller owns. Element types: float32, float64, int64, int32, int16, uint8
/// and bool. Names are 1 to 256 characters; a name may be set once.</remarks>
public sealed class ContinualState : IDisposable
{
    private const int Magic = 0x5453_5043; // "CPST"
    private const int StoreFormat = 1;
    private const int MaxNameLength = 256;
    private const int MaxEntries = 1 << 20;

    private enum Kind : byte { Tensor = 1, Double = 2, Int64 = 3, Text = 4, Boolean = 5 }

    private readonly Dictionary<string, (Kind Kind, object Value)> _entries = new(StringComparer.Ordinal);
    private readonly List<string> _order = new();

    /// <summary>An empty store with state version 1.</summary>
    public ContinualState() { }

    /// <summary>The plugin's own state version: set it when saving, check it when loading (a newer plugin may read older stores). Default 1.</summary>
    public int Version { get; set; } = 1;

    /// <summary>The names stored, in the order they were set.</summary>
    public IReadOnlyList<string> Names => _order;

    /// <summary>True when <paramref name="name"/> is stored.</summary>
    public bool Contains(string name) => _entries.ContainsKey(name);

    /// <summary>Stores a copy of <paramref name="value"/> (moved to the CPU, contiguous).</summary>
    public void Set(string name, Tensor value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (!SupportedTypes.Contains(value.dtype))
            throw new ArgumentException($"State entry '{name}': element type {value.dtype} is not supported (float32, float64, int64, int32, int16, uint8, bool).", nameof(value));
        using var _ = no_grad();
        Add(name, Kind.Tensor, value.detach().cpu().contiguous().clone().DetachFromDisposeScope());
    }

    /// <summary>Stores a number.</summary>
    public void Set(string name, double value) => Add(name, Kind.Double, value);

    /// <summary>Stores an integer.</summary>
    public void Set(string name, long value) => Add(name, Kind.Int64, value);

    /// <summary>Stores a Boolean.</summary>
    public void Set(string name, bool value) => Add(name, Kind.Boolean, value);

    /// <summary>Stores a text (at most 1,048,576 characters).</summary>
    public void Set(string name, string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (value.Length > 1 << 20) throw new ArgumentException($"State entry '{name}': the text is longer than 1,048,576 characters.", nameof(value));
        Add(name, Kind.Text, value);
    }

    /// <summary>A new CPU tensor holding the entry (the caller owns it).</summary>
    public Tensor GetTensor(string name) => ((Tensor)Get(name, Kind.Tensor)).clone();

    /// <summary>The entry, or null when it is not stored.</summary>
    public Tensor? TryGetTensor(string name) => Contains(name) ? GetTensor(name) : null;

    /// <summary>The number stored under <paramref name="name"/>.</summary>
    public double GetDouble(string name) => (double)Get(name, Kind.Double);

    /// <summary>The integer stored under <paramref name="name"/>.</summary>
    public long GetInt64(string name) => (long)Get(name, Kind.Int64);

    /// <summary>The integer stored under <paramref name="name"/>, checked to lie in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public int GetInt32(string name, int min = 0, int max = int.MaxValue)
    {
        long value = GetInt64(name);
        if (value < min || value > max) throw new ContinualModelFormatException($"State entry '{name}' is {value}; it must lie in [{min}, {max}].");
        return (int)value;
    }

    /// <summary>The Boolean stored under <paramref name="name"/>.</summary>
    public bool GetBoolean(string name) => (bool)Get(name, Kind.Boolean);

    /// <summary>The text stored under <paramref name="name"/>.</summary>
    public string GetString(string name) => (string)Get(name, Kind.Text);

    /// <summary>Elements in all stored tensors.</summary>
    public long TensorElements => _entries.Values.Where(e => e.Kind == Kind.Tensor).Sum(e => ((Tensor)e.Value).numel());

    /// <summary>Releases the stored tensors.</summary>
    public void Dispose()
    {
        foreach (var (kind, value) in _entries.Values)
            if (kind == Kind.Tensor) ((Tensor)value).Dispose();
        _entries.Clear();
        _order.Clear();
    }

    private static readonly HashSet<ScalarType> SupportedTypes =
        [ScalarType.Float32, ScalarType.Float64, ScalarType.Int64, ScalarType.Int32, ScalarType.Int16, ScalarType.Byte, ScalarType.Bool];

    private void Add(string name, Kind kind, object value)
    {
        CheckName(name, n => new ArgumentException(n, nameof(name)));
        if (!_entries.TryAdd(name, (kind, value)))
        {
            if (kind == Kind.Tensor) ((Tensor)value).Dispose();
            throw new ArgumentException($"State entry '{name}' is set twice.", nameof(name));
        }
        _order.Add(name);
    }

    private object Get(string name, Kind kind)
    {
        if (!_entries.TryGetValue(name, out var entry))
            throw new ContinualModelFormatException($"The plugin state has no entry '{name}' (it has: {string.Join(", ", _order.Take(20))}{(_order.Count > 20 ? ", ..." : "")}).");
        if (entry.Kind != kind)
            throw new ContinualModelFormatException($"The plugin state's entry '{name}' is a {entry.Kind}, not a {kind}.");
        return entry.Value;
    }

    private static void CheckName(string name, Func<string, Exception> error)
    {
        if (string.IsNullOrEmpty(name) || name.Length > MaxNameLength || name.Any(char.IsControl))
            throw error($"A state entry name must be 1 to {MaxNameLength} printable characters ('{(name ?? "").Replace("\0", "\\0")}').");
    }

    // ---- the bytes ----

    /// <summary>Writes the store: magic, store format, version, count, then each entry (name, kind, payload).</summary>
    internal void Write(BinaryWriter writer)
    {
        writer.Write(Magic);
        writer.Write(StoreFormat);
        writer.Write(Version);
        writer.Write(_order.Count);
        foreach (string name in _order)
        {
            var (kind, value) = _entries[name];
            writer.Write(name);
            writer.Write((byte)kind);
            switch (kind)
            {
                case Kind.Tensor: TensorIO.Write(writer, (Tensor)value); break;
                case Kind.Double: writer.Write((double)value); break;
                case Kind.Int64: writer.Write((long)value); break;
                case Kind.Boolean: writer.Write((bool)value); break;
                default: writer.Write((string)value); break;
            }
        }
    }

    /// <summary>Reads a store written by <see cref="Write"/> from exactly the <paramref name="length"/> bytes that follow in
    /// <paramref name="reader"/>; no tensor is allocated before its size is checked against the bytes left.</summary>
    internal static ContinualState Read(BinaryReader reader, long length, string what)
    {
        var budget = new ReadBudget(reader, length, what);
        var state = new ContinualState();
        try
        {
            if (budget.Int32() != Magic) throw budget.Fail("is not a plugin state store");
            int format = budget.Int32();
            if (format != StoreFormat) throw budget.Fail($"has store format {format}; this version reads {StoreFormat}");
            state.Version = budget.Int32();
            int count = budget.Int32();
            if (count < 0 || count > MaxEntries) throw budget.Fail($"holds {count} entries");
            for (int i = 0; i < count; i++)
            {
                string name = budget.String(MaxNameLength);
                CheckName(name, m => budget.Fail(m));
                var kind = (Kind)budget.Byte();
                object value = kind switch
                {
                    Kind.Tensor => TensorIO.Read(reader, $"{what} '{name}'", budget),
                    Kind.Double => budget.Double(),
                    Kind.Int64 => budget.Int64(),
                    Kind.Boolean => budget.Boolean(),
                    Kind.Text => budget.String(1 << 20),
                    _ => throw budget.Fail($"entry '{name}' has unknown kind {(byte)kind}"),
                };
                if (!state._entries.TryAdd(name, (kind, value)))
                {
                    if (value is Tensor t) t.Dispose();
                    throw budget.Fail($"names entry '{name}' twice");
                }
                state._order.Add(name);
            }
            budget.CheckConsumed();
            return state;
        }
        catch
        {
            state.Dispose();
            throw;
        }
    }

    /// <summary>Removes <paramref name="name"/> (disposing its tensor); false when it was not stored.</summary>
    internal bool Remove(string name)
    {
        if (!_entries.Remove(name, out var entry)) return false;
        _order.Remove(name);
        if (entry.Value is Tensor tensor) tensor.Dispose();
        return true;
    }

    /// <summary>A deep copy through the bytes (what saving and loading would give).</summary>
    internal ContinualState Copy()
    {
        using var buffer = new MemoryStream();
        using (var writer = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true)) Write(writer);
        buffer.Position = 0;
        using var reader = new BinaryReader(buffer, Encoding.UTF8);
        return Read(reader, buffer.Length, "plugin state");
    }
}

/// <summary>
/// Reads primitives from a stream while counting the bytes left of an entry of known length: every read, and every
/// allocation a size read would cause, is checked against what is left first, so a damaged or hostile size fails with a
/// <see cref="ContinualModelFormatException"/> instead of allocating.
/// </summary>
internal sealed class ReadBudget
{
    private readonly BinaryReader _reader;
    private readonly long _start;
    private readonly long _length;
    private readonly string _what;
    private long _consumed;

    public ReadBudget(BinaryReader reader, long length, string what)
    {
        _reader = reader;
        _length = length;
        _what = what;
        _start = reader.BaseStream.CanSeek ? reader.BaseStream.Position : -1;
    }

    public long Remaining => _length - _consumed;

    public ContinualModelFormatException Fail(string why) => new($"The {_what} {why}.");

    /// <summary>Claims <paramref name="bytes"/> bytes of the entry before they are read (or allocated for).</summary>
    public void Take(long bytes)
    {
        if (bytes < 0 || bytes > Remaining) throw Fail($"is truncated or damaged: {bytes:N0} bytes are needed where {Remaining:N0} are left");
        _consumed += bytes;
    }

    public byte Byte() { Take(1); return _reader.ReadByte(); }
    public bool Boolean() { Take(1); return _reader.ReadBoolean(); }
    public int Int32() { Take(4); return _reader.ReadInt32(); }
    public long Int64() { Take(8); return _reader.ReadInt64(); }
    public float Single() { Take(4); return _reader.ReadSingle(); }
    public double Double() { Take(8); return _reader.ReadDouble(); }

    /// <summary>A length-prefixed UTF-8 string (BinaryWriter's format) of at most <paramref name="maxChars"/> characters.</summary>
    public string String(int maxChars)
    {
        int length = 0;
        for (int shift = 0; ; shift += 7)
        {
            if (shift > 28) throw Fail("holds a malformed string length");
            byte b = Byte();
            length |= (b & 0x7F) << shift;
            if ((b & 0x80) == 0) break;
        }
        if (length < 0 || length > (long)maxChars * 4) throw Fail($"holds a string of {length:N0} bytes (at most {maxChars:N0} characters are allowed)");
        Take(length);
        byte[] bytes = _reader.ReadBytes(length);
        if (bytes.Length != length) throw Fail("ends inside a string");
        return Encoding.UTF8.GetString(bytes);
    }

    /// <summary>Reads <paramref name="count"/> elements of <typeparamref name="T"/> into a new array, after claiming their bytes.</summary>
    public T[] Array<T>(long count) where T : unmanaged
    {
        long bytes = checked(count * Marshal.SizeOf<T>());
        Take(bytes);
        var result = new T[count];
        Span<byte> target = MemoryMarshal.AsBytes(result.AsSpan());
        while (target.Length > 0)
        {
            int read = _reader.Read(target);
            if (read == 0) throw Fail("ends inside an array");
            target = target[read..];
        }
        return result;
    }

    /// <summary>Fails unless every byte of the entry was read.</summary>
    public void CheckConsumed()
    {
        if (Remaining != 0) throw Fail($"has {Remaining:N0} bytes after its end");
        if (_start >= 0 && _reader.BaseStream.Position - _start != _length) throw Fail("was not read exactly");
    }
}
