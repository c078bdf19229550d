namespace Microsoft.ML.Continual;

/// <summary>A regularization method to run together with replay, through the same hooks (e.g. replay + online EWC).</summary>
public enum ReplayRegularization
{
    /// <summary>Replay alone.</summary>
    None,
    /// <summary>L2 towards the previous task's parameters (<see cref="L2Trainer"/>).</summary>
    L2,
    /// <summary>Online EWC (<see cref="EwcTrainer"/> with <see cref="EwcMode.Online"/>, γ = 1).</summary>
    OnlineEwc,
    /// <summary>Synaptic intelligence (<see cref="SiTrainer"/>).</summary>
    Si,
    /// <summary>Memory aware synapses (<see cref="MasTrainer"/>).</summary>
    Mas,
}

/// <summary>
/// Experience replay: a memory of earlier tasks' rows with a fixed budget, mixed into every minibatch of a new task.
/// The family that works in the class-incremental scenario. Reach it with <c>mlContext.Continual().Trainers.Replay(...)</c>.
/// </summary>
/// <remarks>
/// <para>Each minibatch of B task rows gets m = round(B·s/(1 − s)) rows drawn uniformly from the memory (s =
/// <see cref="Options.ReplayShare"/>), and the loss is (1/B)(Σ_task ℓ + Σ_replayed ℓ): a replayed row counts as much as a
/// task row. With s = 0.5, old and new rows are seen 1:1, as in Hsu et al. (2018)'s naive rehearsal; Chaudhry et al.
/// (2019, "On tiny episodic memories in continual learning") show that this simple scheme beats GEM and A-GEM.</para>
/// <para>After each task its rows are offered to the memory under <see cref="Options.BufferPolicy"/>; the memory never holds
/// more than <see cref="Options.MemorySize"/> rows. Updating costs O(memory + task rows) once per task and drawing a
/// replay batch O(m), so training throughput does not fall as the memory fills. The memory (features, targets, heads,
/// task of each row) is saved in the model zip and continues after load and refit.</para>
/// </remarks>
public sealed class ReplayTrainer : ContinualTrainerBase<ReplayTrainer.Options>
{
    internal const string RegisteredName = "Replay";

    /// <summary>Options for <see cref="ReplayTrainer"/>.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
        /// <summary>The memory budget in rows. Default 1,000.</summary>
        public int MemorySize { get; set; } = 1000;

        /// <summary>Which rows the memory keeps. Default <see cref="ReplayBufferPolicy.Reservoir"/>.</summary>
        public ReplayBufferPolicy BufferPolicy { get; set; } = ReplayBufferPolicy.Reservoir;

        /// <summary>How a balanced memory picks a task's rows. Default <see cref="ExemplarSelection.Random"/>; herding needs a
        /// balanced <see cref="BufferPolicy"/> (reservoir sampling is random by definition).</summary>
        public ExemplarSelection Selection { get; set; } = ExemplarSelection.Random;

        /// <summary>The share s of each minibatch's rows drawn from the memory, in [0, 0.95]. Default 0.5 (old:new = 1:1).</summary>
        public double ReplayShare { get; set; } = 0.5;

        /// <summary>A regularization method to run with replay. Default <see cref="ReplayRegularization.None"/>.</summary>
        public ReplayRegularization Regularization { get; set; } = ReplayRegularization.None;

        /// <summary>λ of <see cref="Regularization"/>; null (default): that trainer's default λ.</summary>
        public double? RegularizationLambda { get; set; }

        internal override void Validate()
        {
            base.Validate();
            if (RegularizationLambda is double l && (!(l >= 0) || double.IsInfinity(l))) throw new ArgumentOutOfRangeException(nameof(RegularizationLambda), "Option RegularizationLambda must be null or non-negative and finite.");
            if (RegularizationLambda is not null && Regularization == ReplayRegularization.None)
                throw new ArgumentOutOfRangeException(nameof(RegularizationLambda), "Option RegularizationLambda is set but Regularization is None.");
        }

    }

    internal ReplayTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;

    /// <summary>The plugins: replay, then the regularizer when one is chosen (online EWC with γ = 1; each with its trainer's default λ unless <see cref="Options.RegularizationLambda"/> is set).</summary>
    internal static IReadOnlyList<ContinualPlugin> CreatePlugins(Options options)
    {
        var replay = new ReplayPlugin { MemorySize = options.MemorySize, BufferPolicy = options.BufferPolicy, Selection = options.Selection, ReplayShare = options.ReplayShare };
        RegularizationPlugin? regularizer = options.Regularization switch
        {
            ReplayRegularization.L2 => new L2Plugin(),
            ReplayRegularization.OnlineEwc => new EwcPlugin { Mode = EwcMode.Online },
            ReplayRegularization.Si => new SiPlugin(),
            ReplayRegularization.Mas => new MasPlugin(),
            _ => null,
        };
        if (regularizer is null) return [replay];
        if (options.RegularizationLambda is double lambda) regularizer.Lambda = lambda;
        return [replay, regularizer];
    }
}
