namespace Microsoft.ML.Continual;

/// <summary>
/// DER, Dark Experience Replay (Buzzega et al. 2020): a reservoir memory of inputs with the logits the network gave them,
/// updated at every step; the network keeps giving those logits (<see cref="DarkExperiencePlugin"/>, whose remarks give
/// the loss). Reach it with <c>mlContext.Continual().Trainers.Der(...)</c>; DER++ is <see cref="DerPlusPlusTrainer"/>.
/// </summary>
/// <remarks>L = CE(f(x), y) + α E_{(x',z')~M} ‖f(x') − z'‖² (Buzzega et al. 2020, eq. 4).</remarks>
public sealed class DerTrainer : ContinualTrainerBase<DerTrainer.Options>
{
    internal const string RegisteredName = "Der";

    /// <summary>Options for <see cref="DerTrainer"/>.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
        /// <summary>The memory budget in rows. Default 500.</summary>
        public int MemorySize { get; set; } = 500;

        /// <summary>α: the weight of the logit-matching term. Default 0.5.</summary>
        public double Alpha { get; set; } = 0.5;

        /// <summary>Rows drawn from the memory at each step; 0 (default): as many as <see cref="ContinualTrainerOptions.BatchSize"/>.</summary>
        public int MinibatchSize { get; set; }
    }

    internal DerTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// DER++ (Buzzega et al. 2020): DER plus a cross-entropy on a second memory sample's stored labels (<see cref="DarkExperiencePlugin"/>).
/// Reach it with <c>mlContext.Continual().Trainers.DerPlusPlus(...)</c>.
/// </summary>
/// <remarks>L = CE(f(x), y) + α E ‖f(x') − z'‖² + β E CE(f(x''), y'') (Buzzega et al. 2020, eq. 6).</remarks>
public sealed class DerPlusPlusTrainer : ContinualTrainerBase<DerPlusPlusTrainer.Options>
{
    internal const string RegisteredName = "DerPlusPlus";

    /// <summary>Options for <see cref="DerPlusPlusTrainer"/>.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
        /// <summary>The memory budget in rows. Default 500.</summary>
        public int MemorySize { get; set; } = 500;

        /// <summary>α: the weight of the logit-matching term. Default 0.5.</summary>
        public double Alpha { get; set; } = 0.5;

        /// <summary>β: the weight of the cross-entropy on stored labels. Default 0.5.</summary>
        public double Beta { get; set; } = 0.5;

        /// <summary>Rows drawn from the memory for each term at each step; 0 (default): as many as <see cref="ContinualTrainerOptions.BatchSize"/>.</summary>
        public int MinibatchSize { get; set; }
    }

    internal DerPlusPlusTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// ER, experience replay with a reservoir memory updated at every step (Chaudhry et al. 2019; <see cref="ErPlugin"/>):
/// the replay of task-free streams, where no fit ends a task. Reach it with <c>mlContext.Continual().Trainers.Er(...)</c>;
/// <see cref="ReplayTrainer"/> fills its memory at the end of each fit instead.
/// </summary>
/// <remarks>L = mean of CE over the incoming batch joined with a sample of the memory.</remarks>
public sealed class ErTrainer : ContinualTrainerBase<ErTrainer.Options>
{
    internal const string RegisteredName = "Er";

    /// <summary>Options for <see cref="ErTrainer"/>.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
        /// <summary>The memory budget in rows. Default 500.</summary>
        public int MemorySize { get; set; } = 500;

        /// <summary>Rows drawn from the memory at each step; 0 (default): as many as <see cref="ContinualTrainerOptions.BatchSize"/>.</summary>
        public int MinibatchSize { get; set; }
    }

    internal ErTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// ER-ACE (Caccia et al. 2022): experience replay with an asymmetric cross-entropy on the incoming batch
/// (<see cref="ErAcePlugin"/>). Reach it with <c>mlContext.Continual().Trainers.ErAce(...)</c>.
/// </summary>
/// <remarks>L = CE over the batch's classes and the unseen ones (incoming batch) + CE over every class (memory batch).</remarks>
public sealed class ErAceTrainer : ContinualTrainerBase<ErAceTrainer.Options>
{
    internal const string RegisteredName = "ErAce";

    /// <summary>Options for <see cref="ErAceTrainer"/>.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
        /// <summary>The memory budget in rows. Default 500.</summary>
        public int MemorySize { get; set; } = 500;

        /// <summary>Rows drawn from the memory at each step; 0 (default): as many as <see cref="ContinualTrainerOptions.BatchSize"/>.</summary>
        public int MinibatchSize { get; set; }
    }

    internal ErAceTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// MIR, maximally interfered retrieval (Aljundi et al. 2019): replays the memories a virtual step would hurt most
/// (<see cref="MirPlugin"/>). Reach it with <c>mlContext.Continual().Trainers.Mir(...)</c>.
/// </summary>
/// <remarks>Candidates scored by ℓ(f_{θ − η∇L(batch)}(x)) − ℓ(f_θ(x)) (Aljundi et al. 2019, eq. 2); the top ones are replayed.</remarks>
public sealed class MirTrainer : ContinualTrainerBase<MirTrainer.Options>
{
    internal const string RegisteredName = "Mir";

    /// <summary>Options for <see cref="MirTrainer"/>.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
        /// <summary>The memory budget in rows. Default 500.</summary>
        public int MemorySize { get; set; } = 500;

        /// <summary>Candidates drawn from the memory at each step; 0 (default): five times the rows replayed (the authors' 50 for 10).</summary>
        public int Candidates { get; set; }

        /// <summary>Candidates replayed at each step; 0 (default): as many as <see cref="ContinualTrainerOptions.BatchSize"/>.</summary>
        public int MinibatchSize { get; set; }
    }

    internal MirTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// GDumb (Prabhu et al. 2020): a greedy class-balanced memory and a network trained from scratch on it alone at every task
/// (<see cref="GDumbPlugin"/>). Reach it with <c>mlContext.Continual().Trainers.GDumb(...)</c>.
/// </summary>
/// <remarks>After task t the model minimises L(θ) over the memory M_t only, from a fresh initialisation.</remarks>
public sealed class GDumbTrainer : ContinualTrainerBase<GDumbTrainer.Options>
{
    internal const string RegisteredName = "GDumb";

    /// <summary>Options for <see cref="GDumbTrainer"/>.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
        /// <summary>
        /// Creates the options. Training from scratch on a small memory needs more, smaller steps than the other trainers:
        /// <see cref="ContinualTrainerOptions.NumberOfEpochs"/> defaults to 30 and <see cref="ContinualTrainerOptions.BatchSize"/>
        /// to 16 (the paper's batch size). A memory of 200 rows is two batches of 128; on class-incremental Split MNIST (3 tasks
        /// of 2,000 rows, memory 200, one hidden layer of 100) ACC was 0.923 with these defaults and 0.437 with 2 epochs of 128.
        /// </summary>
        public Options()
        {
            NumberOfEpochs = 30;
            BatchSize = 16;
        }

        /// <summary>The memory budget in rows. Default 500.</summary>
        public int MemorySize { get; set; } = 500;
    }

    internal GDumbTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// Learning without Forgetting (Li and Hoiem 2017), as van de Ven and Tolias (2019) run it: no rows kept, the previous
/// model's outputs distilled on the new task's inputs (<see cref="LwfPlugin"/>). Reach it with <c>mlContext.Continual().Trainers.Lwf(...)</c>.
/// </summary>
/// <remarks>L = (1/t) CE + (1 − 1/t) T² KL(softmax(f_{t−1}(x)/T) ‖ softmax(f(x)/T)), T = 2.</remarks>
public sealed class LwfTrainer : ContinualTrainerBase<LwfTrainer.Options>
{
    internal const string RegisteredName = "Lwf";

    /// <summary>Options for <see cref="LwfTrainer"/>.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
        /// <summary>The distillation temperature T. Default 2.</summary>
        public double Temperature { get; set; } = 2;

        /// <summary>When set, L = CE + α KD; null (default): (1/t) CE + (1 − 1/t) KD.</summary>
        public double? Alpha { get; set; }
    }

    internal LwfTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// iCaRL (Rebuffi et al. 2017): herding exemplars, binary cross-entropy with distillation, and the nearest-mean-of-exemplars
/// classifier at prediction time (<see cref="IcarlPlugin"/>). Class-incremental. Reach it with <c>mlContext.Continual().Trainers.Icarl(...)</c>.
/// </summary>
/// <remarks>Predicts y* = argmin_y ‖φ(x) − μ_y‖ with μ_y the normalised mean of class y's exemplars' normalised features.</remarks>
public sealed class IcarlTrainer : ContinualTrainerBase<IcarlTrainer.Options>
{
    internal const string RegisteredName = "Icarl";

    /// <summary>Options for <see cref="IcarlTrainer"/>.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
        /// <summary>The exemplar budget in rows, shared by the classes seen. Default 2,000.</summary>
        public int MemorySize { get; set; } = 2000;

        /// <summary>The temperature of the distillation targets. Default 2.</summary>
        public double Temperature { get; set; } = 2;
    }

    internal IcarlTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}

/// <summary>
/// BiC (Wu et al. 2019): replay with distillation, then a bias correction of each task's new classes fitted on held-out
/// exemplars (<see cref="BicPlugin"/>). Class-incremental. Reach it with <c>mlContext.Continual().Trainers.Bic(...)</c>.
/// </summary>
/// <remarks>q_k = α o_k + β for the newest task's classes, (α, β) fitted by cross-entropy on a balanced validation set (Wu et al. 2019, eq. 5).</remarks>
public sealed class BicTrainer : ContinualTrainerBase<BicTrainer.Options>
{
    internal const string RegisteredName = "Bic";

    /// <summary>Options for <see cref="BicTrainer"/>.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
        /// <summary>The exemplar budget in rows, shared by the classes seen. Default 2,000.</summary>
        public int MemorySize { get; set; } = 2000;

        /// <summary>The share of each class's rows held out to fit the correction. Default 0.1.</summary>
        public double ValidationShare { get; set; } = 0.1;

        /// <summary>Passes over the validation rows to fit the correction. Default 250.</summary>
        public int BiasEpochs { get; set; } = 250;

        /// <summary>The distillation temperature. Default 2.</summary>
        public double Temperature { get; set; } = 2;
    }

    internal BicTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}
