using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>A small variational autoencoder (Kingma and Welling 2014): two hidden layers each way, a Gaussian latent.</summary>
internal sealed class VariationalAutoencoder : nn.Module
{
    private readonly Sequential encoder;
    private readonly Linear mean;
    private readonly Linear logVariance;
    private readonly Sequential decoder;

    /// <summary>A new autoencoder; its layers' parameters are drawn from <paramref name="init"/> in the order they are made
    /// (or by TorchSharp from the process-wide generator when null: an autoencoder about to be read from a file).</summary>
    public VariationalAutoencoder(int inputSize, int hiddenSize, int latentSize, Generator? init) : base(nameof(VariationalAutoencoder))
    {
        (InputSize, HiddenSize, LatentSize) = (inputSize, hiddenSize, latentSize);
        Linear L(int i, int o)
        {
            var layer = nn.Linear(i, o);
            if (init is not null) Initializer.Reset(layer.weight!, layer.bias, init);
            return layer;
        }
        encoder = nn.Sequential(L(inputSize, hiddenSize), nn.ReLU(), L(hiddenSize, hiddenSize), nn.ReLU());
        mean = L(hiddenSize, latentSize);
        logVariance = L(hiddenSize, latentSize);
        decoder = nn.Sequential(L(latentSize, hiddenSize), nn.ReLU(), L(hiddenSize, hiddenSize), nn.ReLU(), L(hiddenSize, inputSize));
        RegisterComponents();
    }

    public int InputSize { get; }
    public int HiddenSize { get; }
    public int LatentSize { get; }

    /// <summary>The negative evidence lower bound per feature, one value per row: reconstruction (Bernoulli: cross-entropy on
    /// logits; else Gaussian: ½ squared error) plus KL(q(z|x) ‖ N(0, I)).</summary>
    public Tensor Loss(Tensor x, bool bernoulli, Generator random)
    {
        Tensor h = encoder.call(x);
        Tensor mu = mean.call(h), logVar = logVariance.call(h);
        Tensor z = mu + (logVar * 0.5).exp() * randn(mu.shape, generator: random, device: CPU).to(mu.device);
        Tensor output = decoder.call(z);
        Tensor reconstruction = bernoulli
            ? nn.functional.binary_cross_entropy_with_logits(output, x, reduction: nn.Reduction.None).sum(1)
            : (output - x).pow(2).sum(1) * 0.5;
        Tensor kl = (1 + logVar - mu.pow(2) - logVar.exp()).sum(1) * -0.5;
        return (reconstruction + kl) / InputSize;
    }

    /// <summary><paramref name="count"/> samples x ~ p(x|z), z ~ N(0, I) (the decoder's mean).</summary>
    public Tensor Sample(long count, bool bernoulli, Generator random, Device device)
    {
        using var _ = no_grad();
        Tensor output = decoder.call(randn([count, LatentSize], generator: random, device: CPU).to(device));
        return bernoulli ? output.sigmoid() : output;
    }

    public VariationalAutoencoder Copy(Generator? random)
    {
        var copy = new VariationalAutoencoder(InputSize, HiddenSize, LatentSize, random);
        copy.to(parameters().First().device);
        var source = named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var _ = no_grad();
        foreach (var (name, target) in copy.named_parameters()) target.copy_(source[name]);
        return copy;
    }

    /// <summary>Parameters of an autoencoder of these sizes (checked arithmetic: a damaged size cannot overflow).</summary>
    public static long ParameterCount(int input, int hidden, int latent)
    {
        try
        {
            checked
            {
                long h = hidden, i = input, z = latent;
                return (i * h + h) + (h * h + h) + 2 * (h * z + z) + (z * h + h) + (h * h + h) + (h * i + i);
            }
        }
        catch (OverflowException) { return long.MaxValue; }
    }

    public void Save(ContinualState state, string prefix)
    {
        state.Set(prefix + "input", InputSize);
        state.Set(prefix + "hidden", HiddenSize);
        state.Set(prefix + "latent", LatentSize);
        foreach (var (name, parameter) in named_parameters()) state.Set(prefix + name, parameter);
    }

    public static VariationalAutoencoder Load(ContinualState state, string prefix)
    {
        int input = state.GetInt32(prefix + "input", 1), hidden = state.GetInt32(prefix + "hidden", 1), latent = state.GetInt32(prefix + "latent", 1);
        // The sizes must agree with the tensors the store holds before the autoencoder is made.
        if (ParameterCount(input, hidden, latent) > state.TensorElements)
            throw new ContinualModelFormatException($"The generator's sizes ({input}, {hidden}, {latent}) ask for more parameters than the state holds.");
        var vae = new VariationalAutoencoder(input, hidden, latent, init: null);
        using var _ = no_grad();
        foreach (var (name, parameter) in vae.named_parameters())
        {
            using Tensor stored = state.GetTensor(prefix + name);
            if (!stored.shape.SequenceEqual(parameter.shape) || stored.dtype != ScalarType.Float32)
                throw new ContinualModelFormatException($"The generator's {name} has shape [{string.Join(",", stored.shape)}]; [{string.Join(",", parameter.shape)}] was expected.");
            parameter.copy_(stored);
        }
        return vae;
    }

    public static VariationalAutoencoder ReadLegacy(BinaryReader reader)
    {
        int input = ModelIO.ReadCount(reader, "generator input"), hidden = ModelIO.ReadCount(reader, "generator hidden"), latent = ModelIO.ReadCount(reader, "generator latent");
        long left = reader.BaseStream.CanSeek ? reader.BaseStream.Length - reader.BaseStream.Position : long.MaxValue;
        if (input == 0 || hidden == 0 || latent == 0 || ParameterCount(input, hidden, latent) > left / sizeof(float))
            throw new ContinualModelFormatException($"The generator's sizes ({input}, {hidden}, {latent}) are out of range for its entry.");
        var vae = new VariationalAutoencoder(input, hidden, latent, init: null);
        using var _ = no_grad();
        foreach (var (name, parameter) in vae.named_parameters())
        {
            using Tensor stored = TensorIO.Read(reader, $"generator {name}");
            if (!stored.shape.SequenceEqual(parameter.shape))
                throw new ContinualModelFormatException($"The generator's {name} has shape [{string.Join(",", stored.shape)}]; [{string.Join(",", parameter.shape)}] was expected.");
            parameter.copy_(stored);
        }
        return vae;
    }
}

/// <summary>
/// Generative replay (<see cref="GenerativeReplayTrainer"/>, whose remarks give the losses): a VAE learns the inputs of
/// every task so far (the current batch plus its own replayed samples); from the second task on, each step adds samples of
/// the previous generator, labelled by the previous classifier (soft targets or its argmax), to the classifier's loss.
/// </summary>
public sealed class GenerativeReplayPlugin : ContinualPlugin
{
    private const int StateVersion = 1;
    private VariationalAutoencoder? _generator;
    private bool _bernoulli;
    private int _tasksSeen, _outputsSeen, _headsSeen;

    // One task's working state.
    private VariationalAutoencoder? _previousGenerator;
    private ContinualNetwork? _previousClassifier;
    private optim.Optimizer? _generatorOptimizer;
    private Generator? _random;
    private Tensor? _replayed;

    /// <summary>Units in each of the generator's two hidden layers (encoder and decoder). Default 400 (van de Ven and Tolias).</summary>
    public int GeneratorHiddenSize { get; set; } = 400;

    /// <summary>Size of the generator's latent space. Default 100 (van de Ven and Tolias).</summary>
    public int LatentSize { get; set; } = 100;

    /// <summary>The generator's Adam learning rate; null (default): the trainer's <see cref="ContinualTrainerOptions.LearningRate"/>.</summary>
    public double? GeneratorLearningRate { get; set; }

    /// <summary>Soft targets (knowledge distillation) for the replayed samples, or the previous model's predicted class. Default true.</summary>
    public bool Distillation { get; set; } = true;

    /// <summary>The distillation temperature T. Default 2 (van de Ven and Tolias).</summary>
    public double DistillationTemperature { get; set; } = 2;

    /// <inheritdoc/>
    public override void Validate()
    {
        if (GeneratorHiddenSize < 1 || GeneratorHiddenSize > 1 << 16) throw new ArgumentOutOfRangeException(nameof(GeneratorHiddenSize), "Option GeneratorHiddenSize must be in [1, 65,536].");
        if (LatentSize < 1 || LatentSize > 1 << 16) throw new ArgumentOutOfRangeException(nameof(LatentSize), "Option LatentSize must be in [1, 65,536].");
        if (GeneratorLearningRate is double lr && !(lr > 0 && double.IsFinite(lr))) throw new ArgumentOutOfRangeException(nameof(GeneratorLearningRate), "Option GeneratorLearningRate must be null or positive.");
        if (!(DistillationTemperature > 0 && double.IsFinite(DistillationTemperature))) throw new ArgumentOutOfRangeException(nameof(DistillationTemperature), "Option DistillationTemperature must be positive.");
    }

    /// <summary>False: the generator and its optimizer change at every step; they are not part of a within-task checkpoint.</summary>
    public override bool SupportsCheckpoints => false;

    internal VariationalAutoencoder? GeneratorModel => _generator;

    /// <inheritdoc/>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        bool inUnitRange;
        // A rounding tolerance: interpolated pixels (a rotated image's bilinear weights sum to 1 within an ulp or two) are
        // still intensities; the Bernoulli loss takes them as targets as they are.
        const float RoundingTolerance = 1e-4f;
        using (no_grad()) inUnitRange = context.Task.Features.min().item<float>() >= -RoundingTolerance && context.Task.Features.max().item<float>() <= 1 + RoundingTolerance;
        if (_generator is null)
        {
            // Bernoulli likelihood when every input lies in [0, 1] (e.g. pixel intensities), else Gaussian.
            _bernoulli = inUnitRange;
            _generator = new VariationalAutoencoder((int)context.Task.Features.shape[1], GeneratorHiddenSize, LatentSize, context.Random);
        }
        else if (_bernoulli && !inUnitRange)
            throw new ContinualDataException(context.Options.FeatureColumnName,
                "The generator was trained on features in [0, 1] (a Bernoulli likelihood) and this task has features outside that range; scale them as the first task's were.");
        _generator.to(context.Device);
        _generator.train();
        _generatorOptimizer = new KeptScalarAdam(_generator.parameters(), GeneratorLearningRate ?? context.Options.LearningRate, weightDecay: 0);
        _random = new Generator((ulong)(context.TaskSeed ^ 0x4447_5250), CPU);
        if (_tasksSeen == 0) return;
        _previousGenerator = _generator.Copy(context.Random);
        _previousGenerator.eval();
        _previousClassifier = context.Network.Copy(context.Random);
    }

    /// <summary>Adds the replay term, weighted t − 1 against the current task's loss (t = tasks including this one): van de Ven
    /// et al.'s (1/t) L_current + (1 − 1/t) L_replay, scaled by t.</summary>
    public override void BeforeBackward(ContinualTrainingContext context, ContinualStep step)
    {
        if (ReplayLoss(context) is Tensor loss) step.AddPenalty("generative replay", loss);
    }

    private Tensor? ReplayLoss(ContinualTrainingContext context)
    {
        if (_previousGenerator is null || _previousClassifier is null || context.CurrentBatch is not ContinualBatch batch) return null;
        long rows = batch.Features.shape[0];
        Tensor x = _previousGenerator.Sample(rows, _bernoulli, _random!, context.Device);
        Tensor? heads = context.State.MultiHead ? randint(_headsSeen, [rows], generator: _random, device: CPU).to(context.Device) : null;
        Tensor teacher;
        using (no_grad()) teacher = OldOutputs(context, _previousClassifier.Forward(x, heads), heads);
        // The student answers over every output it has now: on replayed inputs the classes added since must lose, which
        // is what keeps a class-incremental model from predicting only its newest classes (van de Ven et al. pad the
        // teacher's distribution with zeros for them).
        Tensor student = Masked(context, context.Network.Forward(x, heads), heads);
        _replayed = x;
        double temperature = DistillationTemperature;
        Tensor loss = context.State.Kind switch
        {
            ContinualPredictionKind.Multiclass when Distillation => DistillationLoss(student, teacher, temperature),
            ContinualPredictionKind.Multiclass => nn.functional.cross_entropy(student, teacher.argmax(1)),
            ContinualPredictionKind.Binary => nn.functional.binary_cross_entropy_with_logits(student.squeeze(1),
                Distillation ? (teacher.squeeze(1) / temperature).sigmoid() : teacher.squeeze(1).gt(0).to(float32)),
            _ => nn.functional.mse_loss(student.squeeze(1), teacher.squeeze(1)),
        };
        return loss * _tasksSeen;
    }

    /// <summary>
    /// T²·KL(p̃ ‖ softmax(student/T)) averaged over rows, p̃ = softmax(teacher/T) padded with zeros to the student's width
    /// (Hinton et al. 2015). Note: TorchSharp's <c>kl_div</c> defaults to <c>log_target = true</c>, unlike PyTorch; it is given false here.
    /// </summary>
    internal static Tensor DistillationLoss(Tensor student, Tensor teacher, double temperature)
    {
        int newOutputs = (int)(student.shape[1] - teacher.shape[1]);
        Tensor target = nn.functional.softmax(teacher / temperature, 1);
        if (newOutputs > 0) target = nn.functional.pad(target, [0, newOutputs]);
        return nn.functional.kl_div(nn.functional.log_softmax(student / temperature, 1), target, reduction: nn.Reduction.Sum, log_target: false)
            / student.shape[0] * (temperature * temperature);
    }

    /// <summary>The outputs the previous model had (class-incremental heads grow), with a head's other classes pushed far down.</summary>
    private Tensor OldOutputs(ContinualTrainingContext context, Tensor logits, Tensor? heads) =>
        Masked(context, logits.narrow(1, 0, Math.Min(_outputsSeen, (int)logits.shape[1])), heads);

    /// <summary>Logits with the classes a row's head does not predict pushed far down (multi-head models only).</summary>
    private static Tensor Masked(ContinualTrainingContext context, Tensor logits, Tensor? heads)
    {
        if (heads is null || context.State.AllowedOutputs(logits.device) is not Tensor allowed) return logits;
        Tensor mask = allowed.index_select(0, heads).narrow(1, 0, logits.shape[1]).logical_not();
        return logits.masked_fill(mask, CachedScalars.MinusOneBillion);
    }

    /// <summary>One generator step on the current batch and, from the second task on, the replayed samples (same weighting).</summary>
    public override void AfterStep(ContinualTrainingContext context)
    {
        if (context.CurrentBatch is not ContinualBatch batch) return;
        _generatorOptimizer!.zero_grad();
        long current = batch.Features.shape[0];
        // One pass over the current and the replayed rows together; each part's mean, weighted as the classifier's are.
        Tensor rows = _generator!.Loss(_replayed is null ? batch.Features : cat([batch.Features, _replayed], 0), _bernoulli, _random!);
        Tensor loss = rows.narrow(0, 0, current).mean();
        if (_replayed is not null) loss = loss + rows.narrow(0, current, rows.shape[0] - current).mean() * _tasksSeen;
        loss.backward();
        _generatorOptimizer.step();
        _replayed = null;
    }

    /// <inheritdoc/>
    public override void AfterTask(ContinualTrainingContext context)
    {
        _generator!.eval();
        _tasksSeen++;
        _outputsSeen = context.State.OutputSize;
        _headsSeen = Math.Max(context.State.TaskIds.Count, 1);
        _previousGenerator?.Dispose();
        _previousClassifier?.Dispose();
        _previousGenerator = null;
        _previousClassifier = null;
        _generatorOptimizer?.Dispose();
        _generatorOptimizer = null;
        _random?.Dispose();
        _random = null;
    }

    /// <inheritdoc/>
    public override void SaveState(ContinualState state)
    {
        state.Version = StateVersion;
        state.Set("tasks", _tasksSeen);
        state.Set("outputs", _outputsSeen);
        state.Set("heads", _headsSeen);
        state.Set("bernoulli", _bernoulli);
        state.Set("has generator", _generator is not null);
        _generator?.Save(state, "generator/");
    }

    /// <inheritdoc/>
    public override void LoadState(ContinualState state)
    {
        if (state.Version != StateVersion) throw new ContinualModelFormatException($"The generative replay state has version {state.Version}; this library reads version {StateVersion}.");
        _tasksSeen = state.GetInt32("tasks", 0, ModelIO.MaxCount);
        _outputsSeen = state.GetInt32("outputs", 0, ModelIO.MaxCount);
        _headsSeen = state.GetInt32("heads", 0, ModelIO.MaxCount);
        _bernoulli = state.GetBoolean("bernoulli");
        _generator = state.GetBoolean("has generator") ? VariationalAutoencoder.Load(state, "generator/") : null;
        _generator?.eval();
    }

    internal override void LoadLegacyState(BinaryReader reader, int formatVersion)
    {
        int version = reader.ReadInt32();
        if (version != StateVersion) throw new ContinualModelFormatException($"The generative replay state has version {version}; this library reads version {StateVersion}.");
        _tasksSeen = ModelIO.ReadCount(reader, "generative replay tasks");
        _outputsSeen = ModelIO.ReadCount(reader, "generative replay outputs");
        _headsSeen = ModelIO.ReadCount(reader, "generative replay heads");
        _bernoulli = reader.ReadBoolean();
        _generator = reader.ReadBoolean() ? VariationalAutoencoder.ReadLegacy(reader) : null;
        _generator?.eval();
    }

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>
    {
        ["generator parameters"] = _generator?.parameters().Sum(p => p.numel()) ?? 0,
        ["stored rows"] = 0,
    };
}
