namespace Microsoft.ML.Continual;

/// <summary>One predicted class's share of the reference rows and of the new rows (<see cref="PredictionShift.Classes"/>).</summary>
/// <param name="Index">The class's position in the model's classes.</param>
/// <param name="Name">The class as the label's vocabulary names it.</param>
/// <param name="ReferenceShare">The share of the reference rows the model predicts as this class (0 to 1).</param>
/// <param name="NewShare">The share of the new rows the model predicts as this class.</param>
public sealed record PredictedClassShare(int Index, string Name, double ReferenceShare, double NewShare);

/// <summary>
/// Whether the model's predicted classes differ between the reference rows and the new rows (black-box shift detection,
/// part of <see cref="ShiftReport"/>): the share of rows predicted as each class. A change of the label's prior (a class
/// growing more common) shows here first, where the feature test sees it only as a blend of the classes' features.
/// </summary>
/// <remarks>The reference rows are rows the model trained on, the new rows are not, so the two samples' outputs are
/// exchangeable only as far as the model predicts the same on seen and unseen rows: predicted classes are compared
/// (a model is about as often right on both), never the scores themselves (an overfitted model is more confident on
/// its training rows). Regression models, whose predictions fit their training targets, are tested on their features
/// only.</remarks>
public sealed class PredictionShift
{
    internal PredictionShift(string test, double pValue, double effectSize, IReadOnlyList<PredictedClassShare> classes)
    {
        Test = test; PValue = pValue; EffectSize = effectSize; Classes = classes;
    }

    /// <summary>Which test: "chi-squared on the predicted classes".</summary>
    public string Test { get; }

    /// <summary>The test's own permutation p-value (before the correction for the two tests of <see cref="ShiftReport.PValue"/>).</summary>
    public double PValue { get; }

    /// <summary>The total variation distance between the two predicted-class distributions, ½ Σ |p_ref − p_new| (0 to 1:
    /// the share of predictions that would have to change class).</summary>
    public double EffectSize { get; }

    /// <summary>Every class's predicted share in both samples, the largest change first (a binary model's classes are
    /// "False" and "True").</summary>
    public IReadOnlyList<PredictedClassShare> Classes { get; }
}

/// <summary>
/// The test on the model's outputs behind <see cref="PredictionShift"/>: black-box shift detection (Lipton, Wang and
/// Smola 2018, "Detecting and Correcting for Label Shift with Black Box Predictors", ICML; Rabanser, Günnemann and Lipton
/// 2019, "Failing Loudly", NeurIPS, found it the strongest detector of label shift on MNIST and CIFAR-10).
/// </summary>
/// <remarks>
/// The predicted class of each row (multiclass: the largest probability; binary: a positive margin), and Pearson's
/// statistic of the 2 × K table of predicted classes by sample, X² = Σ (O − E)² / E with E = (row total)(class total) / N,
/// over the classes predicted at least once. The statistic is a function of the pooled predictions and of which rows are
/// the new ones, so the permutation p-value (1 + #{b : T(π_b) ≥ T_obs}) / (1 + B) is valid at any sample size, as the
/// feature test's (<see cref="ShiftTest"/>), for rows whose predictions are exchangeable (see <see cref="PredictionShift"/>).
/// </remarks>
internal static class PredictionShiftTest
{
    public const string ClassesTest = "chi-squared on the predicted classes";

    /// <summary>The test on <paramref name="scorer"/>'s outputs for the two samples' rows.</summary>
    public static PredictionShift Run(IBlockScorer scorer, ContinualPredictionKind kind, IReadOnlyList<string> classNames,
        ShiftReference reference, ShiftReference current, int permutations, int seed)
    {
        if (kind == ContinualPredictionKind.Regression) throw new ArgumentException("A regression model's predictions are not tested (the class remarks).", nameof(kind));
        float[] before = Scores(scorer, reference), after = Scores(scorer, current);
        if (kind == ContinualPredictionKind.Binary)
            return Classes(before.Select(margin => margin > 0 ? 1 : 0).ToArray(), after.Select(margin => margin > 0 ? 1 : 0).ToArray(), 2, ["False", "True"], permutations, seed);
        return Classes(PredictedClasses(before, scorer.OutputSize), PredictedClasses(after, scorer.OutputSize), scorer.OutputSize, classNames, permutations, seed);
    }

    private static float[] Scores(IBlockScorer scorer, ShiftReference rows)
    {
        var outputs = new float[rows.Count * scorer.OutputSize];
        scorer.Score(rows.Rows, null, rows.Count, outputs);
        return outputs;
    }

    private static int[] PredictedClasses(float[] probabilities, int classes)
    {
        var predicted = new int[probabilities.Length / classes];
        for (int i = 0; i < predicted.Length; i++)
        {
            var row = probabilities.AsSpan(i * classes, classes);
            int best = 0;
            for (int c = 1; c < classes; c++) if (row[c] > row[best]) best = c;
            predicted[i] = best;
        }
        return predicted;
    }

    /// <summary>The chi-squared permutation test of two samples of predicted classes, and their shares.</summary>
    public static PredictionShift Classes(int[] reference, int[] current, int classes, IReadOnlyList<string> names, int permutations, int seed)
    {
        int n = reference.Length;
        int[] pooled = [.. reference, .. current];
        var classTotals = new int[classes];
        foreach (int c in pooled) classTotals[c]++;
        double observed = ChiSquared(pooled, n, classTotals);
        var random = new Random(seed);
        int atLeast = 0;
        for (int b = 0; b < permutations; b++)
        {
            ShiftReference.ShuffleFirst(pooled, n, random);
            if (ChiSquared(pooled, n, classTotals) >= observed - 1e-9 * Math.Abs(observed)) atLeast++;
        }
        var shares = Enumerable.Range(0, classes).Select(c => new PredictedClassShare(c, c < names.Count ? names[c] : c.ToString(System.Globalization.CultureInfo.InvariantCulture),
            (double)reference.Count(r => r == c) / n, (double)current.Count(r => r == c) / current.Length)).ToList();
        double variation = shares.Sum(s => Math.Abs(s.NewShare - s.ReferenceShare)) / 2;
        return new PredictionShift(ClassesTest, (1.0 + atLeast) / (1.0 + permutations), variation,
            shares.OrderByDescending(s => Math.Abs(s.NewShare - s.ReferenceShare)).ThenBy(s => s.Index).ToList());
    }

    /// <summary>Pearson's X² of the 2 × K table whose first row is the first <paramref name="n"/> labels, the second the rest.</summary>
    private static double ChiSquared(int[] pooled, int n, int[] classTotals)
    {
        var first = new int[classTotals.Length];
        for (int i = 0; i < n; i++) first[pooled[i]]++;
        int total = pooled.Length, m = total - n;
        double sum = 0;
        for (int c = 0; c < classTotals.Length; c++)
        {
            if (classTotals[c] == 0) continue;
            double expectedFirst = (double)n * classTotals[c] / total, expectedSecond = (double)m * classTotals[c] / total;
            double second = classTotals[c] - first[c];
            sum += (first[c] - expectedFirst) * (first[c] - expectedFirst) / expectedFirst + (second - expectedSecond) * (second - expectedSecond) / expectedSecond;
        }
        return sum;
    }
}
