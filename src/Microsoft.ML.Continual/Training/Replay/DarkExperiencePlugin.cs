using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// Dark Experience Replay, DER and DER++ (Buzzega, Boschini, Porrello, Abati and Calderara 2020, "Dark Experience for
/// General Continual Learning: a Strong, Simple Baseline", NeurIPS): a reservoir memory of inputs with the logits the
/// network gave them when they were stored (and their labels, for DER++), updated at every step; the network is asked to
/// keep giving those logits.
/// </summary>
/// <remarks>
/// <para>DER (their eq. 4): L = CE(f(x), y) + α · E_{(x', z') ~ M} ‖f(x') − z'‖²₂; DER++ (eq. 6) adds β · E_{(x'', y'') ~ M}
/// CE(f(x''), y'') on a second, independent sample of the memory. The squared distance is averaged over the sample's rows and
/// outputs (PyTorch's <c>mse_loss</c>, as Mammoth's <c>models/der.py</c>). After the optimizer step, the batch's rows join the
/// memory by reservoir sampling with the logits of that step's forward pass (taken before the step, as in the authors' code).</para>
/// <para>When the head grows (new classes), stored logits keep their width: the distance compares only the outputs a row had
/// when it was stored. With a key label of a known count (the library's streams), the head has every class from the first
/// task on, as the authors' fixed ten-output head does.</para>
/// <para>The memory (rows, labels, logits, widths, rows seen) is saved in the model and continues after load and refit.</para>
/// </remarks>
public sealed class DarkExperiencePlugin : ContinualPlugin
{
    private ReservoirBuffer? _buffer;
    private Generator? _sampling;
    private Random? _reservoir;
    private Tensor? _pendingLogits, _logitRows;

    /// <summary>The memory budget in rows. Default 500.</summary>
    public int MemorySize { get; set; } = 500;

    /// <summary>α: the weight of the logit-matching term. Default 0.5 (the paper's most common value across its MNIST settings).</summary>
    public double Alpha { get; set; } = 0.5;

    /// <summary>β: the weight of DER++'s cross-entropy on a second memory sample; 0 (default) is DER.</summary>
    public double Beta { get; set; }

    /// <summary>Rows drawn from the memory for each term at each step (Mammoth's <c>minibatch_size</c>); 0 (default): as many
    /// as the task batch (<see cref="ContinualTrainerOptions.BatchSize"/>), which is what most of Mammoth's best arguments use.</summary>
    public int MinibatchSize { get; set; }

    internal ReservoirBuffer? Buffer => _buffer;

    /// <inheritdoc/>
    public override void Validate()
    {
        if (MemorySize is < 1 or > 10_000_000) throw new ArgumentOutOfRangeException(nameof(MemorySize), "Option MemorySize must be in [1, 10,000,000].");
        if (!(Alpha >= 0) || double.IsInfinity(Alpha)) throw new ArgumentOutOfRangeException(nameof(Alpha), "Option Alpha must be non-negative and finite.");
        if (!(Beta >= 0) || double.IsInfinity(Beta)) throw new ArgumentOutOfRangeException(nameof(Beta), "Option Beta must be non-negative and finite.");
        if (MinibatchSize is < 0 or > 1 << 20) throw new ArgumentOutOfRangeException(nameof(MinibatchSize), "Option MinibatchSize must be in [0, 1,048,576] (0: the batch size).");
    }

    /// <inheritdoc/>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        _buffer ??= new ReservoirBuffer(MemorySize);
        _buffer.MoveTo(context.Device);
        _sampling = new Generator((ulong)(context.TaskSeed ^ 0x4445_5253), CPU);
        _reservoir = SavableRandom.For(context.Options.ContinueAcrossFits, context.TaskSeed ^ 0x4445_5252);
    }

    /// <summary>The logit-matching sample (weight 0: its loss is the squared distance, added in <see cref="BeforeBackward"/>)
    /// and, for DER++, the labelled sample (weight β: the loop adds its cross-entropy).</summary>
    public override IEnumerable<ContinualBatch> ExtraBatches(ContinualTrainingContext context, ContinualBatch taskBatch)
    {
        if (_buffer is null || _buffer.Count == 0) yield break;
        if (Alpha > 0 && _buffer.Sample(ReplayRows(context), _sampling!) is Tensor logitRows)
        {
            _logitRows = logitRows;
            yield return _buffer.Select(logitRows, weight: 0);
        }
        if (Beta > 0 && _buffer.Sample(ReplayRows(context), _sampling!) is Tensor labelRows) yield return _buffer.Select(labelRows, Beta);
    }

    private int ReplayRows(ContinualTrainingContext context) => MinibatchSize > 0 ? MinibatchSize : context.Options.BatchSize;

    /// <summary>α · the mean squared distance between the outputs for the logit sample and the logits stored with it.</summary>
    public override void BeforeBackward(ContinualTrainingContext context, ContinualStep step)
    {
        _pendingLogits = step.TaskOutputs?.detach();
        if (Alpha == 0) return;
        var matched = step.ExtraBatchesOf(this).FirstOrDefault(e => e.Batch.Weight == 0);
        if (matched is null || _logitRows is null) return;
        // Data-parallel: the step holds this process's share of the sample's rows (a contiguous part of them).
        long start = DataParallel.ShareStart(_logitRows.shape[0], context.Communicator);
        Tensor rows = _logitRows.narrow(0, start, matched.Batch.Rows);
        step.AddLoss("logit matching", LogitDistance(matched.Outputs, _buffer!.Logits!.index_select(0, rows), _buffer.Widths!.index_select(0, rows)) * Alpha, matched);
        _logitRows = null;
    }

    /// <summary>‖f(x') − z'‖² averaged over the rows and each row's stored outputs (all of them when no head has grown since).</summary>
    internal static Tensor LogitDistance(Tensor outputs, Tensor stored, Tensor widths)
    {
        long width = Math.Min(outputs.shape[1], stored.shape[1]);
        Tensor now = outputs.narrow(1, 0, width), then = stored.narrow(1, 0, width);
        bool allFull = widths.min().item<long>() >= outputs.shape[1] && stored.shape[1] == outputs.shape[1];
        if (allFull) return nn.functional.mse_loss(now, then);
        Tensor valid = arange(width, device: outputs.device).unsqueeze(0).lt(widths.unsqueeze(1)).to_type(outputs.dtype);
        return ((now - then).square() * valid).sum() / valid.sum().clamp_min(1);
    }

    /// <inheritdoc/>
    public override void AfterStep(ContinualTrainingContext context)
    {
        if (context.CurrentBatch is ContinualBatch batch && _pendingLogits is not null) _buffer!.Add(batch, _pendingLogits, _reservoir!);
        _pendingLogits = null;
    }

    /// <summary>Supported: the reservoir is updated at every step and its size is fixed, so a boundary changes nothing.</summary>
    public override string? WhyNotBoundariesInsideFit => null;

    /// <summary>Nothing to consolidate: the memory is already up to date.</summary>
    public override void AtBoundary(ContinualTrainingContext context) { }

    /// <inheritdoc/>
    public override void AfterTask(ContinualTrainingContext context)
    {
        _sampling?.Dispose();
        _sampling = null;
        _buffer?.MoveTo(CPU);
    }

    /// <inheritdoc/>
    public override void SaveState(ContinualState state)
    {
        ReservoirBuffer.SaveOptional(_buffer, state);
    }

    /// <inheritdoc/>
    public override void LoadState(ContinualState state) =>
        _buffer = ReservoirBuffer.LoadOptional(state, MemorySize);

    /// <inheritdoc/>
    public override void SaveTaskProgress(ContinualState state)
        => SavableRandom.SaveProgress(state, _sampling, _reservoir);

    /// <inheritdoc/>
    public override void LoadTaskProgress(ContinualState state)
        => _reservoir = SavableRandom.LoadProgress(state, _sampling, _reservoir);

    /// <summary>False: the memory and its reservoir draws change at every step, which a checkpoint does not capture.</summary>
    public override bool SupportsCheckpoints => false;

    /// <summary>Supported: the memory (with its logits) is the plugin's state, and its two generators are its progress.</summary>
    public override string? WhyNotContinuesAcrossFits => null;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>
    {
        ["memory rows"] = _buffer?.Count ?? 0,
        ["rows offered"] = _buffer?.Seen ?? 0,
    };
}
