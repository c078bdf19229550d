using System.Globalization;
using Microsoft.ML.Data;

namespace Microsoft.ML.Continual;

/// <summary>
/// Column roles from a sample of rows, with the rules of ML.NET's column inference (AutoML's purpose inference):
/// Booleans and dates by type; numbers by type, or text that parses as numbers almost always; identifiers (every value
/// distinct, or an "id"-like name with one value per row) and constants ignored; text with many words per value is free
/// text; other text and keys are categories. Overrides from the options win.
/// </summary>
internal static class ColumnInference
{
    private const double ParseShare = 0.95;

    private sealed class Profile
    {
        public long Rows, Missing, Numbers, Dates, Booleans, Words;
        public long Characters;
        public readonly HashSet<string> Distinct = new(StringComparer.Ordinal);
        public bool DistinctOverflow;
    }

    public static IReadOnlyList<ColumnRoleInfo> Infer(IDataView data, ContinualFeaturizerOptions options)
    {
        var schema = data.Schema;
        foreach (string given in options.Categorical.Concat(options.Numeric).Concat(options.Ignore).Concat(options.Text))
            if (schema.GetColumnOrNull(given) is null)
                throw new ContinualDataException(given, $"Column '{given}' was named in an override but is not in the data; it has: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => c.Name))}.");
        if (schema.GetColumnOrNull(options.LabelColumnName) is null)
            throw new ContinualDataException(options.LabelColumnName, $"Label column '{options.LabelColumnName}' was not found; the data has: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => c.Name))}.");
        var profiles = Sample(data, options);
        var roles = new List<ColumnRoleInfo>();
        foreach (var column in schema.Where(c => !c.IsHidden))
            roles.Add(RoleOf(column, profiles.GetValueOrDefault(column.Name), options));
        return roles;
    }

    private static ColumnRoleInfo RoleOf(DataViewSchema.Column column, Profile? profile, ContinualFeaturizerOptions options)
    {
        string name = column.Name;
        if (name == options.LabelColumnName) return new(name, ColumnRole.Label, "the label");
        if (name == options.TaskIdColumnName) return new(name, ColumnRole.TaskId, "the task id");
        if (options.Ignore.Contains(name)) return new(name, ColumnRole.Ignore, "asked for");
        if (options.Categorical.Contains(name)) return new(name, ColumnRole.Categorical, "asked for");
        if (options.Numeric.Contains(name)) return new(name, ColumnRole.Numeric, "asked for");
        if (options.Text.Contains(name)) return new(name, ColumnRole.Text, "asked for");
        var type = column.Type;
        var item = type.GetItemType();
        if (type is VectorDataViewType vector)
            return item is NumberDataViewType && vector.IsKnownSize ? new(name, ColumnRole.Numeric, $"a vector of {vector.Size} numbers")
                : new(name, ColumnRole.Ignore, $"a vector of {item} (not supported as a feature)");
        if (profile is null || profile.Rows == 0) return new(name, ColumnRole.Ignore, "no rows to infer from");
        string counts = profile.DistinctOverflow ? $"over {profile.Distinct.Count:N0} distinct values in {profile.Rows:N0} rows" : $"{profile.Distinct.Count:N0} distinct values in {profile.Rows:N0} rows";
        if (profile.Missing == profile.Rows) return new(name, ColumnRole.Ignore, $"empty in {profile.Rows:N0} rows");
        if (profile.Distinct.Count == 1 && profile.Missing == 0) return new(name, ColumnRole.Ignore, "one value only");
        if (item is BooleanDataViewType) return new(name, ColumnRole.Boolean, "Boolean");
        if (item is DateTimeDataViewType or DateTimeOffsetDataViewType) return new(name, ColumnRole.Date, "a date");
        if (item is KeyDataViewType) return new(name, ColumnRole.Categorical, $"a key, {counts}");
        bool allDistinct = !profile.DistinctOverflow && profile.Distinct.Count == profile.Rows - profile.Missing && profile.Rows >= 20;
        if (item is NumberDataViewType)
        {
            if (allDistinct && LooksLikeIdentifier(name) && IsInteger(item)) return new(name, ColumnRole.Ignore, $"an identifier: integers, every value distinct ({counts})");
            return new(name, ColumnRole.Numeric, $"numbers, {counts}");
        }
        long present = profile.Rows - profile.Missing;
        if (profile.Booleans >= ParseShare * present) return new(name, ColumnRole.Boolean, "text that reads as Booleans");
        if (profile.Numbers >= ParseShare * present) return new(name, ColumnRole.Numeric, $"text that reads as numbers, {counts}");
        if (profile.Dates >= ParseShare * present) return new(name, ColumnRole.Date, "text that reads as dates");
        double wordsPerValue = (double)profile.Words / Math.Max(present, 1);
        if (allDistinct && wordsPerValue <= 1.5) return new(name, ColumnRole.Ignore, $"an identifier: every value distinct ({counts})");
        // Every value distinct but several words each: a note, not a category (a bucket per row would learn nothing).
        if (allDistinct) return new(name, ColumnRole.Text, $"free text: every value distinct, {wordsPerValue:F1} words per value");
        if (wordsPerValue > 3 && profile.Distinct.Count > present / 2) return new(name, ColumnRole.Text, $"free text, {wordsPerValue:F1} words per value");
        return new(name, ColumnRole.Categorical, $"text, {counts}");
    }

    private static bool LooksLikeIdentifier(string name)
    {
        string lower = name.ToLowerInvariant();
        return lower is "id" or "key" or "index" || lower.EndsWith("_id") || lower.EndsWith(" id") || lower.StartsWith("id_") || lower.EndsWith("id") && char.IsUpper(name[^2]) || lower.EndsWith("number") || lower.EndsWith("num");
    }

    private static bool IsInteger(DataViewType item) =>
        item == NumberDataViewType.Int32 || item == NumberDataViewType.Int64 || item == NumberDataViewType.UInt32 || item == NumberDataViewType.UInt64
        || item == NumberDataViewType.Int16 || item == NumberDataViewType.UInt16 || item == NumberDataViewType.Byte || item == NumberDataViewType.SByte;

    /// <summary>Profiles of the first <see cref="ContinualFeaturizerOptions.SampleRows"/> rows: missing values, distinct values
    /// (up to 10,000), and for text how often it reads as a number, a date or a Boolean and how many words it has.</summary>
    private static Dictionary<string, Profile> Sample(IDataView data, ContinualFeaturizerOptions options)
    {
        var columns = data.Schema.Where(c => !c.IsHidden && c.Type is not VectorDataViewType).ToList();
        var profiles = columns.ToDictionary(c => c.Name, _ => new Profile());
        using var cursor = data.GetRowCursor(columns);
        var readers = columns.Select(c => (profiles[c.Name], Reader(cursor, c), c.Type is TextDataViewType)).ToList();
        long rows = 0;
        while (rows < options.SampleRows && cursor.MoveNext())
        {
            rows++;
            foreach (var (profile, read, isText) in readers)
            {
                profile.Rows++;
                string? text = read();
                if (string.IsNullOrEmpty(text)) { profile.Missing++; continue; }
                if (profile.Distinct.Count < 10_000) profile.Distinct.Add(text); else if (!profile.Distinct.Contains(text)) profile.DistinctOverflow = true;
                if (isText) Classify(profile, text);
            }
        }
        return profiles;
    }

    /// <summary>What one text value reads as: a number, a date, a Boolean; and its word count.</summary>
    private static void Classify(Profile profile, string text)
    {
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out _)) profile.Numbers++;
        else if (text.Length >= 6 && text.Any(char.IsDigit) && DateTime.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AllowWhiteSpaces, out _)) profile.Dates++;
        if (bool.TryParse(text, out _)) profile.Booleans++;
        profile.Words += text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries).Length;
        profile.Characters += text.Length;
    }

    /// <summary>A reader of one column's value as text (null or empty: missing); for text columns it also counts what the text reads as.</summary>
    private static Func<string?> Reader(DataViewRowCursor cursor, DataViewSchema.Column column)
    {
        var type = column.Type;
        if (type is TextDataViewType)
        {
            var getter = cursor.GetGetter<ReadOnlyMemory<char>>(column);
            ReadOnlyMemory<char> value = default;
            return () => { getter(ref value); return value.ToString().Trim(); };
        }
        if (type is BooleanDataViewType)
        {
            var getter = cursor.GetGetter<bool>(column);
            bool value = false;
            return () => { getter(ref value); return value ? "true" : "false"; };
        }
        if (type is KeyDataViewType)
        {
            var getter = cursor.GetGetter<uint>(column);
            uint value = 0;
            return () => { getter(ref value); return value == 0 ? null : value.ToString(CultureInfo.InvariantCulture); };
        }
        if (type is DateTimeDataViewType)
        {
            var getter = cursor.GetGetter<DateTime>(column);
            DateTime value = default;
            return () => { getter(ref value); return value == default ? null : value.ToString("O", CultureInfo.InvariantCulture); };
        }
        if (type == NumberDataViewType.Single)
        {
            var getter = cursor.GetGetter<float>(column);
            float value = 0;
            return () => { getter(ref value); return float.IsNaN(value) ? null : value.ToString("R", CultureInfo.InvariantCulture); };
        }
        if (type == NumberDataViewType.Double)
        {
            var getter = cursor.GetGetter<double>(column);
            double value = 0;
            return () => { getter(ref value); return double.IsNaN(value) ? null : value.ToString("R", CultureInfo.InvariantCulture); };
        }
        if (type is NumberDataViewType) return TryInteger(cursor, column);
        return () => null;
    }

    private static Func<string?> TryInteger(DataViewRowCursor cursor, DataViewSchema.Column column)
    {
        var type = column.Type;
        if (type == NumberDataViewType.Int32) { var g = cursor.GetGetter<int>(column); int v = 0; return () => { g(ref v); return v.ToString(CultureInfo.InvariantCulture); }; }
        if (type == NumberDataViewType.Int64) { var g = cursor.GetGetter<long>(column); long v = 0; return () => { g(ref v); return v.ToString(CultureInfo.InvariantCulture); }; }
        if (type == NumberDataViewType.UInt32) { var g = cursor.GetGetter<uint>(column); uint v = 0; return () => { g(ref v); return v.ToString(CultureInfo.InvariantCulture); }; }
        return () => null;
    }
}
