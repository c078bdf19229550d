using MathNet.Numerics.LinearAlgebra;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// GEM's gradient projection (Lopez-Paz and Ranzato 2017, eq. 10–11). With G the K×P matrix of past tasks' memory
/// gradients and g the current gradient, the dual
/// <c>v* = argmin_{v ≥ γ} ½ vᵀ(GGᵀ + εI)v + (Gg)ᵀv</c> gives <c>g̃ = Gᵀv* + g</c>. As in the authors' code, the memory
/// strength γ bounds the dual variables from below (paper §3: "adding a small constant γ ≥ 0 to v*") and ε = 1e-3 keeps
/// GGᵀ positive definite. The dual is K×K (K ≤ the number of past tasks) and is solved exactly in float64.
/// </summary>
internal static class GemProjection
{
    /// <summary>The projected gradient g̃ (float32, on g's device) for memory gradients <paramref name="memoryGradients"/> [K, P] and gradient <paramref name="gradient"/> [P].</summary>
    public static Tensor Project(Tensor memoryGradients, Tensor gradient, double memoryStrength, double epsilon, out double[] dual)
    {
        using var scope = NewDisposeScope();
        Tensor g64 = memoryGradients.to(float64).cpu(), v64 = gradient.to(float64).cpu();
        int k = (int)g64.shape[0];
        double[] gram = g64.mm(g64.t()).data<double>().ToArray();
        double[] dots = g64.mv(v64).data<double>().ToArray();
        var p = Matrix<double>.Build.Dense(k, k, (i, j) => 0.5 * (gram[i * k + j] + gram[j * k + i]) + (i == j ? epsilon : 0));
        dual = SolveDual(p, Vector<double>.Build.DenseOfArray(dots), memoryStrength);
        Tensor v = tensor(dual, dtype: float64);
        return (v.matmul(g64) + v64).to(float32).to(gradient.device).MoveToOuterDisposeScope();
    }

    /// <summary>argmin_{v ≥ γ} ½ vᵀPv + qᵀv, by substituting u = v − γ ≥ 0: ½ uᵀPu + (q + Pγ1)ᵀu.</summary>
    public static double[] SolveDual(Matrix<double> p, Vector<double> q, double memoryStrength)
    {
        var shift = Vector<double>.Build.Dense(q.Count, memoryStrength);
        double[] u = NonNegativeQuadraticProgram.Solve(p, q + p * shift);
        return u.Select(x => x + memoryStrength).ToArray();
    }
}

/// <summary>
/// min_x ½ xᵀPx + cᵀx subject to x ≥ 0, for symmetric positive definite P: the Lawson–Hanson active-set method
/// (Lawson and Hanson 1974, "Solving Least Squares Problems", ch. 23, the NNLS algorithm behind
/// <c>scipy.optimize.nnls</c>) in its normal-equation form, since with P = AᵀA and c = −Aᵀb this is NNLS
/// min ‖Ax − b‖². Each subproblem is solved by Math.NET's Cholesky factorisation. Finite; at the solution the KKT
/// conditions hold: x ≥ 0, ∇ = Px + c ≥ 0 and x_i ∇_i = 0.
/// </summary>
internal static class NonNegativeQuadraticProgram
{
    public static double[] Solve(Matrix<double> p, Vector<double> c)
    {
        int n = c.Count;
        if (p.RowCount != n || p.ColumnCount != n) throw new ArgumentException("P must be n×n for c of length n.");
        double scale = 1 + p.Enumerate().Max(Math.Abs) + c.Enumerate().Max(Math.Abs);
        double tolerance = 1e-12 * scale * n;
        var x = Vector<double>.Build.Dense(n);
        var passive = new bool[n];
        int iterations = 0, limit = 30 * (n + 1);
        while (true)
        {
            Vector<double> w = -(p * x + c); // the negative gradient: the descent direction of each variable
            int entering = -1;
            for (int j = 0; j < n; j++)
                if (!passive[j] && w[j] > tolerance && (entering < 0 || w[j] > w[entering])) entering = j;
            if (entering < 0) return x.ToArray();
            passive[entering] = true;
            while (true)
            {
                if (++iterations > limit)
                    throw new InvalidOperationException($"The active-set method did not converge in {limit} iterations (n = {n}).");
                Vector<double> s = SolvePassive(p, c, passive);
                if (s[entering] <= tolerance && x[entering] <= tolerance)
                {
                    // Rounding made the entering variable's step non-positive (in exact arithmetic it is positive):
                    // it cannot improve the objective, so stop here as scipy's nnls does.
                    passive[entering] = false;
                    return x.ToArray();
                }
                bool feasible = true;
                for (int i = 0; i < n; i++) if (passive[i] && s[i] <= 0) feasible = false;
                if (feasible) { x = s; break; }
                // Step from x towards s as far as feasibility allows; the variables that reach zero leave the passive set.
                double alpha = double.PositiveInfinity;
                for (int i = 0; i < n; i++)
                    if (passive[i] && s[i] <= 0 && x[i] - s[i] > 0) alpha = Math.Min(alpha, x[i] / (x[i] - s[i]));
                if (double.IsInfinity(alpha)) alpha = 0;
                x += alpha * (s - x);
                for (int i = 0; i < n; i++)
                    if (passive[i] && x[i] <= tolerance) { passive[i] = false; x[i] = 0; }
                if (!passive.Any(b => b)) break;
            }
        }
    }

    /// <summary>The unconstrained minimiser over the passive variables (the others held at 0): P_PP s_P = −c_P.</summary>
    private static Vector<double> SolvePassive(Matrix<double> p, Vector<double> c, bool[] passive)
    {
        int[] index = Enumerable.Range(0, passive.Length).Where(i => passive[i]).ToArray();
        var sub = Matrix<double>.Build.Dense(index.Length, index.Length, (i, j) => p[index[i], index[j]]);
        var rhs = Vector<double>.Build.Dense(index.Length, i => -c[index[i]]);
        Vector<double> solution = sub.Cholesky().Solve(rhs);
        var s = Vector<double>.Build.Dense(passive.Length);
        for (int i = 0; i < index.Length; i++) s[index[i]] = solution[i];
        return s;
    }
}
