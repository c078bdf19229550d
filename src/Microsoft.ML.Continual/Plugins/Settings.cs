using System.Globalization;
using System.Reflection;

namespace Microsoft.ML.Continual;

/// <summary>
/// The settings of an options object, plugin or backbone: its public properties with a getter and a setter, written and
/// read as invariant name/value text. Models store options, plugin settings and backbone settings this way, so a later
/// version reads older models (missing names keep their defaults) and an older version ignores names it does not know.
/// </summary>
internal static class Settings
{
    /// <summary>Every public settable property of <paramref name="type"/>, ordered by name.</summary>
    public static IEnumerable<PropertyInfo> Properties(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.CanRead && p.CanWrite && p.GetSetMethod() is not null && p.GetIndexParameters().Length == 0)
            .OrderBy(p => p.Name, StringComparer.Ordinal);

    /// <summary>The settings of <paramref name="value"/> as name/value text (a nested backbone as its name and its own settings, prefixed).</summary>
    public static List<KeyValuePair<string, string>> ToPairs(object value)
    {
        var pairs = new List<KeyValuePair<string, string>>();
        foreach (PropertyInfo p in Properties(value.GetType()))
        {
            object? current = p.GetValue(value);
            if (typeof(ContinualBackbone).IsAssignableFrom(p.PropertyType))
            {
                pairs.Add(new(p.Name, current is ContinualBackbone b ? ContinualBackbones.NameOf(b.GetType()) : ""));
                if (current is not null)
                    foreach (var (name, text) in ToPairs(current)) pairs.Add(new($"{p.Name}.{name}", text));
                continue;
            }
            pairs.Add(new(p.Name, Format(current)));
        }
        return pairs;
    }

    /// <summary>Sets <paramref name="target"/>'s settings from stored pairs: unknown names are ignored (a newer writer), missing
    /// names keep their defaults (an older writer); a value of the wrong form is a <see cref="ContinualModelFormatException"/>.</summary>
    public static void FromStoredPairs(object target, IEnumerable<KeyValuePair<string, string>> pairs)
    {
        var byName = Properties(target.GetType()).ToDictionary(p => p.Name, StringComparer.Ordinal);
        var list = pairs.ToList();
        foreach (var (name, text) in list)
        {
            if (name.Contains('.') || !byName.TryGetValue(name, out var p)) continue;
            if (typeof(ContinualBackbone).IsAssignableFrom(p.PropertyType))
            {
                p.SetValue(target, text.Length == 0 ? null : ContinualBackbones.Create(text, Nested(list, name)));
                continue;
            }
            p.SetValue(target, Parse(p.PropertyType, text, name));
        }
    }

    /// <summary>Sets settings a user wrote as name=value text (e.g. on a command line): names match any case; an unknown name or
    /// a value of the wrong type is an <see cref="ArgumentException"/> that lists the valid names or says the type.</summary>
    public static void FromUserPairs(object target, IEnumerable<KeyValuePair<string, string>> pairs, string owner)
    {
        var byName = Properties(target.GetType()).ToDictionary(p => p.Name, StringComparer.OrdinalIgnoreCase);
        foreach (var (name, text) in pairs)
        {
            if (!byName.TryGetValue(name.Trim(), out var p))
                throw new ArgumentException($"Unknown option '{name}'. Options of {owner}: {string.Join(", ", byName.Keys.Order(StringComparer.Ordinal))}.");
            try
            {
                if (typeof(ContinualBackbone).IsAssignableFrom(p.PropertyType))
                    p.SetValue(target, text.Trim().Length == 0 ? null : ContinualBackbones.Create(text.Trim(), []));
                else
                    p.SetValue(target, Parse(p.PropertyType, text.Trim(), p.Name));
            }
            catch (ContinualModelFormatException e)
            {
                Type type = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
                string expected = type.IsEnum ? $"one of {string.Join(", ", Enum.GetNames(type))}"
                    : type == typeof(int[]) ? "comma-separated integers"
                    : typeof(ContinualBackbone).IsAssignableFrom(type) ? $"a backbone name ({string.Join(", ", ContinualBackbones.Names)})"
                    : $"a {type.Name}";
                throw new ArgumentException($"Option {p.Name} = '{text}' is not valid: expected {expected}.", e);
            }
        }
    }

    /// <summary>Copies every setting of <paramref name="source"/> that <paramref name="target"/> has under the same name and type.</summary>
    public static void CopyMatching(object source, object target)
    {
        var sources = Properties(source.GetType()).ToDictionary(p => p.Name, StringComparer.Ordinal);
        foreach (PropertyInfo p in Properties(target.GetType()))
            if (sources.TryGetValue(p.Name, out var s) && s.PropertyType == p.PropertyType) p.SetValue(target, s.GetValue(source));
    }

    /// <summary>Checks that every property of a settings type can be stored (so a user's plugin fails at registration, not at save).</summary>
    public static void CheckStorable(Type type)
    {
        foreach (PropertyInfo p in Properties(type))
        {
            Type t = Nullable.GetUnderlyingType(p.PropertyType) ?? p.PropertyType;
            bool ok = t == typeof(string) || t == typeof(int[]) || t.IsEnum || t == typeof(bool) || t == typeof(int) || t == typeof(long)
                || t == typeof(float) || t == typeof(double) || typeof(ContinualBackbone).IsAssignableFrom(t);
            if (!ok)
                throw new ArgumentException($"{type.Name}.{p.Name} is a {p.PropertyType.Name}; settings must be bool, int, long, float, double, string, an enum, int[] or a nullable of these.");
        }
    }

    private static IEnumerable<KeyValuePair<string, string>> Nested(List<KeyValuePair<string, string>> pairs, string prefix) =>
        pairs.Where(p => p.Key.StartsWith(prefix + ".", StringComparison.Ordinal)).Select(p => new KeyValuePair<string, string>(p.Key[(prefix.Length + 1)..], p.Value));

    public static string Format(object? value) => value switch
    {
        null => "",
        int[] a => string.Join(",", a.Select(v => v.ToString(CultureInfo.InvariantCulture))),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    public static object? Parse(Type type, string text, string name)
    {
        Type? underlying = Nullable.GetUnderlyingType(type);
        if (underlying is not null)
            return text.Length == 0 ? null : Parse(underlying, text, name);
        try
        {
            if (type == typeof(string)) return text.Length == 0 ? null : text;
            if (type == typeof(int[])) return text.Length == 0 ? Array.Empty<int>() : text.Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
            if (type.IsEnum)
            {
                object parsed = Enum.Parse(type, text, ignoreCase: false);
                if (!Enum.IsDefined(type, parsed)) throw new FormatException($"{text} is not a defined {type.Name}");
                return parsed;
            }
            if (type == typeof(bool)) return bool.Parse(text);
            if (type == typeof(int)) return int.Parse(text, CultureInfo.InvariantCulture);
            if (type == typeof(long)) return long.Parse(text, CultureInfo.InvariantCulture);
            if (type == typeof(float)) return float.Parse(text, CultureInfo.InvariantCulture);
            if (type == typeof(double)) return double.Parse(text, CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is FormatException or OverflowException or ArgumentException)
        {
            throw new ContinualModelFormatException($"Stored option {name} has the value '{text}', which is not a valid {type.Name}.", e);
        }
        throw new ContinualModelFormatException($"Stored option {name} has a type ({type.Name}) this version cannot read.");
    }
}
