using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// The two-sample tests of the features behind shift detection (with a classifier, the test on its predicted classes,
/// <see cref="PredictionShiftTest"/>, decides beside it). On the features, one test on the whole vector: the maximum mean
/// discrepancy (Gretton et al. 2012, "A Kernel Two-Sample Test", JMLR 13, eq. 5, the biased estimate) with a Gaussian
/// kernel, and a permutation p-value. Where the shift is comes from a second, per-feature family: the two-sample
/// Kolmogorov–Smirnov test with Holm's (1979) correction.
/// </summary>
/// <remarks>
/// MMD²_b = (1/n²) Σ k(xᵢ, xⱼ) + (1/m²) Σ k(yᵢ, yⱼ) − (2/nm) Σ k(xᵢ, yⱼ), k(a, b) = exp(−‖a − b‖² / h), on features
/// standardized by the pooled mean and standard deviation, h the median of the pooled pairwise squared distances (the
/// median heuristic). Everything the statistic depends on is computed from the pooled rows, so it is invariant to
/// relabelling them and the permutation p-value p = (1 + #{b : MMD²_b(π_b) ≥ MMD²_obs}) / (1 + B) is valid at any sample
/// size: P(p ≤ α) ≤ α when both samples come from one distribution (Lehmann and Romano, Testing Statistical Hypotheses,
/// theorem 15.2.1). With a sign vector w (1/n on the reference rows, −1/m on the new) MMD²_b = wᵀKw, so the B
/// permutations are one matrix product K·W.
/// Kolmogorov–Smirnov: D = sup |F_ref − F_new|; p = Q_KS((√nₑ + 0.12 + 0.11/√nₑ) D), nₑ = nm/(n + m), Q_KS(λ) =
/// 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²} (Stephens 1970; Numerical Recipes §14.3). With ties (discrete features) the asymptotic
/// p-value is conservative.
/// </remarks>
internal static class ShiftTest
{
    public const int MinimumRows = 10;

    public sealed record Result(double PValue, double Mmd, int FeaturesCompared, IReadOnlyList<FeatureShift> ShiftedFeatures);

    public static Result Run(ShiftReference reference, ShiftReference current, string[] featureNames, ShiftDetectionOptions options)
    {
        if (reference.FeatureSize != current.FeatureSize) throw new ArgumentException($"The reference has {reference.FeatureSize} features; the new data has {current.FeatureSize}.");
        if (reference.Count < MinimumRows) throw new InvalidOperationException($"The reference sample has {reference.Count} rows; a two-sample test needs at least {MinimumRows}.");
        if (current.Count < MinimumRows) throw new ArgumentException($"The new data has {current.Count} rows; a two-sample test needs at least {MinimumRows}.");
        int[] varying = VaryingFeatures(reference, current);
        var (pValue, mmd) = varying.Length == 0 ? (1.0, 0.0) : MmdPermutationTest(reference, current, varying, options.Permutations, unchecked(options.Seed * 1_000_003 + 7));
        var shifted = PerFeature(reference, current, varying, featureNames, options.Alpha);
        return new Result(pValue, mmd, varying.Length, shifted);
    }

    /// <summary>Features whose pooled values are not all the same.</summary>
    private static int[] VaryingFeatures(ShiftReference x, ShiftReference y)
    {
        int d = x.FeatureSize;
        var varying = new List<int>();
        for (int j = 0; j < d; j++)
        {
            float first = x.Rows[j];
            bool differs = false;
            for (int i = 0; i < x.Count && !differs; i++) differs = x.Rows[i * d + j] != first;
            for (int i = 0; i < y.Count && !differs; i++) differs = y.Rows[i * d + j] != first;
            if (differs) varying.Add(j);
        }
        return varying.ToArray();
    }

    // ---- the MMD permutation test ----

    /// <summary>The observed MMD²_b and its permutation p-value (the class remarks).</summary>
    public static (double PValue, double Mmd) MmdPermutationTest(ShiftReference x, ShiftReference y, int[] features, int permutations, int seed)
    {
        using var scope = NewDisposeScope();
        int n = x.Count, m = y.Count, total = n + m;
        Tensor pooled = Standardized(x, y, features);
        Tensor kernel = GaussianKernel(pooled);
        var weights = new double[total];
        for (int i = 0; i < total; i++) weights[i] = i < n ? 1.0 / n : -1.0 / m;
        double observed = SplitStatistics(kernel, [weights], total)[0];
        double tolerance = 1e-12 * Math.Max(1, Math.Abs(observed)); // a permutation equal to the observed split up to rounding counts as at least as large
        var random = new Random(seed);
        var order = Enumerable.Range(0, total).ToArray();
        int atLeast = 0;
        for (int start = 0; start < permutations; start += PermutationsPerProduct)
        {
            var splits = new double[Math.Min(PermutationsPerProduct, permutations - start)][];
            for (int b = 0; b < splits.Length; b++)
            {
                for (int i = total - 1; i > 0; i--)
                {
                    int j = random.Next(i + 1);
                    (order[i], order[j]) = (order[j], order[i]);
                }
                splits[b] = new double[total];
                for (int i = 0; i < total; i++) splits[b][order[i]] = weights[i];
            }
            atLeast += SplitStatistics(kernel, splits, total).Count(statistic => statistic >= observed - tolerance);
        }
        return ((1.0 + atLeast) / (1.0 + permutations), Math.Max(observed, 0));
    }

    /// <summary>Permutations evaluated per matrix product (bounds the product's memory: rows × 256 doubles).</summary>
    private const int PermutationsPerProduct = 256;

    /// <summary>wᵀKw for each sign vector w (one matrix product K·W).</summary>
    private static double[] SplitStatistics(Tensor kernel, double[][] splits, int total)
    {
        using var scope = NewDisposeScope();
        var columns = new double[(long)total * splits.Length];
        for (int b = 0; b < splits.Length; b++)
            for (int i = 0; i < total; i++) columns[(long)i * splits.Length + b] = splits[b][i];
        Tensor w = tensor(columns, [total, splits.Length], ScalarType.Float64);
        return kernel.mm(w).mul(w).sum([0L]).data<double>().ToArray();
    }

    /// <summary>[n + m, features] in float64: the reference rows then the new, each feature less its pooled mean, over its pooled standard deviation.</summary>
    private static Tensor Standardized(ShiftReference x, ShiftReference y, int[] features)
    {
        int d = x.FeatureSize, total = x.Count + y.Count;
        var values = new double[(long)total * features.Length];
        for (int i = 0; i < total; i++)
        {
            var (rows, row) = i < x.Count ? (x.Rows, i) : (y.Rows, i - x.Count);
            for (int k = 0; k < features.Length; k++) values[(long)i * features.Length + k] = rows[row * d + features[k]];
        }
        Tensor pooled = tensor(values, [total, features.Length], ScalarType.Float64);
        Tensor mean = pooled.mean([0], keepdim: true);
        Tensor sd = pooled.std(0, unbiased: false, keepdim: true).clamp_min(CachedScalars.Tiny); // cached: an implicit Scalar can be freed mid-call (CachedScalars)
        return pooled.sub(mean).div(sd);
    }

    /// <summary>K[i, j] = exp(−‖zᵢ − zⱼ‖² / h), h the median of the off-diagonal squared distances (their positive mean if
    /// that is 0, e.g. when most rows repeat).</summary>
    private static Tensor GaussianKernel(Tensor z)
    {
        Tensor norms = z.mul(z).sum(1, keepdim: true);
        Tensor distances = z.mm(z.t()).mul_(CachedScalars.MinusTwo).add_(norms).add_(norms.t()).clamp_min_(CachedScalars.Zero); // in place: one N x N matrix
        long total = z.shape[0];
        double h;
        using (var scope = NewDisposeScope())
        {
            Tensor upper = triu_indices(total, total, 1);
            Tensor offDiagonal = distances.index(upper[0], upper[1]);
            h = offDiagonal.median().item<double>();
            if (!(h > 0))
            {
                Tensor positive = offDiagonal.masked_select(offDiagonal.gt(0));
                h = positive.numel() > 0 ? positive.mean().item<double>() : 1;
            }
        }
        using Scalar scale = (-h).ToScalar(); // held until the call returns (an implicit one can be freed mid-call: CachedScalars)
        return distances.div_(scale).exp_();
    }

    // ---- per-feature Kolmogorov–Smirnov with Holm's correction ----

    private static IReadOnlyList<FeatureShift> PerFeature(ShiftReference x, ShiftReference y, int[] features, string[] names, double alpha)
    {
        var tests = new List<(int Feature, double D, double P, double MeanShift)>();
        var a = new double[x.Count];
        var b = new double[y.Count];
        foreach (int j in features)
        {
            for (int i = 0; i < x.Count; i++) a[i] = x.Rows[i * x.FeatureSize + j];
            for (int i = 0; i < y.Count; i++) b[i] = y.Rows[i * y.FeatureSize + j];
            double d = KolmogorovSmirnov(a, b);
            tests.Add((j, d, KolmogorovSmirnovPValue(d, a.Length, b.Length), MeanShift(a, b)));
        }
        double[] adjusted = Holm(tests.Select(t => t.P).ToArray());
        return tests.Select((t, i) => new FeatureShift(t.Feature, names[t.Feature], t.D, adjusted[i], t.MeanShift))
            .Where(f => f.PValue < alpha).OrderByDescending(f => f.KolmogorovSmirnov).ThenBy(f => f.Index).ToList();
    }

    /// <summary>D = sup_t |F_a(t) − F_b(t)|, the empirical distribution functions compared after each distinct value (ties step together).</summary>
    public static double KolmogorovSmirnov(double[] a, double[] b)
    {
        var sa = (double[])a.Clone();
        var sb = (double[])b.Clone();
        Array.Sort(sa);
        Array.Sort(sb);
        int i = 0, j = 0;
        double d = 0;
        while (i < sa.Length && j < sb.Length)
        {
            double t = Math.Min(sa[i], sb[j]);
            while (i < sa.Length && sa[i] == t) i++;
            while (j < sb.Length && sb[j] == t) j++;
            d = Math.Max(d, Math.Abs((double)i / sa.Length - (double)j / sb.Length));
        }
        return d;
    }

    /// <summary>The asymptotic p-value of D for samples of n and m rows (the class remarks).</summary>
    public static double KolmogorovSmirnovPValue(double d, int n, int m)
    {
        double effective = Math.Sqrt((double)n * m / (n + m));
        return KolmogorovQ((effective + 0.12 + 0.11 / effective) * d);
    }

    /// <summary>Q_KS(λ) = 2 Σ_{k≥1} (−1)^{k−1} exp(−2k²λ²); 1 where the series has not converged (λ near 0, where Q is 1).</summary>
    public static double KolmogorovQ(double lambda)
    {
        if (lambda < 0.2) return 1;
        double sum = 0, sign = 2, previousTerm = 0;
        for (int k = 1; k <= 100; k++)
        {
            double term = sign * Math.Exp(-2.0 * k * k * lambda * lambda);
            sum += term;
            if (Math.Abs(term) <= 1e-3 * previousTerm || Math.Abs(term) <= 1e-8 * sum) return Math.Clamp(sum, 0, 1);
            sign = -sign;
            previousTerm = Math.Abs(term);
        }
        return 1;
    }

    /// <summary>Holm's step-down adjusted p-values: p̃₍ᵢ₎ = max_{j≤i} min(1, (K − j + 1) p₍ⱼ₎), in the input's order.</summary>
    public static double[] Holm(double[] p)
    {
        int count = p.Length;
        var order = Enumerable.Range(0, count).OrderBy(i => p[i]).ThenBy(i => i).ToArray();
        var adjusted = new double[count];
        double running = 0;
        for (int rank = 0; rank < count; rank++)
        {
            running = Math.Max(running, Math.Min(1, (count - rank) * p[order[rank]]));
            adjusted[order[rank]] = running;
        }
        return adjusted;
    }

    private static double MeanShift(double[] reference, double[] current)
    {
        double meanA = reference.Average(), meanB = current.Average();
        double pooledMean = (meanA * reference.Length + meanB * current.Length) / (reference.Length + current.Length);
        double squares = reference.Sum(v => (v - pooledMean) * (v - pooledMean)) + current.Sum(v => (v - pooledMean) * (v - pooledMean));
        double sd = Math.Sqrt(squares / (reference.Length + current.Length));
        return sd > 0 ? (meanB - meanA) / sd : 0;
    }
}
