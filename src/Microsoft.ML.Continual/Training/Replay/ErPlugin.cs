using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// ER, experience replay with a memory updated at every step (Chaudhry et al. 2019, "On Tiny Episodic Memories in
/// Continual Learning", arXiv:1902.10486; the ER of the Dark Experience Replay paper and of Mammoth's <c>models/er.py</c>):
/// each step trains on the incoming batch joined with a sample of the memory, and the incoming rows then join the memory
/// by reservoir sampling. It needs no task boundaries, so it is the replay of task-free streams; <see cref="ReplayPlugin"/>
/// instead fills its memory at the end of each fit and mixes a share of each batch.
/// </summary>
/// <remarks>
/// L = 1/(b + m) · [Σ_{(x,y) ∈ B} CE(f(x), y) + Σ_{(x',y') ∈ M_m} CE(f(x'), y')], B the incoming batch of b rows and M_m a
/// uniform sample of m memory rows (without replacement; all of them while the memory holds fewer): the mean loss over the
/// concatenated batch, as the authors' code. The memory is a reservoir (Vitter 1985, algorithm R) over every row offered,
/// across fits: after n rows each is held with probability capacity / n. Its size never grows past
/// <see cref="MemorySize"/>, however many fits or rows. In a data-parallel fit both terms are weighted by the whole
/// batches' rows, so the processes' terms add up to the joined mean.
/// </remarks>
public sealed class ErPlugin : ContinualPlugin
{
    private ReservoirBuffer? _buffer;
    private Generator? _sampling;
    private Random? _reservoir;

    /// <summary>The memory budget in rows. Default 500.</summary>
    public int MemorySize { get; set; } = 500;

    /// <summary>Rows drawn from the memory at each step; 0 (default): as many as the incoming batch (<see cref="ContinualTrainerOptions.BatchSize"/>).</summary>
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
        _buffer ??= new ReservoirBuffer(MemorySize);
        _buffer.MoveTo(context.Device);
        _sampling = new Generator((ulong)(context.TaskSeed ^ 0x4552_5331), CPU);
        _reservoir = SavableRandom.For(context.Options.ContinueAcrossFits, context.TaskSeed ^ 0x4552_5332);
    }

    /// <summary>The memory sample, weighted m / (b + m): with the task term scaled by b / (b + m) (<see cref="BeforeBackward"/>) the loss is the mean over both.</summary>
    public override IEnumerable<ContinualBatch> ExtraBatches(ContinualTrainingContext context, ContinualBatch taskBatch)
    {
        if (_buffer is null || _buffer.Sample(MinibatchSize > 0 ? MinibatchSize : context.Options.BatchSize, _sampling!) is not Tensor rows) yield break;
        double weight = (double)rows.shape[0] / (rows.shape[0] + taskBatch.Rows);
        yield return _buffer.Select(rows, weight);
    }

    /// <summary>Scales the incoming batch's term by b / (b + m) when a memory sample was drawn.</summary>
    public override void BeforeBackward(ContinualTrainingContext context, ContinualStep step)
    {
        var replayed = step.ExtraBatchesOf(this).FirstOrDefault();
        if (replayed is null || step.TaskOutputs is not Tensor outputs) return;
        // The whole batches' rows (every process's), as the memory term's weight: the processes' terms add up to the joined mean.
        long incoming = context.CurrentBatch?.Rows ?? step.TaskBatch.Rows;
        double share = (double)incoming / (incoming + replayed.FullRows);
        step.ReplaceTaskLoss(context.Loss(outputs, step.TaskBatch) * share);
    }

    /// <summary>The incoming batch joins the memory (reservoir sampling), after the step as the authors' code.</summary>
    public override void AfterStep(ContinualTrainingContext context)
    {
        if (context.CurrentBatch is ContinualBatch batch) _buffer!.Add(batch, null, _reservoir!);
    }

    /// <summary>Supported: the reservoir is updated at every step and its size is fixed, so a boundary changes nothing.</summary>
    public override string? WhyNotBoundariesInsideFit => null;

    /// <summary>Nothing to consolidate: the memory is already up to date.</summary>
    public override void AtBoundary(ContinualTrainingContext context) { }

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
    public override void SaveState(ContinualState state) => ReservoirBuffer.SaveOptional(_buffer, state);

    /// <inheritdoc/>
    public override void LoadState(ContinualState state) => _buffer = ReservoirBuffer.LoadOptional(state, MemorySize);

    /// <summary>False: the memory changes at every step, which a checkpoint does not capture.</summary>
    public override bool SupportsCheckpoints => false;

    /// <summary>Supported: the memory is the plugin's state, and its two generators are its progress.</summary>
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
