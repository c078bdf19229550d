namespace Microsoft.ML.Continual;

/// <summary>
/// Gradient episodic memory (Lopez-Paz and Ranzato 2017, "Gradient Episodic Memory for Continual Learning", NeurIPS):
/// keeps <see cref="Options.MemoriesPerTask"/> rows of each past task and never lets a step increase the loss on any of
/// their memories. Reach it with <c>mlContext.Continual().Trainers.Gem(...)</c>.
/// </summary>
/// <remarks>
/// <para>At each step, with g the batch's gradient and g_k the gradient of past task k's memory loss, GEM requires
/// ⟨g̃, g_k⟩ ≥ 0 for every k &lt; t (eq. 7). When some ⟨g, g_k⟩ &lt; 0, g is replaced by the closest g̃ satisfying them,
/// found through the dual QP v* = argmin_{v ≥ γ} ½ vᵀ(GGᵀ + εI)v + (Gg)ᵀv, g̃ = Gᵀv* + g (eq. 10–11; the memory strength γ
/// bounds v from below as in the authors' code, ε = 1e-3). The QP is solved exactly in float64 by the Lawson–Hanson
/// active-set method.</para>
/// <para>Cost: each step runs one forward and backward pass per past task on its memory, so step time grows with the
/// number of tasks; <see cref="AGemTrainer"/> needs one extra pass whatever the number of tasks.</para>
/// <para>The memory (features, targets, heads, task of each row) is saved in the model and grows by
/// <see cref="Options.MemoriesPerTask"/> rows per task. With boundaries inside a fit (task-free streams) it is bounded
/// instead: at most <see cref="Options.MemoryGroupsInsideFit"/> groups of <see cref="Options.MemoriesPerTask"/> rows, each
/// a uniform sample of the windows assigned to it in turn (window w to group w mod G), each one constraint.</para>
/// </remarks>
public sealed class GemTrainer : ContinualTrainerBase<GemTrainer.Options>
{
    internal const string RegisteredName = "Gem";

    /// <summary>Options for <see cref="GemTrainer"/>.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
        /// <summary>Rows of each task kept in the episodic memory (a random sample, drawn with the task's seed). Default 256 (the paper's MNIST setting).</summary>
        public int MemoriesPerTask { get; set; } = 256;

        /// <summary>The memory strength γ ≥ 0: lower bound of the dual variables; larger values favour backward transfer. Default 0.5 (the paper's MNIST setting).</summary>
        public double MemoryStrength { get; set; } = 0.5;

        /// <summary>With boundaries inside a fit (<see cref="ContinualTrainerOptions.Boundaries"/> not Given): the most
        /// groups, each one constraint of at most <see cref="MemoriesPerTask"/> rows. Default 10. Window w joins group
        /// w mod this as a reservoir over that group's windows, so neither the memory nor a step's cost grows with the
        /// number of boundaries.</summary>
        public int MemoryGroupsInsideFit { get; set; } = 10;
    }

    internal GemTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// Averaged GEM (Chaudhry, Ranzato, Rohrbach and Elhoseiny 2019, "Efficient Lifelong Learning with A-GEM", ICLR): one
/// constraint on the average memory gradient instead of one per task. Reach it with <c>mlContext.Continual().Trainers.AGem(...)</c>.
/// </summary>
/// <remarks>
/// <para>At each step a reference gradient g_ref is computed on <see cref="Options.ReferenceSampleSize"/> rows drawn from
/// the whole memory; if gᵀg_ref &lt; 0 the step uses g̃ = g − (gᵀg_ref / g_refᵀg_ref) g_ref (eq. 11), else g.</para>
/// <para>The memory holds at most <see cref="Options.MemorySize"/> rows, shared equally among the tasks seen
/// (<see cref="ReplayBufferPolicy.TaskBalanced"/>, random rows); it is saved in the model.</para>
/// </remarks>
public sealed class AGemTrainer : ContinualTrainerBase<AGemTrainer.Options>
{
    internal const string RegisteredName = "AGem";

    /// <summary>Options for <see cref="AGemTrainer"/>.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
        /// <summary>Creates the options, with <see cref="ContinualTrainerOptions.BoundaryResetsOptimizer"/> true: with
        /// boundaries inside a fit, each boundary adds a memory group and so changes the projection every step obeys, and
        /// Adam's moments from before it, carried over, cost A-GEM 9 to 18 points in class-IL and 3.8 in domain-IL with a
        /// boundary every 87 steps of the fuzzy-boundary stream, where a fresh optimizer, as a new fit has, keeps it within
        /// 2 points of given boundaries (docs/benchmarks.md, "SCP and A-GEM reset the optimizer at boundaries inside a fit").</summary>
        public Options() => BoundaryResetsOptimizer = true;

        /// <summary>The memory budget in rows, shared equally among the tasks seen. Default 5,120 (256 per task after 20 tasks).</summary>
        public int MemorySize { get; set; } = 5120;

        /// <summary>Rows drawn from the memory for each step's reference gradient. Default 256.</summary>
        public int ReferenceSampleSize { get; set; } = 256;

    }

    internal AGemTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}
