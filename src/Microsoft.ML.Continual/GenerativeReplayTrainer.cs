namespace Microsoft.ML.Continual;

/// <summary>
/// Generative replay (Shin, Lee, Kim and Kim 2017, "Continual learning with deep generative replay", NeurIPS; van de Ven
/// and Tolias 2018/2019, with distillation): keeps no rows at all, yet rehearses. A variational autoencoder learns the
/// inputs of every task seen; before each new task the previous generator and classifier are frozen, and every step adds
/// generated inputs, labelled by the previous classifier, to the training loss. Reach it with
/// <c>mlContext.Continual().Trainers.GenerativeReplay(...)</c>.
/// </summary>
/// <remarks>
/// <para>Classifier loss on task t: L = L_t(batch) + (t − 1) L_replay(x̃), x̃ = decoder_{t−1}(z), z ~ N(0, I): van de Ven et
/// al.'s weighting (1/t)L_t + (1 − 1/t)L_replay, scaled by t. With <see cref="Options.Distillation"/>, L_replay is
/// T²·KL(p̃ ‖ softmax(f(x̃)/T)) (Hinton et al. 2015), where p̃ is softmax(f_{t−1}(x̃)/T) over the classes the previous model
/// knew, padded with zeros for the classes added since, as van de Ven et al. do, so that new classes lose on replayed inputs;
/// without distillation, the cross-entropy over all current classes to the previous model's predicted class.</para>
/// <para>Generator loss: the negative ELBO (Kingma and Welling 2014) on the current batch plus (t − 1) times that on the
/// replayed samples; Bernoulli likelihood when every input of the first task lies in [0, 1], else Gaussian. The generator's
/// weights are part of the model zip and continue after load and refit; its parameter count is reported in the state sizes.</para>
/// </remarks>
public sealed class GenerativeReplayTrainer : ContinualTrainerBase<GenerativeReplayTrainer.Options>
{
    internal const string RegisteredName = "GenerativeReplay";

    /// <summary>Options for <see cref="GenerativeReplayTrainer"/>.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
        /// <summary>Units in each of the generator's two hidden layers (encoder and decoder). Default 400 (van de Ven and Tolias).</summary>
        public int GeneratorHiddenSize { get; set; } = 400;

        /// <summary>Size of the generator's latent space. Default 100 (van de Ven and Tolias).</summary>
        public int LatentSize { get; set; } = 100;

        /// <summary>The generator's Adam learning rate; null (default): <see cref="ContinualTrainerOptions.LearningRate"/>.</summary>
        public double? GeneratorLearningRate { get; set; }

        /// <summary>Soft targets (knowledge distillation) for the replayed samples, or the previous model's predicted class. Default true.</summary>
        public bool Distillation { get; set; } = true;

        /// <summary>The distillation temperature T. Default 2 (van de Ven and Tolias).</summary>
        public double DistillationTemperature { get; set; } = 2;

    }

    internal GenerativeReplayTrainer(MLContext mlContext, Options options) : base(mlContext, options) { }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;
}
