using Microsoft.ML.Continual.Internal;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// Everything a continual model is: its frozen options, its plugins and their state, the network, the label
/// vocabulary, the task ids seen and what each head may predict. A state is never changed once a
/// <see cref="ContinualTransformer"/> holds it; training works on a copy (<see cref="TrainingLoop"/>).
/// </summary>
internal sealed class ContinualModelState : IDisposable
{
    public required string TrainerName { get; init; }
    public required ContinualTrainerOptions Options { get; init; }
    public required PluginList Plugins { get; init; }
    public required ContinualNetwork Network { get; set; }
    public required ContinualPredictionKind Kind { get; init; }
    public required int FeatureSize { get; init; }
    public required ValueKind LabelKind { get; init; }
    /// <summary>Classes, for multiclass models; null otherwise.</summary>
    public LabelVocabulary? Classes { get; init; }
    /// <summary>The task-id column's kind, when the model is multi-head.</summary>
    public ValueKind? TaskIdKind { get; init; }
    /// <summary>Task ids in head order (canonical text), when the model is multi-head.</summary>
    public List<string> TaskIds { get; init; } = new();
    /// <summary>For multiclass multi-head models: which classes each head may predict.</summary>
    public List<bool[]> HeadClasses { get; init; } = new();
    public int TasksSeen { get; set; }
    /// <summary>The format version the model was read with (the current one for a model made in this process).</summary>
    public int FormatVersion { get; init; } = ModelFormat.CurrentVersion;
    public long RowsSeen { get; set; }
    /// <summary>The sample of the latest fit's rows that shift detection compares new data with; null if none is kept.</summary>
    public ShiftReference? ShiftReference { get; set; }
    /// <summary>With <see cref="ContinualTrainerOptions.ContinueAcrossFits"/>: where the stream's one pass stopped, for the
    /// next fit to go on from (<see cref="StreamContinuation"/>); null otherwise.</summary>
    public ContinualState? Continuation { get; set; }

    private Tensor? _allowedCache;

    public bool MultiHead => TaskIdKind is not null;

    public int OutputSize => Kind == ContinualPredictionKind.Multiclass ? Math.Max(Classes!.Count, 1) : 1;

    /// <summary>[heads, outputs] bool: which outputs each head may predict (multiclass multi-head only).</summary>
    /// <summary>[heads x outputs], row-major: whether each head may predict each output (multi-head multiclass only, else
    /// null). The one source of the mask for libtorch scoring, the managed kernel and the ONNX graph.</summary>
    public bool[]? AllowedMask()
    {
        if (!MultiHead || Kind != ContinualPredictionKind.Multiclass) return null;
        var flat = new bool[HeadClasses.Count * OutputSize];
        for (int h = 0; h < HeadClasses.Count; h++)
            for (int c = 0; c < HeadClasses[h].Length && c < OutputSize; c++)
                flat[h * OutputSize + c] = HeadClasses[h][c];
        return flat;
    }

    public Tensor? AllowedOutputs(Device device)
    {
        if (!MultiHead || Kind != ContinualPredictionKind.Multiclass) return null;
        if (_allowedCache is null || _allowedCache.shape[0] != HeadClasses.Count || _allowedCache.shape[1] != OutputSize || _allowedCache.device != device)
        {
            _allowedCache?.Dispose();
            using Tensor cpu = tensor(AllowedMask()!, new long[] { HeadClasses.Count, OutputSize });
            _allowedCache = cpu.to(device).DetachFromDisposeScope();
        }
        return _allowedCache;
    }

    /// <summary>Logits with the outputs a row's head may not predict set to -inf (multi-head multiclass only).</summary>
    public Tensor MaskLogits(Tensor logits, Tensor? heads)
    {
        Tensor? allowed = heads is null ? null : AllowedOutputs(logits.device);
        return allowed is null ? logits : logits.masked_fill(allowed.index_select(0, heads!).logical_not(), CachedScalars.NegativeInfinity);
    }

    /// <summary>The training loss of a batch (mean over rows): cross-entropy, logistic or squared.</summary>
    public Tensor Loss(Tensor outputs, ContinualBatch batch) => Kind switch
    {
        ContinualPredictionKind.Multiclass => nn.functional.cross_entropy(MaskLogits(outputs, batch.Heads), batch.Targets),
        ContinualPredictionKind.Binary => nn.functional.binary_cross_entropy_with_logits(outputs.squeeze(1), batch.Targets),
        _ => nn.functional.mse_loss(outputs.squeeze(1), batch.Targets),
    };

    /// <summary>Rows of <paramref name="batch"/> whose prediction from <paramref name="outputs"/> is right (0 for regression).</summary>
    public long CountCorrect(Tensor outputs, ContinualBatch batch)
    {
        using var _ = no_grad();
        return Kind switch
        {
            ContinualPredictionKind.Multiclass => MaskLogits(outputs, batch.Heads).argmax(1).eq(batch.Targets).sum().item<long>(),
            ContinualPredictionKind.Binary => outputs.squeeze(1).gt(0).eq(batch.Targets.gt(0.5)).sum().item<long>(),
            _ => 0,
        };
    }

    public void Dispose()
    {
        _allowedCache?.Dispose();
        Continuation?.Dispose();
        Network.Dispose();
    }
}
