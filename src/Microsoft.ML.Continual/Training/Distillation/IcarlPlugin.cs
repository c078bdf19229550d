using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// iCaRL (Rebuffi, Kolesnikov, Sperl and Lampert 2017, "iCaRL: Incremental Classifier and Representation Learning", CVPR):
/// exemplars of every class chosen by herding, a distillation loss, and the nearest-mean-of-exemplars classifier at
/// prediction time. As van de Ven and Tolias (2019) implement it for split MNIST.
/// </summary>
/// <remarks>
/// <para>Memory: a budget of <see cref="MemorySize"/> rows shared equally by the classes seen (m = ⌊K / classes⌋ each), chosen
/// by herding on the L2-normalised features of the network's last hidden layer (their Algorithm 4); a class's set shrinks
/// by keeping its first m.</para>
/// <para>Training (their Algorithm 3): the task's rows and the exemplars together; binary cross-entropy over the classes seen
/// so far, summed over the classes and averaged over the rows, with targets one-hot for the task's new classes and
/// σ(f_{t−1}(x)/T) of the previous model for the classes it knew (T = <see cref="Temperature"/>, 2 in van de Ven and Tolias's
/// code).</para>
/// <para>Prediction (their Algorithm 1): with φ the L2-normalised features and μ_y the normalised mean of class y's exemplars'
/// φ, y* = argmin_y ‖φ(x) − μ_y‖. The transformer's <c>Score</c> is softmax(−‖φ(x) − μ_y‖²) over the classes with
/// exemplars, so <c>PredictedLabel</c> is y*. The class means travel in the model zip.</para>
/// <para>Task-free (<see cref="ContinualTrainerOptions.Boundaries"/> other than Given; one pass in the stream's order), in
/// the manner of the online replay methods: each incoming batch trains with a uniform sample of as many exemplars (fewer
/// while the memory holds fewer), the loss being the mean of the same binary cross-entropy over both, L = (b·L_B + m·L_M)
/// / (b + m); the classes are counted as their rows arrive, and a row's own class keeps the target 1 even when the
/// teacher knew the class (in a stream a class comes back after the boundary that made it old; with the teacher's σ as its
/// target, its new rows would be trained towards a teacher that barely knew it, and a domain-incremental stream, whose
/// classes are all old after the first boundary, towards the teacher alone). At each boundary the rows sampled since the last one
/// (<see cref="ContinualTrainerOptions.BoundarySampleRows"/>) are offered to the memory as a group of their own, herded per
/// class, with the budget shared by the classes and, within a class, by its groups; the class means are recomputed, and
/// the teacher becomes a copy of the network (the classes seen so far become its classes). The state stays the budget's
/// size; the teacher, the classes it knew and the exemplar sampler are task progress, so checkpoints and
/// <see cref="ContinualTrainerOptions.ContinueAcrossFits"/> carry them.</para>
/// </remarks>
public sealed class IcarlPlugin : MemoryPlugin
{
    private ContinualNetwork? _teacher, _student;
    private bool[] _seen = [], _seenBefore = [];
    private bool _boundariesInside;
    private ContinualTaskData? _exemplars; // task-free: the memory on the fit's device, sampled at every step
    private Generator? _sampling;
    private Tensor? _means;    // [classes, features]: normalised mean of each class's exemplars (rows of classes without exemplars: 0)
    private Tensor? _hasMean;  // [classes] bool

    /// <summary>The exemplar budget in rows, shared by the classes seen. Default 2,000 (van de Ven and Tolias's split MNIST).</summary>
    public int MemorySize { get; set; } = 2000;

    /// <summary>The temperature T of the distillation targets σ(f_{t−1}(x)/T). Default 2 (van de Ven and Tolias's code; the paper's is 1).</summary>
    public double Temperature { get; set; } = 2;

    /// <inheritdoc/>
    public override void Validate()
    {
        if (MemorySize is < 1 or > 10_000_000) throw new ArgumentOutOfRangeException(nameof(MemorySize), "Option MemorySize must be in [1, 10,000,000].");
        if (!(Temperature > 0 && Temperature <= 100)) throw new ArgumentOutOfRangeException(nameof(Temperature), "Option Temperature must be in (0, 100].");
    }

    /// <summary>Keeps the previous model as the teacher; the task trains on its rows and the exemplars together.</summary>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        if (context.Kind != ContinualPredictionKind.Multiclass || context.TaskIds.Count > 1)
            throw new NotSupportedException("iCaRL is a class-incremental method: it needs a classification label and one head (no task-id column).");
        if (context.IsStreaming) throw new NotSupportedException("iCaRL trains on the task's rows and its exemplars together; leave MemoryBudgetMegabytes unset for it.");
        if (_seen.Length < context.OutputSize) Array.Resize(ref _seen, context.OutputSize);
        _seenBefore = (bool[])_seen.Clone();
        _boundariesInside = context.Options.Boundaries != ContinualBoundaries.Given;
        _student = context.Network;
        // With boundaries inside the fit the classes are counted as they arrive (BeforeBackward), not all at the start.
        if (!_boundariesInside) foreach (long c in context.Task.Targets.unique().output.cpu().data<long>().ToArray()) _seen[c] = true;
        _teacher?.Dispose();
        _teacher = context.TaskIndex == 0 ? null : context.Network.Copy(context.Random);
        if (_boundariesInside)
        {
            _sampling?.Dispose();
            _sampling = new Generator((ulong)(context.TaskSeed ^ 0x4943_4153), CPU);
            TakeExemplars(context.Device);
            return;
        }
        if (Memory.ToDevice(context.Device) is not ContinualTaskData exemplars) return;
        var task = context.Task;
        context.Task = new ContinualTaskData(cat([task.Features, exemplars.Features], 0).DetachFromDisposeScope(), cat([task.Targets, exemplars.Targets], 0).DetachFromDisposeScope(), null);
        exemplars.Dispose();
    }

    /// <summary>The memory on <paramref name="device"/> for the steps' samples (task-free), replacing the one before.</summary>
    private void TakeExemplars(Device device)
    {
        _exemplars?.Dispose();
        _exemplars = Memory.ToDevice(device); // a detached copy
    }

    /// <summary>Task-free: a uniform sample of as many exemplars as the incoming batch has rows (all of them while there are fewer).</summary>
    public override IEnumerable<ContinualBatch> ExtraBatches(ContinualTrainingContext context, ContinualBatch taskBatch)
    {
        if (!_boundariesInside || _exemplars is not { Count: > 0 } exemplars) yield break;
        using var order = randperm(exemplars.Count, generator: _sampling);
        using var rows = order.narrow(0, 0, Math.Min(exemplars.Count, taskBatch.Rows)).to(exemplars.Features.device);
        var sample = exemplars.Select(rows);
        yield return sample with { Weight = 0 }; // its loss is this plugin's (BeforeBackward)
    }

    /// <summary>The binary cross-entropy with distillation targets replaces the task's loss; task-free, the exemplars'
    /// term joins it as the mean over both.</summary>
    public override void BeforeBackward(ContinualTrainingContext context, ContinualStep step)
    {
        // The whole batch's classes (a data-parallel process's share may miss some), before a share with no rows returns.
        if (_boundariesInside && context.CurrentBatch is { } whole) SeeClasses(whole.Targets);
        var replayed = step.ExtraBatchesOf(this).FirstOrDefault();
        // The shares of the whole batches (every process's rows), so that the processes' terms add up to the joined mean.
        long incoming = context.CurrentBatch?.Rows ?? step.TaskBatch.Rows;
        double share = replayed is null ? 1 : (double)incoming / (incoming + replayed.FullRows);
        if (step.TaskOutputs is Tensor logits) step.ReplaceTaskLoss(BinaryCrossEntropy(logits, step.TaskBatch) * share);
        if (replayed is { Batch.Rows: > 0 }) step.AddLoss("exemplars", BinaryCrossEntropy(replayed.Outputs, replayed.Batch) * (1 - share), replayed);
    }

    /// <summary>For tests: the teacher and the classes seen, now and before the teacher was made.</summary>
    internal (ContinualNetwork? Teacher, bool[] Seen, bool[] SeenBefore) Distillation => (_teacher, _seen, _seenBefore);

    private Tensor BinaryCrossEntropy(Tensor logits, ContinualBatch batch)
    {
        Tensor? teacher = null;
        if (_teacher is not null)
            using (no_grad()) teacher = _teacher.Forward(batch.Features, null);
        return DistillationLoss(logits, batch.Targets, teacher, _seen, _seenBefore, Temperature, labelWins: _boundariesInside);
    }

    /// <summary>Σ over the classes seen of BCE(σ(o_c), target_c), averaged over the rows; the targets one-hot for the classes
    /// the teacher did not know and σ(f_{t−1}(x)/T) for those it knew (their Algorithm 3); with
    /// <paramref name="labelWins"/> (task-free), 1 for the row's own class whatever the teacher says.</summary>
    internal static Tensor DistillationLoss(Tensor logits, Tensor labels, Tensor? teacherLogits, bool[] seen, bool[] seenBefore, double temperature, bool labelWins)
    {
        long[] active = Enumerable.Range(0, (int)logits.shape[1]).Where(c => c < seen.Length && seen[c]).Select(c => (long)c).ToArray();
        using var columns = tensor(active).to(logits.device);
        Tensor scores = logits.index_select(1, columns);
        Tensor oneHot = nn.functional.one_hot(labels, logits.shape[1]).to_type(scores.dtype).index_select(1, columns);
        Tensor targets = oneHot;
        if (teacherLogits is not null)
        {
            using var old = tensor(active.Select(c => c < seenBefore.Length && seenBefore[c]).ToArray()).to(logits.device).unsqueeze(0);
            Tensor distilled = (teacherLogits.index_select(1, columns) / temperature).sigmoid();
            targets = where(old, distilled, oneHot);
            // Task-free, a class comes back after the boundary that made it old: the row's own label stays 1, or new rows
            // of a class would be trained towards a teacher that barely knew it (with two classes, towards itself alone).
            if (labelWins) targets = maximum(targets, oneHot);
        }
        return nn.functional.binary_cross_entropy_with_logits(scores, targets, reduction: nn.Reduction.None).sum(1).mean();
    }

    private void SeeClasses(Tensor targets)
    {
        foreach (long c in targets.unique().output.cpu().data<long>().ToArray())
        {
            if (c >= _seen.Length) Array.Resize(ref _seen, (int)c + 1);
            _seen[c] = true;
        }
    }

    /// <summary>Supported (task-free): exemplars replayed at every step, herded and averaged anew at each boundary.</summary>
    public override string? WhyNotBoundariesInsideFit => null;

    /// <summary>The rows since the last boundary join the memory (herding), the class means follow, and the network becomes the teacher.</summary>
    public override void AtBoundary(ContinualTrainingContext context)
    {
        Consolidate(context, context.Task);
        TakeExemplars(context.Device);
        _teacher?.Dispose();
        _teacher = context.Network.Copy(context.Random);
        _seenBefore = (bool[])_seen.Clone();
    }

    /// <summary>The exemplar sets for the classes seen (herding), then the class means for prediction.</summary>
    public override void AfterTask(ContinualTrainingContext context)
    {
        ReleaseTaskResources();
        // Only the task's own rows are offered (the exemplars already in the memory keep their ranks); task-free, the
        // sample of the rows since the last boundary (or the fit's rows, when no step ran), which holds no exemplar.
        var task = context.Task;
        long own = _boundariesInside ? task.Count : task.Count - Memory.Count;
        using var rows = new ContinualTaskData(task.Features.narrow(0, 0, own), task.Targets.narrow(0, 0, own), null);
        Consolidate(context, rows);
    }

    /// <summary>Herding of <paramref name="rows"/> into the memory, as the group of this task (given boundaries) or of a
    /// new group numbered after the memory's (task-free), then the class means.</summary>
    private void Consolidate(ContinualTrainingContext context, ContinualTaskData rows)
    {
        if (rows.Count == 0) return;
        int group = _boundariesInside ? Math.Max(context.TaskIndex, Memory.Count == 0 ? 0 : Memory.TaskOf.Max() + 1) : context.TaskIndex;
        var random = new Random(unchecked((int)(context.TaskSeed ^ 0x4943_4152)));
        Memory = Memory.Offer(rows, group, ExampleMemory.ClassesOf(rows, context.Kind), ReplayBufferPolicy.ClassBalanced,
            MemorySize, ExemplarSelection.Herding, random, context.Network.Embed);
        ComputeMeans(context.Network, context.OutputSize);
    }

    internal override void ReleaseTaskResources()
    {
        _teacher?.Dispose();
        _teacher = null;
        _student = null;
        _exemplars?.Dispose();
        _exemplars = null;
        _sampling?.Dispose();
        _sampling = null;
    }

    /// <summary>Supported: the memory and the class means are the state; the teacher, the classes it knew and the
    /// exemplar sampler are the task progress.</summary>
    public override string? WhyNotContinuesAcrossFits => null;

    /// <summary>Task-free only (with given boundaries BeforeTask makes the teacher again from the previous model).</summary>
    public override void SaveTaskProgress(ContinualState state)
    {
        if (!_boundariesInside) return;
        TeacherProgress.Save(state, _teacher, _seenBefore);
        Checkpoint.WriteGenerator(state, _sampling);
    }

    /// <inheritdoc/>
    public override void LoadTaskProgress(ContinualState state)
    {
        if (!_boundariesInside) return;
        _teacher?.Dispose();
        _teacher = null;
        (_teacher, _seenBefore) = TeacherProgress.Load(state, _student, "iCaRL");
        Checkpoint.ReadGenerator(state, _sampling);
    }

    /// <summary>μ_y = normalise(mean of normalise(φ(x)) over class y's exemplars), for every class with exemplars.</summary>
    private void ComputeMeans(ContinualNetwork network, int classes)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var device = network.parameters().First().device;
        var exemplars = Memory.ToDevice(device)!;
        Tensor features = nn.functional.normalize(network.Embed(exemplars.Features), p: 2, dim: 1);
        Tensor sums = zeros([classes, features.shape[1]], device: device).index_add_(0, exemplars.Targets, features, CachedScalars.One);
        Tensor counts = zeros([classes], device: device).index_add_(0, exemplars.Targets, ones([exemplars.Count], device: device), CachedScalars.One);
        _means?.Dispose();
        _hasMean?.Dispose();
        _means = nn.functional.normalize(sums, p: 2, dim: 1).cpu().DetachFromDisposeScope();
        _hasMean = counts.gt(0).cpu().DetachFromDisposeScope();
    }

    /// <summary>For export: the class means [classes, features] and which classes have exemplars, or null before the first task ends.</summary>
    internal (Tensor Means, Tensor HasMean)? ClassMeans => _means is null || _hasMean is null ? null : (_means, _hasMean);

    /// <summary>The nearest-mean-of-exemplars classifier: −‖φ(x) − μ_y‖² for the classes with exemplars, −∞ for the others.</summary>
    public override Tensor ScoringOutputs(ContinualNetwork network, Tensor features, Tensor? heads, Tensor logits)
    {
        if (_means is null || _hasMean is null) return logits;
        Tensor phi = nn.functional.normalize(network.Embed(features), p: 2, dim: 1);
        Tensor means = _means.to(phi.device);
        Tensor distances = (phi.unsqueeze(1) - means.unsqueeze(0)).square().sum(2); // [rows, classes]
        Tensor scores = distances.neg().masked_fill(_hasMean.to(phi.device).logical_not().unsqueeze(0), CachedScalars.NegativeInfinity);
        if (scores.shape[1] < logits.shape[1]) scores = nn.functional.pad(scores, [0, logits.shape[1] - scores.shape[1]], value: float.NegativeInfinity);
        return scores;
    }

    /// <inheritdoc/>
    public override void SaveState(ContinualState state)
    {
        base.SaveState(state);
        using var seen = tensor(_seen);
        state.Set("classes seen", seen);
        state.Set("has means", _means is not null);
        if (_means is null) return;
        state.Set("class means", _means);
        state.Set("classes with exemplars", _hasMean!);
    }

    /// <inheritdoc/>
    public override void LoadState(ContinualState state)
    {
        base.LoadState(state);
        using var seen = state.GetTensor("classes seen");
        if (seen.dtype != ScalarType.Bool || seen.dim() != 1) throw new ContinualModelFormatException("iCaRL's classes seen must be a vector of Booleans.");
        _seen = seen.data<bool>().ToArray();
        if (!state.GetBoolean("has means")) return;
        _means = state.GetTensor("class means").DetachFromDisposeScope();
        _hasMean = state.GetTensor("classes with exemplars").DetachFromDisposeScope();
        if (_means.dim() != 2 || _hasMean.dim() != 1 || _hasMean.dtype != ScalarType.Bool || _means.shape[0] != _hasMean.shape[0] || _means.dtype != ScalarType.Float32)
            throw new ContinualModelFormatException("iCaRL's class means must be a float matrix with one Boolean per class.");
    }

    internal override void CopyStateFrom(ContinualPlugin previous)
    {
        using var state = new ContinualState();
        previous.SaveState(state);
        LoadState(state);
    }

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>
    {
        ["exemplars"] = Memory.Count,
        ["class means"] = _hasMean?.sum().item<long>() ?? 0,
    };
}
