using MathNet.Numerics.LinearAlgebra;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual.Tests;

public class GradientTests
{
    private static T Small<T>(T options) where T : ContinualTrainerOptions
    {
        options.HiddenLayerSizes = [16];
        options.NumberOfEpochs = 2;
        options.BatchSize = 16;
        options.Optimizer = ContinualOptimizer.Sgd;
        options.LearningRate = 0.05;
        options.Seed = 3;
        return options;
    }

    /// <summary>A random positive-definite P (GGᵀ + εI from random "gradients") and a random q.</summary>
    private static (Matrix<double> P, Vector<double> Q) RandomDual(int k, Random random)
    {
        var g = Matrix<double>.Build.Dense(k, 2 * k + 3, (_, _) => random.NextDouble() * 2 - 1);
        var p = g * g.Transpose() + Matrix<double>.Build.DenseIdentity(k) * 1e-3;
        var q = Vector<double>.Build.Dense(k, _ => random.NextDouble() * 4 - 2);
        return (p, q);
    }

    private static double Objective(Matrix<double> p, Vector<double> q, Vector<double> v) => 0.5 * (v * (p * v)) + q * v;

    /// <summary>The exact minimiser of ½vᵀPv + qᵀv over v ≥ γ by enumerating every free set: for a strictly convex
    /// QP, the optimum is the best feasible point among the stationary points of all 2^k faces.</summary>
    private static Vector<double> BruteForce(Matrix<double> p, Vector<double> q, double gamma)
    {
        int k = q.Count;
        Vector<double>? best = null;
        for (int mask = 0; mask < 1 << k; mask++)
        {
            var v = Vector<double>.Build.Dense(k, gamma);
            int[] free = Enumerable.Range(0, k).Where(i => (mask >> i & 1) == 1).ToArray();
            if (free.Length > 0)
            {
                // Free variables: P_FF v_F = −q_F − P_FB γ.
                var sub = Matrix<double>.Build.Dense(free.Length, free.Length, (i, j) => p[free[i], free[j]]);
                var rhs = Vector<double>.Build.Dense(free.Length, i => -q[free[i]] - Enumerable.Range(0, k).Where(j => !free.Contains(j)).Sum(j => p[free[i], j] * gamma));
                var solution = sub.Solve(rhs);
                for (int i = 0; i < free.Length; i++) v[free[i]] = solution[i];
            }
            if (v.Any(x => x < gamma - 1e-12)) continue;
            if (best is null || Objective(p, q, v) < Objective(p, q, best)) best = v;
        }
        return best!;
    }

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.5)]
    public void DualQp_MatchesBruteForce_AndSatisfiesKkt(double gamma)
    {
        var random = new Random(11);
        for (int trial = 0; trial < 200; trial++)
        {
            int k = 1 + trial % 8;
            var (p, q) = RandomDual(k, random);
            var v = Vector<double>.Build.DenseOfArray(GemProjection.SolveDual(p, q, gamma));
            var exact = BruteForce(p, q, gamma);
            Assert.True((v - exact).InfinityNorm() < 1e-8, $"trial {trial}: {v} vs {exact}");
            // KKT: feasibility, a non-negative gradient, and complementary slackness.
            var gradient = p * v + q;
            for (int i = 0; i < k; i++)
            {
                Assert.True(v[i] >= gamma - 1e-12);
                Assert.True(gradient[i] >= -1e-9, $"trial {trial}: ∇{i} = {gradient[i]}");
                Assert.True(Math.Abs((v[i] - gamma) * gradient[i]) < 1e-9);
            }
        }
    }

    [Fact]
    public void Projection_SatisfiesEveryConstraint_AndLeavesASafeGradientUnchanged()
    {
        var random = new Random(5);
        int unchangedChecked = 0;
        for (int trial = 0; trial < 50; trial++)
        {
            int k = 1 + trial % 6, size = 40;
            using var scope = NewDisposeScope();
            var memory = tensor(Enumerable.Range(0, k * size).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray(), [k, size]);
            var g = tensor(Enumerable.Range(0, size).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray());
            // With ε → 0 and γ = 0 the projection is GEM's eq. 8: ⟨g̃, g_k⟩ ≥ 0 for every k.
            var projected = GemProjection.Project(memory, g, memoryStrength: 0, epsilon: 1e-9, out _);
            var dots = memory.mv(projected).data<float>().ToArray();
            float scale = g.norm().item<float>() * memory.norm().item<float>();
            Assert.All(dots, d => Assert.True(d >= -1e-5f * scale, $"trial {trial}: ⟨g̃, g_k⟩ = {d}"));
            // With GEM's ε = 1e-3: Gg̃ = λ − εv ≥ −εv (the KKT multipliers λ ≥ 0).
            var regularised = GemProjection.Project(memory, g, memoryStrength: 0.5, epsilon: 1e-3, out double[] dual);
            var dots2 = memory.mv(regularised).data<float>().ToArray();
            for (int i = 0; i < k; i++) Assert.True(dots2[i] >= -1e-3 * dual[i] - 1e-5 * scale, $"trial {trial}: {dots2[i]} with v = {dual[i]}");
            // A gradient that already agrees with every memory gradient is left exactly as it was (γ = 0).
            var agreeing = memory.sum(new long[] { 0 }) * 0.1f; // in the cone of the memory gradients; checked below
            var dotsAgreeing = memory.mv(agreeing).data<float>().ToArray();
            if (dotsAgreeing.All(d => d >= 0))
            {
                var same = GemProjection.Project(memory, agreeing, memoryStrength: 0, epsilon: 1e-3, out double[] zero);
                Assert.All(zero, v => Assert.Equal(0, v));
                Assert.Equal(agreeing.data<float>().ToArray(), same.data<float>().ToArray());
                unchangedChecked++;
            }
        }
        Assert.True(unchangedChecked >= 25, $"only {unchangedChecked} agreeing cases were checked");
    }

    [Fact]
    public void AGemProjection_RemovesTheConflictingComponent_OnlyWhenThereIsOne()
    {
        using var scope = NewDisposeScope();
        var reference = tensor(new float[] { 1, 0, 0 });
        var conflicting = tensor(new float[] { -2, 1, 3 });
        Assert.True(AGemPlugin.Project(conflicting, reference));
        Assert.Equal(new float[] { 0, 1, 3 }, conflicting.data<float>().ToArray()); // gᵀg_ref = 0 after the projection
        var agreeing = tensor(new float[] { 2, 1, 3 });
        Assert.False(AGemPlugin.Project(agreeing, reference));
        Assert.Equal(new float[] { 2, 1, 3 }, agreeing.data<float>().ToArray());
    }

    [Fact]
    public void Gem_KeepsMemoriesPerTask_ThroughFreshProcessSaveLoadAndRefit()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var data = TestData.View(ml, 0, [0, 1, 2], 200, 1);
        var model = ml.Continual().Trainers.Gem(Small(new GemTrainer.Options { MemoriesPerTask = 50 })).Fit(data);
        var first = ((GemPlugin)model.State.Plugins.Items.Single()).Memory;
        Assert.Equal(50, first.Count);
        ml.Model.Save(model, data.Schema, temp.File("gem.zip"));

        Program.RunFresh("refit", temp.File("gem.zip"), "1", "0,1,2", "200", "1", temp.File("next.zip"));

        var next = (ContinualTransformer)ml.Model.Load(temp.File("next.zip"), out _);
        var memory = ((GemPlugin)next.State.Plugins.Items.Single()).Memory;
        Assert.Equal(100, memory.Count);
        Assert.Equal(Enumerable.Repeat(0, 50).Concat(Enumerable.Repeat(1, 50)), memory.TaskOf);
        // The first task's memories came through the save, the load and the refit bit for bit.
        Assert.Equal(first.Features!.data<float>().ToArray(), memory.Features!.narrow(0, 0, 50).data<float>().ToArray());
        Assert.Equal(first.Targets!.data<long>().ToArray(), memory.Targets!.narrow(0, 0, 50).data<long>().ToArray());
        Assert.Equal(100, next.StateSizes["memory rows"]);
    }

    [Fact]
    public void AGem_MemoryStaysWithinItsBudget_SharedEquallyByTheTasks()
    {
        var ml = new MLContext(seed: 1);
        ITransformer model = ml.Continual().Trainers.AGem(Small(new AGemTrainer.Options { MemorySize = 90, ReferenceSampleSize = 32 })).Fit(TestData.View(ml, 0, [0, 1], 120, 1));
        for (int task = 1; task < 4; task++)
        {
            model = ml.Continual().Refit(model, TestData.View(ml, task, [0, 1], 120, 1 + task));
            var memory = ((AGemPlugin)((ContinualTransformer)model).State.Plugins.Items.Single()).Memory;
            Assert.True(memory.Count <= 90);
            var perTask = memory.TaskOf.GroupBy(t => t).Select(g => g.Count()).ToArray();
            Assert.Equal(task + 1, perTask.Length);
            Assert.True(perTask.Max() - perTask.Min() <= 1, string.Join(",", perTask));
            Assert.Equal(90, memory.Count); // every task has more rows than its share, so the budget is used in full
        }
    }

    [Theory]
    [InlineData("GEM")]
    [InlineData("A-GEM")]
    public void ForgetsLessThanFineTune_OnPermutedMnist(string method)
    {
        var ml = new MLContext(seed: 1);
        var stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: 3, trainSamplesPerTask: 1000, testSamplesPerTask: 500, seed: 1);
        T Protocol<T>(T o) where T : ContinualTrainerOptions
        {
            o.HiddenLayerSizes = [100, 100];
            o.Optimizer = ContinualOptimizer.Sgd;
            o.LearningRate = 0.1;
            o.BatchSize = 10;
            o.NumberOfEpochs = 1;
            o.Seed = 1;
            return o;
        }
        IEstimator<ITransformer> trainer = method == "GEM"
            ? ml.Continual().Trainers.Gem(Protocol(new GemTrainer.Options()))
            : ml.Continual().Trainers.AGem(Protocol(new AGemTrainer.Options()));
        var fineTune = ml.Continual().Run(ml.Continual().Trainers.FineTune(Protocol(new FineTuneTrainer.Options())), stream, new ContinualRunOptions { EvaluateBeforeTraining = false });
        var result = ml.Continual().Run(trainer, stream, new ContinualRunOptions { EvaluateBeforeTraining = false });
        Assert.True(result.Metrics.BackwardTransfer > fineTune.Metrics.BackwardTransfer + 0.03,
            $"{method}: BWT {result.Metrics.BackwardTransfer:F4} vs FineTune {fineTune.Metrics.BackwardTransfer:F4}");
        Assert.True(result.Metrics.AverageAccuracy > fineTune.Metrics.AverageAccuracy,
            $"{method}: ACC {result.Metrics.AverageAccuracy:F4} vs FineTune {fineTune.Metrics.AverageAccuracy:F4}");
    }
}
