namespace Microsoft.ML.Continual;

/// <summary>Options shared by the regularization family: the penalty strength λ in L'(θ) = L(θ) + λ Σ_i b_i (θ_i − θ_i^b)².</summary>
public abstract class RegularizationTrainerOptions : ContinualTrainerOptions
{
    /// <summary>λ: how strongly to hold on to earlier tasks. 0 is fine-tuning; too large cannot learn new tasks. Each
    /// trainer documents its default, which depends on the scale of its importances.</summary>
    public double Lambda { get; set; }

    internal override void Validate()
    {
        base.Validate();
        if (!(Lambda >= 0) || double.IsInfinity(Lambda)) throw new ArgumentOutOfRangeException(nameof(Lambda), "Option Lambda must be non-negative and finite.");
    }
}

/// <summary>EWC's two ways of keeping the Fisher information of past tasks.</summary>
public enum EwcMode
{
    /// <summary>One penalty term (anchor and Fisher) per past task (Kirkpatrick et al. 2017): memory and penalty cost grow with the tasks.</summary>
    Separate,
    /// <summary>One running Fisher F ← γF + F_t and the latest anchor (Schwarz et al. 2018): memory independent of the number of tasks.</summary>
    Online,
}

/// <summary>
/// L2 regularization towards the previous task's parameters: b_i = 1 for every parameter. The simplest member of the
/// family and a baseline for it (Kirkpatrick et al. 2017 compare EWC with it). Reach it with <c>mlContext.Continual().Trainers.L2(...)</c>.
/// </summary>
/// <remarks>L'(θ) = L_t(θ) + λ Σ_i (θ_i − θ_i^{t−1})².</remarks>
public sealed class L2Trainer : ContinualTrainerBase<L2Trainer.Options>
{
    internal const string RegisteredName = "L2";

    /// <summary>Options for <see cref="L2Trainer"/>.</summary>
    public sealed class Options : RegularizationTrainerOptions
    {
        /// <summary>Creates the options; <see cref="RegularizationTrainerOptions.Lambda"/> defaults to 0.01 (the best of the λ grid in docs/benchmarks.md).</summary>
        public Options() => Lambda = 0.01;
    }

    internal L2Trainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// Elastic weight consolidation (Kirkpatrick et al. 2017, "Overcoming catastrophic forgetting in neural networks", PNAS):
/// b is the diagonal of the Fisher information at the end of each task. Online EWC (Schwarz et al. 2018, "Progress &amp;
/// compress") keeps one running Fisher instead of one per task. Reach it with <c>mlContext.Continual().Trainers.Ewc(...)</c>.
/// </summary>
/// <remarks>
/// <para>Separate: L'(θ) = L_t(θ) + λ Σ_{k&lt;t} Σ_i F_{k,i} (θ_i − θ*_{k,i})² (Kirkpatrick et al. eq. 3, with their λ/2 written as λ).</para>
/// <para>Online: F̃_t = γ F̃_{t−1} + F_t and L'(θ) = L_t(θ) + λ Σ_i F̃_{t−1,i} (θ_i − θ*_{t−1,i})² (Schwarz et al. eq. 8).</para>
/// <para>F_{t,i} = (1/N) Σ_n (∂ log p(y_n | x_n; θ*_t) / ∂θ_i)² over N rows of task t, each gradient taken for one row
/// alone: an expectation of per-sample squared gradients, so it does not depend on the training batch size. y_n is the
/// true label (<see cref="FisherLabels.Empirical"/>) or drawn from the model (<see cref="FisherLabels.Sampled"/>).</para>
/// </remarks>
public sealed class EwcTrainer : ContinualTrainerBase<EwcTrainer.Options>
{
    internal const string RegisteredName = "Ewc";

    /// <summary>Options for <see cref="EwcTrainer"/>.</summary>
    public sealed class Options : RegularizationTrainerOptions
    {
        /// <summary>Creates the options; <see cref="RegularizationTrainerOptions.Lambda"/> defaults to 100 (the best of the λ grid in docs/benchmarks.md).</summary>
        public Options() => Lambda = 100;

        /// <summary>Separate (one term per task, the default) or online (one running Fisher).</summary>
        public EwcMode Mode { get; set; } = EwcMode.Separate;

        /// <summary>Online mode's decay γ of the running Fisher, in [0, 1]. Default 1.</summary>
        public double Gamma { get; set; } = 1;

        /// <summary>Rows per task used to estimate the Fisher (drawn with the task's seed); null: all rows. Default 1,000.</summary>
        public int? FisherSamples { get; set; } = 1000;

        /// <summary>True labels (the empirical Fisher, the default) or labels sampled from the model.</summary>
        public FisherLabels FisherLabels { get; set; } = FisherLabels.Empirical;

    }

    internal EwcTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// Synaptic intelligence (Zenke, Poole and Ganguli 2017, "Continual learning through synaptic intelligence", ICML):
/// b is each parameter's contribution to the drop in loss along its training trajectory. Reach it with <c>mlContext.Continual().Trainers.Si(...)</c>.
/// </summary>
/// <remarks>
/// During task t, ω_i^t = Σ_steps −g_i Δθ_i (the path integral of eq. 3, with g the gradient the optimizer used, as in the
/// authors' and van de Ven et al.'s code: it is still in place after the step, so nothing is copied);
/// after it, Ω_i ← Ω_i + ω_i^t / ((Δ_i^t)² + ξ) with Δ_i^t the parameter's total change over the task (eq. 5), and
/// L'(θ) = L_t(θ) + λ Σ_i Ω_i (θ_i − θ_i^{t−1})² (eq. 4, λ = c).
/// </remarks>
public sealed class SiTrainer : ContinualTrainerBase<SiTrainer.Options>
{
    internal const string RegisteredName = "Si";

    /// <summary>Options for <see cref="SiTrainer"/>.</summary>
    public sealed class Options : RegularizationTrainerOptions
    {
        /// <summary>Creates the options; <see cref="RegularizationTrainerOptions.Lambda"/> (c) defaults to 100 (the best of the λ grid in docs/benchmarks.md).</summary>
        public Options() => Lambda = 100;

        /// <summary>The damping ξ that keeps Ω finite when a parameter barely moved. Default 0.1.</summary>
        public double Damping { get; set; } = 0.1;

    }

    internal SiTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// Memory aware synapses (Aljundi et al. 2018, "Memory aware synapses: learning what (not) to forget", ECCV): b is the
/// sensitivity of the squared L2 norm of the network's output to each parameter; it needs no labels. Reach it with
/// <c>mlContext.Continual().Trainers.Mas(...)</c>.
/// </summary>
/// <remarks>Ω_i ← Ω_i + (1/N) Σ_n |∂ ‖f(x_n; θ)‖²₂ / ∂θ_i| (eq. 4 and 5, per row), and L'(θ) = L_t(θ) + λ Σ_i Ω_i (θ_i − θ_i^{t−1})² (eq. 6).</remarks>
public sealed class MasTrainer : ContinualTrainerBase<MasTrainer.Options>
{
    internal const string RegisteredName = "Mas";

    /// <summary>Options for <see cref="MasTrainer"/>.</summary>
    public sealed class Options : RegularizationTrainerOptions
    {
        /// <summary>Creates the options; <see cref="RegularizationTrainerOptions.Lambda"/> defaults to 0.1 (the best of the λ grid in docs/benchmarks.md).</summary>
        public Options() => Lambda = 0.1;

        /// <summary>Rows per task used to estimate Ω; null: all rows. Default 1,000.</summary>
        public int? ImportanceSamples { get; set; } = 1000;
    }

    internal MasTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// Riemannian walk (Chaudhry et al. 2018, "Riemannian walk for incremental learning: understanding forgetting and
/// intransigence", ECCV): an online Fisher (EWC++) plus a KL-normalised path score. Reach it with <c>mlContext.Continual().Trainers.RWalk(...)</c>.
/// </summary>
/// <remarks>
/// Every <see cref="Options.ScoreUpdateInterval"/> steps (a window w, as the authors' code does with FISHER_UPDATE_AFTER = 50):
/// s_i += Σ_{steps in w} (−g_i Δθ_i) / (½ F_i (θ_i − θ_i^{start of w})² + ε) (eq. 8–10, g the gradient the optimizer used,
/// Δθ each step's change), then F ← α·mean_w(g²) + (1−α) F (EWC++, eq. 6, g the minibatch gradient of the task loss).
/// After each task, with s_t clipped at 0 and both normalised by their maximum, s̄ ← ½(s̄ + s_t) and
/// L'(θ) = L_t(θ) + λ Σ_i (F_i + s̄_i)(θ_i − θ_i^{t−1})² (eq. 9). With a window of 1 step the score is the paper's per-step
/// sum, each step's term using the Fisher from before that step. A parameter with no gradient in a whole window (e.g. an
/// earlier task's head) keeps its Fisher unchanged.
/// </remarks>
public sealed class RWalkTrainer : ContinualTrainerBase<RWalkTrainer.Options>
{
    internal const string RegisteredName = "RWalk";

    /// <summary>Options for <see cref="RWalkTrainer"/>.</summary>
    public sealed class Options : RegularizationTrainerOptions
    {
        /// <summary>Creates the options; <see cref="RegularizationTrainerOptions.Lambda"/> defaults to 1 (the best of the λ grid in docs/benchmarks.md).</summary>
        public Options() => Lambda = 1;

        /// <summary>Weight α of the newest window's mean squared gradient in the running Fisher. Default 0.9.</summary>
        public double FisherAlpha { get; set; } = 0.9;

        /// <summary>Steps per window: the path score's denominator and the running Fisher are updated once per window
        /// (the per-step path sum costs three passes over the parameters). Default 50 (the authors' code).</summary>
        public int ScoreUpdateInterval { get; set; } = 50;

        /// <summary>ε in the path score's denominator. Default 1e-3.</summary>
        public double Epsilon { get; set; } = 1e-3;

    }

    internal RWalkTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// Sliced Cramér preservation (Kolouri et al. 2020, "Sliced Cramér synaptic consolidation for preserving deeply learned
/// representations", ICLR): b from random one-dimensional projections of the network's output distribution. Reach it
/// with <c>mlContext.Continual().Trainers.Scp(...)</c>.
/// </summary>
/// <remarks>
/// Γ_t,i = (1/L) Σ_l (∂/∂θ_i ξ_lᵀ (1/N) Σ_n φ(x_n; θ))², ξ_l uniform on the unit sphere of the output space and φ the
/// output distribution (eq. 11); Γ ← γΓ + Γ_t and L'(θ) = L_t(θ) + λ Σ_i Γ_i (θ_i − θ_i^{t−1})².
/// </remarks>
public sealed class ScpTrainer : ContinualTrainerBase<ScpTrainer.Options>
{
    internal const string RegisteredName = "Scp";

    /// <summary>Options for <see cref="ScpTrainer"/>.</summary>
    public sealed class Options : RegularizationTrainerOptions
    {
        /// <summary>Creates the options; <see cref="RegularizationTrainerOptions.Lambda"/> defaults to 1,000,000 (the best of the λ grid in
        /// docs/benchmarks.md: SCP's importances are squared gradients of a mean output, far smaller than a Fisher's), and
        /// <see cref="ContinualTrainerOptions.BoundaryResetsOptimizer"/> to true: with boundaries inside a fit, Adam's
        /// moments from before a boundary have never seen a penalty of that strength, and carried over they cost 5 points
        /// with a boundary every 87 steps of the fuzzy-boundary stream, where a fresh optimizer, as a new fit has, costs
        /// none (docs/benchmarks.md, "SCP and A-GEM reset the optimizer at boundaries inside a fit"; on Rotated MNIST and the
        /// rotating hyperplane the reset costs 1.6–3.3 points, and SCP inside a fit is below fine-tuning there either way).</summary>
        public Options()
        {
            Lambda = 1e6;
            BoundaryResetsOptimizer = true;
        }

        /// <summary>Random projections L. Default 100.</summary>
        public int Projections { get; set; } = 100;

        /// <summary>Rows per task whose mean output is projected; null: all rows. Default 500.</summary>
        public int? ImportanceSamples { get; set; } = 500;

        /// <summary>Decay γ of the accumulated importance, in [0, 1]. Default 1.</summary>
        public double Gamma { get; set; } = 1;

    }

    internal ScpTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}
