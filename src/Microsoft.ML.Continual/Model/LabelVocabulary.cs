using System.Globalization;
using Microsoft.ML.Data;

namespace Microsoft.ML.Continual;

/// <summary>The storage type of a label (or task-id) column, as the model remembers it.</summary>
internal enum ValueKind : byte { Key = 1, Text = 2, Int32 = 3, Int64 = 4, Single = 5, Double = 6, Boolean = 7, UInt32 = 8 }

/// <summary>
/// The classes a multiclass model knows, in output order. New classes found in a later task are appended
/// (sorted among themselves, for determinism), so the outputs of earlier classes never move. Key labels map
/// key value k to output k-1, so that ML.NET's evaluators, which index scores by key, work unchanged.
/// </summary>
internal sealed class LabelVocabulary
{
    private readonly List<double> _numbers = new();
    private readonly List<string> _texts = new();
    private readonly Dictionary<double, int> _numberIndex = new();
    private readonly Dictionary<string, int> _textIndex = new(StringComparer.Ordinal);

    public LabelVocabulary(ValueKind kind) => Kind = kind;

    public ValueKind Kind { get; }

    /// <summary>For key labels: the key count (the number of outputs).</summary>
    public ulong KeyCount { get; private set; }

    /// <summary>For key labels: the key values' names when the training column had them, else empty.</summary>
    public List<string> KeyNames { get; } = new();

    public int Count => Kind switch
    {
        ValueKind.Key => checked((int)KeyCount),
        ValueKind.Text => _texts.Count,
        _ => _numbers.Count,
    };

    public static ValueKind KindOf(DataViewType type) => type switch
    {
        KeyDataViewType => ValueKind.Key,
        TextDataViewType => ValueKind.Text,
        BooleanDataViewType => ValueKind.Boolean,
        _ when type == NumberDataViewType.Int32 => ValueKind.Int32,
        _ when type == NumberDataViewType.Int64 => ValueKind.Int64,
        _ when type == NumberDataViewType.UInt32 => ValueKind.UInt32,
        _ when type == NumberDataViewType.Single => ValueKind.Single,
        _ when type == NumberDataViewType.Double => ValueKind.Double,
        _ => 0,
    };

    public static DataViewType TypeOf(ValueKind kind, ulong keyCount) => kind switch
    {
        ValueKind.Key => new KeyDataViewType(typeof(uint), keyCount),
        ValueKind.Text => TextDataViewType.Instance,
        ValueKind.Boolean => BooleanDataViewType.Instance,
        ValueKind.Int32 => NumberDataViewType.Int32,
        ValueKind.Int64 => NumberDataViewType.Int64,
        ValueKind.UInt32 => NumberDataViewType.UInt32,
        ValueKind.Single => NumberDataViewType.Single,
        ValueKind.Double => NumberDataViewType.Double,
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>Grows the key range (a later task's key type may be larger).</summary>
    public void EnsureKeyCount(ulong count, IReadOnlyList<string>? names)
    {
        if (count > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(count), "Key label types with more than int.MaxValue values are not supported.");
        if (count > KeyCount) KeyCount = count;
        if (names is not null && names.Count >= KeyNames.Count)
        {
            KeyNames.Clear();
            KeyNames.AddRange(names);
        }
    }

    /// <summary>Index of a class, or -1 when unknown.</summary>
    public int IndexOf(in LabelValue value) => Kind switch
    {
        ValueKind.Key => value.Number >= 1 && value.Number <= KeyCount ? (int)value.Number - 1 : -1,
        ValueKind.Text => _textIndex.TryGetValue(value.Text!, out int i) ? i : -1,
        _ => _numberIndex.TryGetValue(value.Number, out int j) ? j : -1,
    };

    /// <summary>Appends the values not yet known, sorted; returns how many were new.</summary>
    public int AddRange(IEnumerable<LabelValue> values)
    {
        if (Kind == ValueKind.Key) return 0;
        int added = 0;
        if (Kind == ValueKind.Text)
        {
            foreach (string t in values.Select(v => v.Text!).Where(t => !_textIndex.ContainsKey(t)).Distinct().OrderBy(t => t, StringComparer.Ordinal))
            {
                _textIndex[t] = _texts.Count;
                _texts.Add(t);
                added++;
            }
        }
        else
        {
            foreach (double d in values.Select(v => v.Number).Where(d => !_numberIndex.ContainsKey(d)).Distinct().OrderBy(d => d))
            {
                _numberIndex[d] = _numbers.Count;
                _numbers.Add(d);
                added++;
            }
        }
        return added;
    }

    /// <summary>The class at an output index, for display.</summary>
    public string Describe(int index) => Kind switch
    {
        ValueKind.Key => index < KeyNames.Count ? KeyNames[index] : (index + 1).ToString(CultureInfo.InvariantCulture),
        ValueKind.Text => _texts[index],
        _ => _numbers[index].ToString("R", CultureInfo.InvariantCulture),
    };

    public double NumberAt(int index) => Kind == ValueKind.Key ? index + 1 : _numbers[index];

    public string TextAt(int index) => _texts[index];

    public void Write(BinaryWriter w)
    {
        w.Write((byte)Kind);
        w.Write(KeyCount);
        WriteStrings(w, KeyNames);
        WriteStrings(w, _texts);
        w.Write(_numbers.Count);
        foreach (double d in _numbers) w.Write(d);
    }

    public static LabelVocabulary Read(BinaryReader r)
    {
        var kind = (ValueKind)r.ReadByte();
        if (!Enum.IsDefined(kind)) throw new ContinualModelFormatException($"Unknown label kind {(byte)kind} in the label vocabulary.");
        var v = new LabelVocabulary(kind);
        ulong keyCount = r.ReadUInt64();
        if (keyCount > int.MaxValue) throw new ContinualModelFormatException("The label vocabulary's key count is out of range.");
        v.KeyCount = keyCount;
        v.KeyNames.AddRange(ReadStrings(r));
        foreach (string t in ReadStrings(r))
        {
            if (!v._textIndex.TryAdd(t, v._texts.Count)) throw new ContinualModelFormatException($"Duplicate class '{t}' in the label vocabulary.");
            v._texts.Add(t);
        }
        int n = ModelIO.ReadCount(r, "label vocabulary");
        for (int i = 0; i < n; i++)
        {
            double d = r.ReadDouble();
            if (!v._numberIndex.TryAdd(d, v._numbers.Count)) throw new ContinualModelFormatException($"Duplicate class {d} in the label vocabulary.");
            v._numbers.Add(d);
        }
        return v;
    }

    public LabelVocabulary Clone()
    {
        using var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, System.Text.Encoding.UTF8, leaveOpen: true)) Write(w);
        ms.Position = 0;
        using var r = new BinaryReader(ms);
        return Read(r);
    }

    internal static void WriteStrings(BinaryWriter w, IReadOnlyCollection<string> strings)
    {
        w.Write(strings.Count);
        foreach (string s in strings) w.Write(s);
    }

    internal static List<string> ReadStrings(BinaryReader r)
    {
        int n = ModelIO.ReadCount(r, "string list");
        var list = new List<string>(Math.Min(n, 1 << 16));
        for (int i = 0; i < n; i++) list.Add(r.ReadString());
        return list;
    }
}

/// <summary>A label or task-id value read from a row: a number (keys, integers, floats, Booleans as 0/1) or a text.</summary>
internal readonly record struct LabelValue(double Number, string? Text)
{
    public override string ToString() => Text ?? Number.ToString("R", CultureInfo.InvariantCulture);
}
