using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// ER-ACE (Caccia, Aljundi, Asadi, Tuytelaars, Pineau and Belilovsky 2022, "New Insights on Reducing Abrupt Representation
/// Change in Online Continual Learning", ICLR): experience replay with an asymmetric cross-entropy, so that the incoming
/// classes do not push the logits of the classes in the memory down.
/// </summary>
/// <remarks>
/// <para>On the incoming batch, from the second task on, the cross-entropy is taken over the classes present in the batch and
/// the classes not seen yet only (the logits of classes seen before but absent from the batch are masked out; their
/// eq. 5, "ACE", as Mammoth's <c>models/er_ace.py</c>); on a batch drawn from the memory it is the plain cross-entropy over
/// every class. The memory is a reservoir updated at every step (as their code). Multi-head models keep their heads'
/// masks in both terms.</para>
/// <para>Task-free (boundaries inside a fit, <see cref="ContinualTrainerOptions.Boundaries"/>): "from the second task on"
/// becomes "after the first boundary", the authors' <c>t &gt; 0</c>, whether the boundary ended a fit or was passed inside
/// one; nothing else depends on tasks, so a boundary changes nothing else and the state stays the memory's size and one
/// flag per class. With <see cref="ContinualTrainerOptions.ContinueAcrossFits"/> the memory is the state and its two
/// generators are the progress, as <see cref="ErPlugin"/>'s.</para>
/// </remarks>
public sealed class ErAcePlugin : ContinualPlugin
{
    private ReservoirBuffer? _buffer;
    private Generator? _sampling;
    private Random? _reservoir;
    private bool[] _seen = [];

    /// <summary>The memory budget in rows. Default 500.</summary>
    public int MemorySize { get; set; } = 500;

    /// <summary>Rows drawn from the memory at each step; 0 (default): as many as the task batch (<see cref="ContinualTrainerOptions.BatchSize"/>), as the authors' 10 + 10.</summary>
    public int MinibatchSize { get; set; }

    /// <inheritdoc/>
    public override void Validate()
    {
        if (MemorySize is < 1 or > 10_000_000) throw new ArgumentOutOfRangeException(nameof(MemorySize), "Option MemorySize must be in [1, 10,000,000].");
        if (MinibatchSize is < 0 or > 1 << 20) throw new ArgumentOutOfRangeException(nameof(MinibatchSize), "Option MinibatchSize must be in [0, 1,048,576] (0: the batch size).");
    }

    /// <inheritdoc/>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        if (context.Kind != ContinualPredictionKind.Multiclass)
            throw new NotSupportedException("ER-ACE's asymmetric cross-entropy masks classes: it needs a classification label with several classes.");
        _buffer ??= new ReservoirBuffer(MemorySize);
        _buffer.MoveTo(context.Device);
        _sampling = new Generator((ulong)(context.TaskSeed ^ 0x4552_4143), CPU);
        _reservoir = SavableRandom.For(context.Options.ContinueAcrossFits, context.TaskSeed ^ 0x4552_4145);
        if (_seen.Length < context.OutputSize) Array.Resize(ref _seen, context.OutputSize);
    }

    /// <summary>A batch from the memory, trained with the plain cross-entropy (weight 1, as the authors add it).</summary>
    public override IEnumerable<ContinualBatch> ExtraBatches(ContinualTrainingContext context, ContinualBatch taskBatch)
    {
        if (!PastFirstBoundary(context) || _buffer is null || _buffer.Sample(MinibatchSize > 0 ? MinibatchSize : context.Options.BatchSize, _sampling!) is not Tensor rows) yield break;
        yield return _buffer.Select(rows, weight: 1);
    }

    /// <summary>The incoming batch's cross-entropy over its own classes and the classes not seen yet.</summary>
    public override void BeforeBackward(ContinualTrainingContext context, ContinualStep step)
    {
        long[] present = step.TaskBatch.Targets.unique().output.cpu().data<long>().ToArray();
        foreach (long c in present) _seen[c] = true;
        if (!PastFirstBoundary(context) || step.TaskOutputs is not Tensor logits) return;
        var keep = new bool[logits.shape[1]];
        foreach (long c in present) keep[c] = true;
        // As the authors' code: while some class is not seen yet, every class from the highest one seen on stays unmasked.
        int highestSeen = Array.LastIndexOf(_seen, true);
        if (highestSeen < keep.Length - 1)
            for (int c = Math.Max(highestSeen, 0); c < keep.Length; c++) keep[c] = true;
        using Tensor mask = tensor(keep).to(logits.device).logical_not().unsqueeze(0);
        Tensor masked = context.MaskLogits(logits, step.TaskBatch.Heads).masked_fill(mask, CachedScalars.FloatMinValue);
        step.ReplaceTaskLoss(nn.functional.cross_entropy(masked, step.TaskBatch.Targets));
    }

    /// <summary>The authors' t &gt; 0: an earlier fit ended a task, or a boundary was passed inside this task.</summary>
    private static bool PastFirstBoundary(ContinualTrainingContext context) => context.TaskIndex > 0 || context.BoundariesPassed > 0;

    /// <summary>The batch joins the memory (reservoir sampling).</summary>
    public override void AfterStep(ContinualTrainingContext context)
    {
        if (context.CurrentBatch is ContinualBatch batch) _buffer!.Add(batch, null, _reservoir!);
    }

    /// <inheritdoc/>
    public override void AfterTask(ContinualTrainingContext context) => ReleaseTaskResources();

    /// <summary>Also at the end of a fit that continues a pass (after its progress is captured): the sampler is freed and
    /// the memory goes back to the CPU.</summary>
    internal override void ReleaseTaskResources()
    {
        _sampling?.Dispose();
        _sampling = null;
        _buffer?.MoveTo(CPU);
    }

    /// <inheritdoc/>
    public override void SaveState(ContinualState state)
    {
        ReservoirBuffer.SaveOptional(_buffer, state);
        using var seen = tensor(_seen);
        state.Set("classes seen", seen);
    }

    /// <inheritdoc/>
    public override void LoadState(ContinualState state)
    {
        _buffer = ReservoirBuffer.LoadOptional(state, MemorySize);
        using var seen = state.GetTensor("classes seen");
        if (seen.dtype != ScalarType.Bool || seen.dim() != 1) throw new ContinualModelFormatException("ER-ACE's classes seen must be a vector of Booleans.");
        _seen = seen.data<bool>().ToArray();
    }

    /// <summary>False: the memory changes at every step, which a checkpoint does not capture.</summary>
    public override bool SupportsCheckpoints => false;

    /// <summary>Supported: the memory is updated at every step and its size is fixed; a boundary only turns the asymmetric
    /// loss on (the first one).</summary>
    public override string? WhyNotBoundariesInsideFit => null;

    /// <summary>Nothing to consolidate: the memory is already up to date.</summary>
    public override void AtBoundary(ContinualTrainingContext context) { }

    /// <summary>Supported: the memory and the classes seen are the plugin's state, and its two generators are its progress.</summary>
    public override string? WhyNotContinuesAcrossFits => null;

    /// <summary>The memory sampler's and the reservoir's positions (a fit that continues a pass across fits).</summary>
    public override void SaveTaskProgress(ContinualState state)
        => SavableRandom.SaveProgress(state, _sampling, _reservoir);

    /// <inheritdoc/>
    public override void LoadTaskProgress(ContinualState state)
        => _reservoir = SavableRandom.LoadProgress(state, _sampling, _reservoir);

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>
    {
        ["memory rows"] = _buffer?.Count ?? 0,
        ["rows offered"] = _buffer?.Seen ?? 0,
    };
}
