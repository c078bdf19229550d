using MathNet.Numerics.Distributions;
using MathNet.Numerics.LinearAlgebra;

namespace Microsoft.ML.Continual;

/// <summary>How a sweep chooses its next trial.</summary>
public enum SweepTuner
{
    /// <summary>An even grid over the space (log-even on log scales), visited in an order that covers the space coarse to fine.</summary>
    Grid,
    /// <summary>Uniform random points (in each dimension's scale), reproducible with the sweep's seed.</summary>
    Random,
    /// <summary>Bayesian optimisation: a Gaussian process with a Matérn-5/2 kernel over the unit cube and expected improvement
    /// (Snoek, Larochelle and Adams 2012), after a few space-filling initial trials.</summary>
    Bayesian,
}

/// <summary>A tuner over the unit cube: proposes the next point from the finished trials (maximising the objective).</summary>
internal interface IUnitTuner
{
    double[] Propose(IReadOnlyList<(double[] Point, double Objective)> history);
}

/// <summary>An even grid with k points per dimension (k^d ≥ the trial budget, choices get one point per value), ordered so that
/// the first trials spread over the space: a low-discrepancy (van der Corput) order over the grid's points.</summary>
internal sealed class GridTuner : IUnitTuner
{
    private readonly List<double[]> _points;
    private int _next;

    public GridTuner(IReadOnlyList<SearchDimension> dimensions, int maxTrials)
    {
        int d = dimensions.Count;
        int k = Math.Max(2, (int)Math.Ceiling(Math.Pow(Math.Max(maxTrials, 1), 1.0 / d) - 1e-9));
        var axes = dimensions.Select(dim => dim.Kind switch
        {
            SearchDimensionKind.Choice => Enumerable.Range(0, dim.Choices.Count).Select(i => (i + 0.5) / dim.Choices.Count).ToArray(),
            // Integers: at most one grid point per distinct value (the centre of its share of [0, 1]).
            SearchDimensionKind.Integer when !dim.LogScale && dim.Max - dim.Min + 1 <= k =>
                Enumerable.Range(0, (int)(dim.Max - dim.Min + 1)).Select(i => (i + 0.5) / (dim.Max - dim.Min + 1)).ToArray(),
            _ => Enumerable.Range(0, k).Select(i => k == 1 ? 0.5 : (double)i / (k - 1)).ToArray(),
        }).ToArray();
        var all = new List<double[]>();
        void Build(int axis, double[] prefix)
        {
            if (axis == d) { all.Add(prefix); return; }
            foreach (double u in axes[axis]) Build(axis + 1, [.. prefix, u]);
        }
        Build(0, []);
        // Visit in bit-reversed index order: a full grid when the budget allows it, an even subset when it does not.
        int bits = (int)Math.Ceiling(Math.Log2(Math.Max(all.Count, 2)));
        _points = Enumerable.Range(0, 1 << bits).Select(i => Reverse(i, bits)).Where(i => i < all.Count).Select(i => all[i]).ToList();
    }

    public IReadOnlyList<double[]> Points => _points;

    private static int Reverse(int value, int bits)
    {
        int result = 0;
        for (int b = 0; b < bits; b++) result |= ((value >> b) & 1) << (bits - 1 - b);
        return result;
    }

    public double[] Propose(IReadOnlyList<(double[] Point, double Objective)> history) =>
        _next < _points.Count ? _points[_next++] : throw new InvalidOperationException("The grid is exhausted.");

    public bool Exhausted => _next >= _points.Count;
}

internal sealed class RandomTuner(int dimensions, int seed) : IUnitTuner
{
    private readonly Random _random = new(seed);

    public double[] Propose(IReadOnlyList<(double[] Point, double Objective)> history) =>
        Enumerable.Range(0, dimensions).Select(_ => _random.NextDouble()).ToArray();
}

/// <summary>
/// Gaussian-process Bayesian optimisation on the unit cube: the first trial is the space's initial point, the next
/// <c>d + 1</c> are random; after that, a GP (Matérn 5/2, constant mean, the objective standardised, length scale and
/// noise chosen by marginal likelihood over a small grid) is fitted to the history and the point maximising expected
/// improvement among random candidates and perturbations of the best points is proposed.
/// </summary>
internal sealed class GaussianProcessTuner(int dimensions, double[] initialPoint, int seed) : IUnitTuner
{
    private readonly Random _random = new(seed);
    private static readonly double[] LengthScales = [0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2];
    private static readonly double[] Noises = [1e-6, 1e-3, 1e-2, 0.1];

    public double[] Propose(IReadOnlyList<(double[] Point, double Objective)> history)
    {
        var finite = history.Where(h => double.IsFinite(h.Objective)).ToList();
        if (history.Count == 0) return (double[])initialPoint.Clone();
        if (finite.Count < dimensions + 2) return RandomPoint();

        double mean = finite.Average(h => h.Objective);
        double sd = Math.Sqrt(finite.Sum(h => (h.Objective - mean) * (h.Objective - mean)) / finite.Count);
        if (sd < 1e-12) sd = 1;
        var x = finite.Select(h => h.Point).ToArray();
        var y = Vector<double>.Build.DenseOfEnumerable(finite.Select(h => (h.Objective - mean) / sd));
        var model = FitBest(x, y);
        double best = y.Maximum();

        var candidates = new List<double[]>();
        for (int i = 0; i < 2000; i++) candidates.Add(RandomPoint());
        foreach (var (point, _) in finite.OrderByDescending(h => h.Objective).Take(3))
            foreach (double scale in new[] { 0.01, 0.03, 0.1 })
                for (int i = 0; i < 100; i++)
                    candidates.Add(point.Select(u => Math.Clamp(u + scale * Normal.Sample(_random, 0, 1), 0, 1)).ToArray());
        double[] chosen = candidates[0];
        double bestImprovement = double.NegativeInfinity;
        foreach (var candidate in candidates)
        {
            var (mu, sigma) = model.Predict(candidate);
            double ei = ExpectedImprovement(mu, sigma, best);
            if (ei > bestImprovement) { bestImprovement = ei; chosen = candidate; }
        }
        return chosen;
    }

    /// <summary>EI(x) = (μ − f* − ξ)Φ(z) + σφ(z), z = (μ − f* − ξ)/σ, ξ = 0.01 (standardised units).</summary>
    internal static double ExpectedImprovement(double mu, double sigma, double best, double xi = 0.01)
    {
        if (sigma < 1e-12) return Math.Max(mu - best - xi, 0);
        double z = (mu - best - xi) / sigma;
        return (mu - best - xi) * Normal.CDF(0, 1, z) + sigma * Normal.PDF(0, 1, z);
    }

    private double[] RandomPoint() => Enumerable.Range(0, dimensions).Select(_ => _random.NextDouble()).ToArray();

    private static GaussianProcess FitBest(double[][] x, Vector<double> y)
    {
        GaussianProcess? best = null;
        foreach (double l in LengthScales)
            foreach (double noise in Noises)
            {
                var gp = GaussianProcess.TryFit(x, y, l, noise);
                if (gp is not null && (best is null || gp.LogMarginalLikelihood > best.LogMarginalLikelihood)) best = gp;
            }
        return best ?? GaussianProcess.TryFit(x, y, 0.3, 0.1)!;
    }
}

/// <summary>A zero-mean GP with unit signal variance, a Matérn-5/2 kernel and Gaussian noise (Rasmussen and Williams 2006, alg. 2.1).</summary>
internal sealed class GaussianProcess
{
    private readonly double[][] _x;
    private readonly double _lengthScale;
    private readonly MathNet.Numerics.LinearAlgebra.Factorization.Cholesky<double> _cholesky;
    private readonly Vector<double> _alpha;

    private GaussianProcess(double[][] x, double lengthScale, MathNet.Numerics.LinearAlgebra.Factorization.Cholesky<double> cholesky, Vector<double> alpha, double logMarginalLikelihood)
    {
        (_x, _lengthScale, _cholesky, _alpha, LogMarginalLikelihood) = (x, lengthScale, cholesky, alpha, logMarginalLikelihood);
    }

    public double LogMarginalLikelihood { get; }

    public static GaussianProcess? TryFit(double[][] x, Vector<double> y, double lengthScale, double noise)
    {
        int n = x.Length;
        var k = Matrix<double>.Build.Dense(n, n, (i, j) => Kernel(x[i], x[j], lengthScale) + (i == j ? noise : 0));
        try
        {
            var cholesky = k.Cholesky();
            var alpha = cholesky.Solve(y);
            double logDet = 2 * Enumerable.Range(0, n).Sum(i => Math.Log(cholesky.Factor[i, i]));
            double lml = -0.5 * (y * alpha) - 0.5 * logDet - 0.5 * n * Math.Log(2 * Math.PI);
            return double.IsFinite(lml) ? new GaussianProcess(x, lengthScale, cholesky, alpha, lml) : null;
        }
        catch (ArgumentException)
        {
            return null; // not positive definite at this noise level
        }
    }

    public (double Mean, double Sigma) Predict(double[] point)
    {
        var kStar = Vector<double>.Build.Dense(_x.Length, i => Kernel(_x[i], point, _lengthScale));
        double mean = kStar * _alpha;
        var v = _cholesky.Factor.SolveTriangularLower(kStar);
        double variance = Math.Max(1 - v * v, 1e-12);
        return (mean, Math.Sqrt(variance));
    }

    internal static double Kernel(double[] a, double[] b, double lengthScale)
    {
        double d2 = 0;
        for (int i = 0; i < a.Length; i++) d2 += (a[i] - b[i]) * (a[i] - b[i]);
        double r = Math.Sqrt(5 * d2) / lengthScale;
        return (1 + r + r * r / 3) * Math.Exp(-r);
    }
}

internal static class TriangularSolve
{
    /// <summary>Solves L v = b for lower-triangular L by forward substitution.</summary>
    public static Vector<double> SolveTriangularLower(this Matrix<double> lower, Vector<double> b)
    {
        var v = Vector<double>.Build.Dense(b.Count);
        for (int i = 0; i < b.Count; i++)
        {
            double sum = b[i];
            for (int j = 0; j < i; j++) sum -= lower[i, j] * v[j];
            v[i] = sum / lower[i, i];
        }
        return v;
    }
}
