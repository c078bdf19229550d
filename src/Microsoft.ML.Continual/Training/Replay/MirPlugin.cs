using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// Maximally Interfered Retrieval (Aljundi, Caccia, Belilovsky, Caccia, Lin, Charlin and Tuytelaars 2019, "Online Continual
/// Learning with Maximally Interfered Retrieval", NeurIPS): experience replay that, at each step, replays the memories a
/// virtual step on the incoming batch would hurt most.
/// </summary>
/// <remarks>
/// <para>At each step: <see cref="Candidates"/> rows are drawn from the memory; the virtual parameters
/// θ_v = θ − η ∇_θ L(batch) (one SGD step of the incoming batch's loss, η the options' learning rate, their eq. 1) are made; each
/// candidate's score is ℓ(f_{θ_v}(x), y) − ℓ(f_θ(x), y) (their eq. 2, "ER-MIR"); the <see cref="MinibatchSize"/> highest are
/// replayed with the incoming batch (plain cross-entropy, weight 1). The memory is a reservoir updated at every step (their
/// code's <c>Buffer.add_reservoir</c>). Cost per step: one extra forward and backward of the batch and two forwards of the
/// candidates.</para>
/// </remarks>
public sealed class MirPlugin : ContinualPlugin
{
    private ReservoirBuffer? _buffer;
    private Generator? _sampling;
    private Random? _reservoir;
    private ContinualNetwork? _virtual;
    private bool _continuing;

    /// <summary>The memory budget in rows. Default 500.</summary>
    public int MemorySize { get; set; } = 500;

    /// <summary>Rows drawn from the memory as candidates at each step; 0 (default): five times <see cref="MinibatchSize"/>
    /// (the authors' MNIST setting is 50 candidates for 10 replayed).</summary>
    public int Candidates { get; set; }

    /// <summary>Candidates replayed at each step, the most interfered; 0 (default): as many as the task batch
    /// (<see cref="ContinualTrainerOptions.BatchSize"/>; the authors replay 10 with batches of 10).</summary>
    public int MinibatchSize { get; set; }

    private int Replayed(ContinualTrainingContext context) => MinibatchSize > 0 ? MinibatchSize : context.Options.BatchSize;

    private int CandidateCount(ContinualTrainingContext context) => Candidates > 0 ? Candidates : 5 * Replayed(context);

    internal ReservoirBuffer? Buffer => _buffer;

    /// <inheritdoc/>
    public override void Validate()
    {
        if (MemorySize is < 1 or > 10_000_000) throw new ArgumentOutOfRangeException(nameof(MemorySize), "Option MemorySize must be in [1, 10,000,000].");
        if (Candidates is < 0 or > 1 << 20) throw new ArgumentOutOfRangeException(nameof(Candidates), "Option Candidates must be in [0, 1,048,576] (0: five times MinibatchSize).");
        if (MinibatchSize is < 0 or > 1 << 20) throw new ArgumentOutOfRangeException(nameof(MinibatchSize), "Option MinibatchSize must be in [0, 1,048,576] (0: the batch size).");
        if (Candidates > 0 && MinibatchSize > Candidates) throw new ArgumentOutOfRangeException(nameof(MinibatchSize), "Option MinibatchSize must not exceed Candidates.");
    }

    /// <inheritdoc/>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        _buffer ??= new ReservoirBuffer(MemorySize);
        _buffer.MoveTo(context.Device);
        _sampling = new Generator((ulong)(context.TaskSeed ^ 0x4D49_5252), CPU);
        _reservoir = SavableRandom.For(context.Options.ContinueAcrossFits, context.TaskSeed ^ 0x4D49_5253);
        _continuing = context.Options.ContinueAcrossFits;
        _virtual?.Dispose();
        _virtual = null;
    }

    /// <summary>The most interfered candidates, by a virtual step on the incoming batch.</summary>
    public override IEnumerable<ContinualBatch> ExtraBatches(ContinualTrainingContext context, ContinualBatch taskBatch)
    {
        if (_buffer is null || _buffer.Sample(CandidateCount(context), _sampling!) is not Tensor candidates) yield break;
        Tensor chosen = MostInterfered(context, taskBatch, _buffer.Select(candidates, weight: 1), candidates);
        yield return _buffer.Select(chosen, weight: 1);
    }

    private Tensor MostInterfered(ContinualTrainingContext context, ContinualBatch taskBatch, ContinualBatch sample, Tensor candidates)
    {
        int replayed = Replayed(context);
        if (candidates.shape[0] <= replayed) return candidates;
        var network = context.Network;
        var parameters = network.OrderedParameters().Select(p => (Tensor)p.Value).ToList();
        // ∇θ L(batch), without touching the parameters' own gradients (the real step's are accumulated by the loop).
        Tensor loss = context.Loss(taskBatch);
        var gradients = autograd.grad([loss], parameters, allow_unused: true);
        // The virtual network's fresh layers are overwritten at once. When a pass continues across fits, each fit makes
        // it again, so its draws must not move the fit's generator (elsewhere they do, as they always have).
        if (_virtual is null)
        {
            using var scratch = _continuing ? new Generator(0, CPU) : null;
            _virtual = network.Copy(scratch ?? context.Random);
        }
        _virtual.TrunkWeightView = network.TrunkWeightView;
        using (no_grad())
        {
            var virtualParameters = _virtual.OrderedParameters();
            double rate = context.Options.LearningRate;
            for (int i = 0; i < parameters.Count; i++)
            {
                virtualParameters[i].Value.copy_(parameters[i]);
                if (gradients[i] is Tensor g && !g.IsInvalid) virtualParameters[i].Value.add_(g, alpha: -rate);
            }
            Tensor before = PerRowLoss(context, network, sample), after = PerRowLoss(context, _virtual, sample);
            Tensor top = (after - before).topk(replayed).indexes;
            return candidates.index_select(0, top);
        }
    }

    private static Tensor PerRowLoss(ContinualTrainingContext context, ContinualNetwork network, ContinualBatch batch)
    {
        Tensor logits = context.MaskLogits(network.Forward(batch.Features, batch.Heads), batch.Heads);
        return context.Kind switch
        {
            ContinualPredictionKind.Multiclass => nn.functional.cross_entropy(logits, batch.Targets, reduction: nn.Reduction.None),
            ContinualPredictionKind.Binary => nn.functional.binary_cross_entropy_with_logits(logits.squeeze(1), batch.Targets, reduction: nn.Reduction.None),
            _ => (logits.squeeze(1) - batch.Targets).square(),
        };
    }

    /// <summary>The batch joins the memory (reservoir sampling).</summary>
    public override void AfterStep(ContinualTrainingContext context)
    {
        if (context.CurrentBatch is ContinualBatch batch) _buffer!.Add(batch, null, _reservoir!);
    }

    /// <summary>Supported: the reservoir is updated at every step and its size is fixed, so a boundary changes nothing.</summary>
    public override string? WhyNotBoundariesInsideFit => null;

    /// <summary>Nothing to consolidate: the memory is already up to date.</summary>
    public override void AtBoundary(ContinualTrainingContext context) { }

    /// <inheritdoc/>
    public override void AfterTask(ContinualTrainingContext context)
    {
        ReleaseTaskResources();
        _buffer?.MoveTo(CPU);
    }

    internal override void ReleaseTaskResources()
    {
        _sampling?.Dispose();
        _sampling = null;
        _virtual?.Dispose();
        _virtual = null;
    }

    /// <inheritdoc/>
    public override void SaveState(ContinualState state)
    {
        ReservoirBuffer.SaveOptional(_buffer, state);
    }

    /// <inheritdoc/>
    public override void LoadState(ContinualState state) =>
        _buffer = ReservoirBuffer.LoadOptional(state, MemorySize);

    /// <summary>False: the memory changes at every step, which a checkpoint does not capture.</summary>
    public override bool SupportsCheckpoints => false;

    /// <summary>Supported: the memory is the plugin's state, and its two generators are its progress.</summary>
    public override string? WhyNotContinuesAcrossFits => null;

    /// <summary>The memory sampler's and the reservoir's positions (a fit that continues a pass across fits).</summary>
    public override void SaveTaskProgress(ContinualState state) => SavableRandom.SaveProgress(state, _sampling, _reservoir);

    /// <inheritdoc/>
    public override void LoadTaskProgress(ContinualState state) => _reservoir = SavableRandom.LoadProgress(state, _sampling, _reservoir);

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>
    {
        ["memory rows"] = _buffer?.Count ?? 0,
        ["rows offered"] = _buffer?.Seen ?? 0,
    };
}
