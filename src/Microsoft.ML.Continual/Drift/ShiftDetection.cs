using System.Globalization;
using System.Text;
using Microsoft.ML.Data;

namespace Microsoft.ML.Continual;

/// <summary>Options of <see cref="ContinualCatalog.DetectShift(ITransformer, IDataView, ShiftDetectionOptions?)"/>.</summary>
public sealed class ShiftDetectionOptions
{
    /// <summary>The test's level: the data is called shifted when the p-value is below it. Default 0.05.</summary>
    public double Alpha { get; set; } = 0.05;

    /// <summary>Permutations of each test; the smallest p-value one can give is 1/(permutations + 1), and a classifier's
    /// decision (two tests, the smaller p-value doubled) 2/(permutations + 1). Default 499.</summary>
    public int Permutations { get; set; } = 499;

    /// <summary>Rows of the new data compared (a uniform sample of them when the data has more). Default 500, at most
    /// <see cref="MaxRowsLimit"/>.</summary>
    public int MaxRows { get; set; } = 500;

    /// <summary>Seeds the sample of the new data's rows and the permutations: the same seed gives the same report.</summary>
    public int Seed { get; set; }

    /// <summary>At most this many shifted features are listed in <see cref="ShiftReport.Features"/> (the largest first). Default 10.</summary>
    public int MaxFeaturesReported { get; set; } = 10;

    /// <summary>For <see cref="ContinualCatalog.DetectShift(IDataView, IDataView, ShiftDetectionOptions?)"/>: the feature
    /// column of both views. Default "Features". (A model's own feature column is used when a model is given.)</summary>
    public string FeatureColumnName { get; set; } = "Features";

    /// <summary>The most rows either sample may have (the test's memory grows with the square of the rows).</summary>
    public const int MaxRowsLimit = 2000;

    /// <param name="withModel">With a classifier two tests decide and the smaller p-value is doubled, so the smallest
    /// decision p-value is 2/(permutations + 1).</param>
    internal void Validate(bool withModel = false)
    {
        if (!(Alpha > 0 && Alpha < 1)) throw new ArgumentOutOfRangeException(nameof(Alpha), Alpha, "Alpha must be in (0, 1).");
        if (Permutations < 19 || Permutations > 100_000)
            throw new ArgumentOutOfRangeException(nameof(Permutations), Permutations, "Permutations must be 19 to 100,000.");
        int tests = withModel ? 2 : 1;
        if ((double)tests / (Permutations + 1) >= Alpha)
            throw new ArgumentOutOfRangeException(nameof(Permutations), Permutations,
                $"With {Permutations} permutations the smallest p-value is {tests}/{Permutations + 1}{(withModel ? " (a classifier's two tests, the smaller p-value doubled)" : "")}, not below Alpha {Alpha}: no shift could ever be detected. Use at least {(int)Math.Ceiling(tests / Alpha)} permutations.");
        if (MaxRows < ShiftTest.MinimumRows || MaxRows > MaxRowsLimit)
            throw new ArgumentOutOfRangeException(nameof(MaxRows), MaxRows, $"MaxRows must be {ShiftTest.MinimumRows} to {MaxRowsLimit}.");
        if (MaxFeaturesReported < 0) throw new ArgumentOutOfRangeException(nameof(MaxFeaturesReported), MaxFeaturesReported, "MaxFeaturesReported must be 0 or more.");
        if (string.IsNullOrEmpty(FeatureColumnName)) throw new ArgumentException("FeatureColumnName must name a column.", nameof(FeatureColumnName));
    }
}

/// <summary>One feature whose distribution differs between the reference and the new data.</summary>
/// <param name="Index">The feature's position in the feature vector.</param>
/// <param name="Name">Its slot name when the feature column has slot names (e.g. a featurizer's "age" or "region.North"), else <c>Features[i]</c>.</param>
/// <param name="KolmogorovSmirnov">The two-sample Kolmogorov–Smirnov statistic D (the largest gap between the two empirical distribution functions, 0 to 1): the effect size.</param>
/// <param name="PValue">Its p-value, Holm-adjusted over the features that vary.</param>
/// <param name="MeanShift">(mean of the new data − mean of the reference) / the standard deviation of both samples' rows taken together.</param>
public sealed record FeatureShift(int Index, string Name, double KolmogorovSmirnov, double PValue, double MeanShift);

/// <summary>
/// What <see cref="ContinualCatalog.DetectShift(ITransformer, IDataView, ShiftDetectionOptions?)"/> found: whether the new
/// data come from another distribution than the reference sample (their features, and for a classifier the classes it
/// predicts for them), with the p-values, the effect sizes, the features that moved and the predicted classes' shares.
/// </summary>
public sealed class ShiftReport
{
    internal ShiftReport(double featuresPValue, PredictionShift? predictions, double alpha, double mmd, int referenceRows, int rows, int permutations,
        int featuresCompared, int shiftedFeatureCount, IReadOnlyList<FeatureShift> features)
    {
        FeaturesPValue = featuresPValue; Predictions = predictions;
        PValue = predictions is null ? featuresPValue : Math.Min(1, 2 * Math.Min(featuresPValue, predictions.PValue));
        Shifted = PValue < alpha; Alpha = alpha; MaximumMeanDiscrepancy = mmd; ReferenceRows = referenceRows; Rows = rows;
        Permutations = permutations; FeaturesCompared = featuresCompared; ShiftedFeatureCount = shiftedFeatureCount; Features = features;
    }

    /// <summary>Whether <see cref="PValue"/> is below <see cref="Alpha"/>.</summary>
    public bool Shifted { get; }

    /// <summary>The decision's p-value. With a model's outputs tested too (<see cref="Predictions"/>), the smaller of the two
    /// tests' p-values doubled (Bonferroni: the chance of a false alarm stays at most <see cref="Alpha"/>); otherwise the
    /// feature test's (<see cref="FeaturesPValue"/>).</summary>
    public double PValue { get; }

    /// <summary>The permutation p-value of the MMD test on the features: (1 + permutations whose MMD² is at least the
    /// observed) / (1 + permutations).</summary>
    public double FeaturesPValue { get; }

    /// <summary>The test on the classes the model predicts for the reference and the new rows (their shares); null when two
    /// data views are compared, for a regression model, and when the model predicts per task (a task-id column: the
    /// reference rows keep no task ids).</summary>
    public PredictionShift? Predictions { get; }

    /// <summary>The level the decision was taken at.</summary>
    public double Alpha { get; }

    /// <summary>The effect size: the (biased) squared maximum mean discrepancy between the two samples, with the Gaussian
    /// kernel on standardized features (0: the same sample; at most 2).</summary>
    public double MaximumMeanDiscrepancy { get; }

    /// <summary>Rows of the reference sample.</summary>
    public int ReferenceRows { get; }

    /// <summary>Rows of the new data compared.</summary>
    public int Rows { get; }

    /// <summary>Permutations the p-value was computed from.</summary>
    public int Permutations { get; }

    /// <summary>Features that vary in the pooled rows (the constant ones cannot tell the samples apart and are left out).</summary>
    public int FeaturesCompared { get; }

    /// <summary>How many features differ by the per-feature Kolmogorov–Smirnov test at <see cref="Alpha"/>, Holm-adjusted.</summary>
    public int ShiftedFeatureCount { get; }

    /// <summary>The features that differ, the largest D first (at most <see cref="ShiftDetectionOptions.MaxFeaturesReported"/>).</summary>
    public IReadOnlyList<FeatureShift> Features { get; }

    /// <summary>One line: the decision, the p-value and effect, and the features that moved most.</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        string tests = Predictions is null ? "MMD test" : "the smaller of the MMD test's and the outputs' p-values, doubled";
        text.Append(CultureInfo.InvariantCulture, $"{(Shifted ? "Shifted" : "No shift detected")}: p = {PValue:0.####} {(Shifted ? "<" : ">=")} {Alpha:0.###} ({tests}, {Permutations} permutations), MMD² {MaximumMeanDiscrepancy:0.#####}; {Rows} new rows against {ReferenceRows} reference rows");
        if (Predictions is { } outputs)
        {
            text.Append(CultureInfo.InvariantCulture, $"; features p = {FeaturesPValue:0.####}, outputs p = {outputs.PValue:0.####} ({outputs.Test}, effect {outputs.EffectSize:0.###}");
            var moved = outputs.Classes.Take(3).Where(c => c.NewShare != c.ReferenceShare).ToList();
            if (moved.Count > 0)
                text.Append(": ").Append(string.Join(", ", moved.Select(c => string.Create(CultureInfo.InvariantCulture, $"{c.Name} {c.ReferenceShare:0.###} → {c.NewShare:0.###}"))));
            text.Append(')');
        }
        text.Append(CultureInfo.InvariantCulture, $"; {ShiftedFeatureCount} of {FeaturesCompared} features differ (Kolmogorov–Smirnov, Holm-adjusted)");
        if (Features.Count > 0)
            text.Append(": ").Append(string.Join(", ", Features.Select(f => string.Create(CultureInfo.InvariantCulture, $"{f.Name} (D {f.KolmogorovSmirnov:0.###}, mean {f.MeanShift:+0.##;-0.##} sd)"))));
        return text.Append('.').ToString();
    }
}

/// <summary>
/// The sample a network model keeps of the rows of its latest fit (<see cref="ContinualTrainerOptions.ShiftReferenceRows"/>),
/// for shift detection: row-major features, at most <see cref="MaxStoredRows"/> rows. It travels in the model zip
/// (<c>ShiftReference.bin</c>) and is replaced by every fit.
/// </summary>
internal sealed class ShiftReference
{
    public const int MaxStoredRows = ShiftDetectionOptions.MaxRowsLimit;
    public const string EntryName = "ShiftReference.bin";

    public ShiftReference(float[] rows, int count, int featureSize)
    {
        if (rows.Length != (long)count * featureSize) throw new ArgumentException("The rows do not match the count and feature size.");
        Rows = rows; Count = count; FeatureSize = featureSize;
    }

    public float[] Rows { get; }
    public int Count { get; }
    public int FeatureSize { get; }

    /// <summary>Which rows a uniform sample of at most <paramref name="size"/> of <paramref name="rowCount"/> rows takes, in
    /// data order, the same for the same seed: a partial Fisher–Yates shuffle of the row indices (a generator of its own,
    /// so that training's draws are not moved).</summary>
    public static long[] SampleRows(int rowCount, int size, int seed)
    {
        int take = Math.Min(size, rowCount);
        var order = Enumerable.Range(0, rowCount).ToArray();
        ShuffleFirst(order, take, new Random(seed));
        return order.Take(take).Order().Select(i => (long)i).ToArray();
    }

    /// <summary>A uniform choice of which <paramref name="n"/> of the values come first, in place (a partial Fisher–Yates
    /// shuffle; chained calls stay uniform whatever order the values are in).</summary>
    public static void ShuffleFirst(int[] values, int n, Random random)
    {
        for (int i = 0; i < n; i++)
        {
            int j = i + random.Next(values.Length - i);
            (values[i], values[j]) = (values[j], values[i]);
        }
    }

    public void Write(BinaryWriter w)
    {
        w.Write(Count);
        w.Write(FeatureSize);
        foreach (float v in Rows) w.Write(v);
    }

    /// <summary>Reads what <see cref="Write"/> wrote, every size checked against the entry's bytes before allocating.</summary>
    public static ShiftReference Read(BinaryReader r, int featureSize)
    {
        var budget = TensorIO.Budget(r, EntryName);
        int count = budget.Int32();
        int size = budget.Int32();
        if (size != featureSize) throw new ContinualModelFormatException($"The '{EntryName}' entry (the shift reference) has {size} features; the model takes {featureSize}.");
        if (count < ShiftTest.MinimumRows || count > MaxStoredRows) throw new ContinualModelFormatException($"The '{EntryName}' entry (the shift reference) has a row count of {count:N0}, out of range ({ShiftTest.MinimumRows}..{MaxStoredRows:N0}).");
        long values = (long)count * size;
        if (values * sizeof(float) != budget.Remaining) throw new ContinualModelFormatException($"The '{EntryName}' entry (the shift reference) declares {count:N0} rows of {size} features; it holds {budget.Remaining:N0} bytes for them.");
        float[] rows = budget.Array<float>(values);
        if (!TaskData.AllFinite(rows)) throw new ContinualModelFormatException($"The '{EntryName}' entry (the shift reference) holds a value that is not finite.");
        return new ShiftReference(rows, count, size);
    }
}

/// <summary>A uniform sample (Vitter's algorithm R) of at most a number of rows offered one at a time, for a shift
/// reference kept while a task is read for training (no second pass over the data).</summary>
internal sealed class ShiftReferenceBuilder
{
    private readonly int _capacity, _featureSize;
    private readonly float[] _rows;
    private readonly Random _random;
    private long _seen;

    public ShiftReferenceBuilder(int capacity, int featureSize, int seed)
    {
        _capacity = capacity;
        _featureSize = featureSize;
        _rows = new float[(long)capacity * featureSize];
        _random = new Random(seed);
    }

    public void Offer(ReadOnlySpan<float> row)
    {
        long slot = _seen < _capacity ? _seen : _random.NextInt64(_seen + 1);
        if (slot < _capacity) row.CopyTo(_rows.AsSpan((int)slot * _featureSize, _featureSize));
        _seen++;
    }

    /// <summary>The sample, or null when fewer rows than a two-sample test needs were offered.</summary>
    public ShiftReference? Build() => Math.Min(_seen, _capacity) < ShiftTest.MinimumRows ? null : Sample();

    /// <summary>The sample, however few rows it holds.</summary>
    public ShiftReference Sample()
    {
        int count = (int)Math.Min(_seen, _capacity);
        return new ShiftReference(count == _capacity ? _rows : _rows.AsSpan(0, count * _featureSize).ToArray(), count, _featureSize);
    }
}

/// <summary>Reads up to a number of rows of a feature column: a uniform reservoir sample (Vitter's algorithm R) in one pass.</summary>
internal static class FeatureSampler
{
    public static ShiftReference Read(IDataView data, string featureColumn, int? expectedSize, int maxRows, int seed)
    {
        int size = TaskData.FeatureSize(data.Schema, featureColumn, expectedSize);
        var column = data.Schema[featureColumn];
        var sample = new ShiftReferenceBuilder(maxRows, size, seed);
        var row = new float[size];
        long seen = 0;
        using var cursor = data.GetRowCursor([column]);
        var read = TaskData.MakeFeatureReader(cursor, column, size);
        while (cursor.MoveNext())
        {
            read(row, seen++);
            sample.Offer(row);
        }
        return sample.Sample();
    }

    /// <summary>The slot names of the feature column, when it has as many as it has features.</summary>
    public static string[] FeatureNames(DataViewSchema.Column column, int size)
    {
        var names = Enumerable.Range(0, size).Select(i => $"{column.Name}[{i}]").ToArray();
        if (column.HasSlotNames(size))
        {
            VBuffer<ReadOnlyMemory<char>> slots = default;
            column.GetSlotNames(ref slots);
            int i = 0;
            foreach (var slot in slots.DenseValues())
            {
                if (!slot.IsEmpty) names[i] = slot.ToString();
                i++;
            }
        }
        return names;
    }
}
