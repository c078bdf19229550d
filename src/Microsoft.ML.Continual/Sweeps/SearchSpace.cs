using System.Globalization;
using System.Reflection;

namespace Microsoft.ML.Continual;

/// <summary>
/// Marks a numeric property of a search-parameter class as a range to sweep (as ML.NET AutoML's
/// <c>Microsoft.ML.SearchSpace.RangeAttribute</c> does). Integer properties get integer values.
/// </summary>
[AttributeUsage(AttributeTargets.Property, AllowMultiple = false)]
public sealed class RangeAttribute : Attribute
{
    /// <summary>A range [<paramref name="min"/>, <paramref name="max"/>], searched on a log scale when <paramref name="logBase"/> is true
    /// (then <paramref name="min"/> must be positive); <paramref name="init"/> is the starting point (the first trial of a model-based tuner).</summary>
    public RangeAttribute(double min, double max, double init = double.NaN, bool logBase = false)
    {
        (Min, Max, Init, LogBase) = (min, max, init, logBase);
    }

    /// <summary>A float range (as AutoML's attribute is written: <c>[Range(1f, 1e6f, init: 1000f, logBase: true)]</c>).</summary>
    public RangeAttribute(float min, float max, float init = float.NaN, bool logBase = false) : this((double)min, max, init, logBase) { }

    /// <summary>An integer range.</summary>
    public RangeAttribute(int min, int max, int init, bool logBase = false) : this((double)min, max, (double)init, logBase) { }

    /// <summary>The smallest value.</summary>
    public double Min { get; }
    /// <summary>The largest value.</summary>
    public double Max { get; }
    /// <summary>The starting value; NaN: the middle of the range (in its scale).</summary>
    public double Init { get; }
    /// <summary>True: searched uniformly in log(value).</summary>
    public bool LogBase { get; }
}

/// <summary>Marks a property of a search-parameter class as a choice among fixed values (strings, numbers, enum values, Booleans).</summary>
[AttributeUsage(AttributeTargets.Property, AllowMultiple = false)]
public sealed class ChoiceAttribute : Attribute
{
    /// <summary>The values to choose among, in order; the first is the starting point.</summary>
    public ChoiceAttribute(params object[] values) => Values = values;

    /// <summary>The values.</summary>
    public IReadOnlyList<object> Values { get; }
}

/// <summary>One dimension of a <see cref="SearchSpace{T}"/>.</summary>
/// <param name="Name">The property's name.</param>
/// <param name="Kind">Range of reals, range of integers, or choice.</param>
/// <param name="Min">Smallest value (ranges).</param>
/// <param name="Max">Largest value (ranges).</param>
/// <param name="LogScale">Searched in log(value) (ranges).</param>
/// <param name="Choices">The values (choices).</param>
public sealed record SearchDimension(string Name, SearchDimensionKind Kind, double Min, double Max, bool LogScale, IReadOnlyList<object> Choices);

/// <summary>The kind of a <see cref="SearchDimension"/>.</summary>
public enum SearchDimensionKind
{
    /// <summary>A real range.</summary>
    Real,
    /// <summary>An integer range.</summary>
    Integer,
    /// <summary>A choice among values.</summary>
    Choice,
}

/// <summary>
/// The search space of a sweep, read from the <see cref="RangeAttribute"/> and <see cref="ChoiceAttribute"/> attributes
/// on <typeparamref name="T"/>'s public settable properties. Tuners work on the unit cube [0, 1]^d; each coordinate maps
/// to its property linearly, on a log scale, rounded to integers or to a choice's bin.
/// </summary>
/// <typeparam name="T">A class with a parameterless constructor whose attributed properties are the parameters.</typeparam>
public sealed class SearchSpace<T> where T : class, new()
{
    private readonly PropertyInfo[]? _properties;
    private readonly Action<T, string, object>? _set;
    private readonly double[] _initial;

    /// <summary>A space given as dimensions rather than attributes (e.g. built from a command line or a configuration file);
    /// <paramref name="set"/> stores a dimension's value in the parameter object.</summary>
    public SearchSpace(IReadOnlyList<SearchDimension> dimensions, Action<T, string, object> set)
    {
        ArgumentNullException.ThrowIfNull(dimensions);
        ArgumentNullException.ThrowIfNull(set);
        if (dimensions.Count == 0) throw new ArgumentException("A search space needs at least one dimension.", nameof(dimensions));
        foreach (var d in dimensions)
        {
            if (d.Kind == SearchDimensionKind.Choice ? d.Choices.Count == 0 : !(d.Min < d.Max) || (d.LogScale && d.Min <= 0))
                throw new ArgumentException($"Dimension '{d.Name}' is empty or its range is not valid (min < max, and min > 0 on a log scale).", nameof(dimensions));
        }
        Dimensions = dimensions.ToList();
        _set = set;
        _initial = dimensions.Select(d => d.Kind == SearchDimensionKind.Choice ? 0.5 / d.Choices.Count : 0.5).ToArray();
    }

    /// <summary>Reads the attributes of <typeparamref name="T"/>; throws when a property's attribute does not fit its type or range.</summary>
    public SearchSpace()
    {
        var dimensions = new List<SearchDimension>();
        var properties = new List<PropertyInfo>();
        var initial = new List<double>();
        foreach (var property in typeof(T).GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.CanWrite).OrderBy(p => p.MetadataToken))
        {
            var range = property.GetCustomAttribute<RangeAttribute>();
            var choice = property.GetCustomAttribute<ChoiceAttribute>();
            if (range is null && choice is null) continue;
            if (range is not null && choice is not null)
                throw new ArgumentException($"Property {typeof(T).Name}.{property.Name} has both [Range] and [Choice].");
            Type type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            if (range is not null)
            {
                bool integer = type == typeof(int) || type == typeof(long);
                if (!integer && type != typeof(double) && type != typeof(float))
                    throw new ArgumentException($"Property {typeof(T).Name}.{property.Name} has [Range] but is a {type.Name}; ranges need int, long, float or double.");
                if (!(range.Min < range.Max) || !double.IsFinite(range.Min) || !double.IsFinite(range.Max))
                    throw new ArgumentException($"Property {typeof(T).Name}.{property.Name}: [Range] needs finite min < max (got {range.Min}, {range.Max}).");
                if (range.LogBase && range.Min <= 0)
                    throw new ArgumentException($"Property {typeof(T).Name}.{property.Name}: a log-scale [Range] needs min > 0 (got {range.Min}).");
                var dimension = new SearchDimension(property.Name, integer ? SearchDimensionKind.Integer : SearchDimensionKind.Real, range.Min, range.Max, range.LogBase, []);
                if (!double.IsNaN(range.Init) && (range.Init < range.Min || range.Init > range.Max))
                    throw new ArgumentException($"Property {typeof(T).Name}.{property.Name}: [Range] init {range.Init} is outside [{range.Min}, {range.Max}].");
                dimensions.Add(dimension);
                initial.Add(double.IsNaN(range.Init) ? 0.5 : ToUnit(dimension, range.Init));
            }
            else
            {
                if (choice!.Values.Count == 0) throw new ArgumentException($"Property {typeof(T).Name}.{property.Name}: [Choice] needs at least one value.");
                foreach (var value in choice.Values) Convert(value, type, property.Name);
                dimensions.Add(new SearchDimension(property.Name, SearchDimensionKind.Choice, 0, choice.Values.Count - 1, false, choice.Values));
                initial.Add(0.5 / choice.Values.Count);
            }
            properties.Add(property);
        }
        if (dimensions.Count == 0)
            throw new ArgumentException($"{typeof(T).Name} has no property with [Range] or [Choice]: there is nothing to search.");
        Dimensions = dimensions;
        _properties = properties.ToArray();
        _initial = initial.ToArray();
    }

    /// <summary>The dimensions, in declaration order.</summary>
    public IReadOnlyList<SearchDimension> Dimensions { get; }

    /// <summary>The starting point in the unit cube (each range's init, each choice's first value).</summary>
    internal double[] InitialPoint => (double[])_initial.Clone();

    /// <summary>The parameters at point <paramref name="unit"/> of the unit cube.</summary>
    public T Create(IReadOnlyList<double> unit)
    {
        if (unit.Count != Dimensions.Count) throw new ArgumentException($"The point has {unit.Count} coordinates; the space has {Dimensions.Count} dimensions.");
        var parameters = new T();
        for (int i = 0; i < Dimensions.Count; i++)
        {
            if (_set is not null) { _set(parameters, Dimensions[i].Name, ValueAt(Dimensions[i], unit[i])); continue; }
            Type type = Nullable.GetUnderlyingType(_properties![i].PropertyType) ?? _properties[i].PropertyType;
            _properties[i].SetValue(parameters, Convert(ValueAt(Dimensions[i], unit[i]), type, _properties[i].Name));
        }
        return parameters;
    }

    /// <summary>Each property's value at point <paramref name="unit"/> (for tables and plots).</summary>
    public IReadOnlyDictionary<string, object> Values(IReadOnlyList<double> unit) =>
        Dimensions.Select((d, i) => (d.Name, Value: ValueAt(d, unit[i]))).ToDictionary(p => p.Name, p => p.Value);

    /// <summary>The value of dimension <paramref name="dimension"/> at unit coordinate <paramref name="u"/> ∈ [0, 1].</summary>
    internal static object ValueAt(SearchDimension dimension, double u)
    {
        u = Math.Clamp(u, 0, 1);
        if (dimension.Kind == SearchDimensionKind.Choice)
            return dimension.Choices[Math.Min((int)(u * dimension.Choices.Count), dimension.Choices.Count - 1)];
        if (dimension.Kind == SearchDimensionKind.Integer && !dimension.LogScale)
        {
            // Every integer gets an equal share of [0, 1]: u maps to [min − ½, max + ½] before rounding.
            double widened = dimension.Min - 0.5 + u * (dimension.Max - dimension.Min + 1);
            return Math.Clamp(Math.Round(widened, MidpointRounding.AwayFromZero), dimension.Min, dimension.Max);
        }
        double value = dimension.LogScale
            ? Math.Exp(Math.Log(dimension.Min) + u * (Math.Log(dimension.Max) - Math.Log(dimension.Min)))
            : dimension.Min + u * (dimension.Max - dimension.Min);
        value = Math.Clamp(value, dimension.Min, dimension.Max); // exp(log(x)) may round past the bounds
        return dimension.Kind == SearchDimensionKind.Integer ? Math.Round(value) : value;
    }

    internal static double ToUnit(SearchDimension dimension, double value) => dimension.LogScale
        ? (Math.Log(value) - Math.Log(dimension.Min)) / (Math.Log(dimension.Max) - Math.Log(dimension.Min))
        : (value - dimension.Min) / (dimension.Max - dimension.Min);

    private static object Convert(object value, Type type, string name)
    {
        try
        {
            if (type.IsEnum) return value is string s ? Enum.Parse(type, s) : Enum.ToObject(type, value);
            return System.Convert.ChangeType(value, type, CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is InvalidCastException or FormatException or OverflowException or ArgumentException)
        {
            throw new ArgumentException($"Value {value} does not fit property {typeof(T).Name}.{name} of type {type.Name}.", e);
        }
    }
}
