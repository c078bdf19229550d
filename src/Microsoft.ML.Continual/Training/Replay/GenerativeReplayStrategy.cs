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

    public VariationalAutoencoder(int inputSize, int hiddenSize, int latentSize) : base(nameof(VariationalAutoencoder))
    {
        (InputSize, HiddenSize, LatentSize) = (inputSize, hiddenSize, latentSize);
        encoder = nn.Sequential(nn.Linear(inputSize, hiddenSize), nn.ReLU(), nn.Linear(hiddenSize, hiddenSize), nn.ReLU());
        mean = nn.Linear(hiddenSize, latentSize);
        logVariance = nn.Linear(hiddenSize, latentSize);
        decoder = nn.Sequential(nn.Linear(latentSize, hiddenSize), nn.ReLU(), nn.Linear(hiddenSize, hiddenSize), nn.ReLU(), nn.Linear(hiddenSize, inputSize));
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

    public VariationalAutoencoder Copy()
    {
        var copy = new VariationalAutoencoder(InputSize, HiddenSize, LatentSize);
        copy.to(parameters().First().device);
        var source = named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var _ = no_grad();
        foreach (var (name, target) in copy.named_parameters()) target.copy_(source[name]);
        return copy;
    }

    public void Write(BinaryWriter writer)
    {
        writer.Write(InputSize);
        writer.Write(HiddenSize);
        writer.Write(LatentSize);
        foreach (var (_, parameter) in named_parameters()) TensorIO.Write(writer, parameter);
    }

    public static VariationalAutoencoder Read(BinaryReader reader)
    {
        int input = ModelIO.ReadCount(reader, "generator input"), hidden = ModelIO.ReadCount(reader, "generator hidden"), latent = ModelIO.ReadCount(reader, "generator latent");
        if (input == 0 || hidden == 0 || latent == 0 || (long)input * hidden > ModelIO.MaxCount)
            throw new ContinualModelFormatException($"The generator's sizes ({input}, {hidden}, {latent}) are out of range.");
        var vae = new VariationalAutoencoder(input, hidden, latent);
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
/// Generative replay (<see cref="GenerativeReplayTrainer"/>): a VAE learns the inputs of every task so far (the current
/// batch plus its own replayed samples); from the second task on, each step adds samples of the previous generator,
/// labelled by the previous classifier (soft targets or its argmax), to the classifier's loss.
/// </summary>
internal sealed class GenerativeReplayStrategy : ContinualStrategy
{
    private const int StateVersion = 1;
    private readonly GenerativeReplayTrainer.Options _options;
    private VariationalAutoencoder? _generator;
    private bool _bernoulli;
    private int _tasksSeen, _outputsSeen, _headsSeen;

    // One task's working state.
    private VariationalAutoencoder? _previousGenerator;
    private ContinualNetwork? _previousClassifier;
    private optim.Optimizer? _generatorOptimizer;
    private Generator? _random;
    private Tensor? _replayed;

    public GenerativeReplayStrategy(GenerativeReplayTrainer.Options options) => _options = options;

    // The generator and its optimizer change at every step; they are not part of a within-task checkpoint.
    public override bool SupportsCheckpoints => false;

    internal VariationalAutoencoder? GeneratorModel => _generator;

    public override void BeforeTask(TrainingContext context)
    {
        bool inUnitRange;
        using (no_grad()) inUnitRange = context.Task.Features.min().item<float>() >= 0 && context.Task.Features.max().item<float>() <= 1;
        if (_generator is null)
        {
            // Bernoulli likelihood when every input lies in [0, 1] (e.g. pixel intensities), else Gaussian.
            _bernoulli = inUnitRange;
            _generator = new VariationalAutoencoder((int)context.Task.Features.shape[1], _options.GeneratorHiddenSize, _options.LatentSize);
        }
        else if (_bernoulli && !inUnitRange)
            throw new ContinualDataException(context.Options.FeatureColumnName,
                "The generator was trained on features in [0, 1] (a Bernoulli likelihood) and this task has features outside that range; scale them as the first task's were.");
        _generator.to(context.Device);
        _generator.train();
        _generatorOptimizer = new KeptScalarAdam(_generator.parameters(), _options.GeneratorLearningRate ?? _options.LearningRate, weightDecay: 0);
        _random = new Generator((ulong)(context.TaskSeed ^ 0x4447_5250), CPU);
        if (_tasksSeen == 0) return;
        _previousGenerator = _generator.Copy();
        _previousGenerator.eval();
        _previousClassifier = context.Network.Copy();
        _previousClassifier.MoveTo(context.Device);
        _previousClassifier.eval();
    }

    /// <summary>The replay term, weighted t − 1 against the current task's loss (t = tasks including this one): van de Ven
    /// et al.'s (1/t) L_current + (1 − 1/t) L_replay, scaled by t.</summary>
    public override Tensor? Penalty(TrainingContext context)
    {
        if (_previousGenerator is null || _previousClassifier is null || context.CurrentBatch is not TrainingBatch batch) return null;
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
        double temperature = _options.DistillationTemperature;
        Tensor loss = context.State.Kind switch
        {
            ContinualPredictionKind.Multiclass when _options.Distillation => DistillationLoss(student, teacher, temperature),
            ContinualPredictionKind.Multiclass => nn.functional.cross_entropy(student, teacher.argmax(1)),
            ContinualPredictionKind.Binary => nn.functional.binary_cross_entropy_with_logits(student.squeeze(1),
                _options.Distillation ? (teacher.squeeze(1) / temperature).sigmoid() : teacher.squeeze(1).gt(0).to(float32)),
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
    private Tensor OldOutputs(TrainingContext context, Tensor logits, Tensor? heads) =>
        Masked(context, logits.narrow(1, 0, Math.Min(_outputsSeen, (int)logits.shape[1])), heads);

    /// <summary>Logits with the classes a row's head does not predict pushed far down (multi-head models only).</summary>
    private static Tensor Masked(TrainingContext context, Tensor logits, Tensor? heads)
    {
        if (heads is null || context.State.AllowedOutputs(logits.device) is not Tensor allowed) return logits;
        Tensor mask = allowed.index_select(0, heads).narrow(1, 0, logits.shape[1]).logical_not();
        return logits.masked_fill(mask, CachedScalars.MinusOneBillion);
    }

    /// <summary>One generator step on the current batch and, from the second task on, the replayed samples (same weighting).</summary>
    public override void AfterStep(TrainingContext context)
    {
        if (context.CurrentBatch is not TrainingBatch batch) return;
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

    public override void AfterTask(TrainingContext context)
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

    public override void SaveState(BinaryWriter writer)
    {
        writer.Write(StateVersion);
        writer.Write(_tasksSeen);
        writer.Write(_outputsSeen);
        writer.Write(_headsSeen);
        writer.Write(_bernoulli);
        writer.Write(_generator is not null);
        _generator?.Write(writer);
    }

    public override void LoadState(BinaryReader reader, int formatVersion)
    {
        int version = reader.ReadInt32();
        if (version != StateVersion) throw new ContinualModelFormatException($"The generative replay state has version {version}; this library reads version {StateVersion}.");
        _tasksSeen = ModelIO.ReadCount(reader, "generative replay tasks");
        _outputsSeen = ModelIO.ReadCount(reader, "generative replay outputs");
        _headsSeen = ModelIO.ReadCount(reader, "generative replay heads");
        _bernoulli = reader.ReadBoolean();
        _generator = reader.ReadBoolean() ? VariationalAutoencoder.Read(reader) : null;
        _generator?.eval();
    }

    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>
    {
        ["generator parameters"] = _generator?.parameters().Sum(p => p.numel()) ?? 0,
        ["stored rows"] = 0,
    };
}
