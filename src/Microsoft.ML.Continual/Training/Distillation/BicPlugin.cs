using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// BiC, bias correction (Wu, Chen, Wang, Ye, Liu, Guo and Fu 2019, "Large Scale Incremental Learning", CVPR): replay with
/// distillation, then a two-parameter linear layer on the new classes' logits, fitted on a held-out, class-balanced part of
/// the memory, undoes the bias towards the classes with the most training rows.
/// </summary>
/// <remarks>
/// <para>Stage 1, on the task's rows and the exemplars (minus the held-out rows): L = (1 − λ) CE + λ T² KD with
/// λ = n_old / (n_old + n_new) classes and KD the distillation of the previous model's bias-corrected outputs on the old
/// classes (their eq. 2–4, T = 2). Stage 2, after the task: with the network fixed, q_k = α o_k + β for the task's new
/// classes k (o_k for the others; their eq. 5), α and β fitted by minimising the cross-entropy of q on the validation rows
/// (<see cref="ValidationShare"/> of every old class's exemplars and as many rows of each new class, held out of stage 1)
/// with Adam, learning rate 1e-3, for <see cref="BiasEpochs"/> passes (as Mammoth's <c>models/bic.py</c>). The latest
/// task's (α, β) is applied to its classes at prediction time and to the previous model's outputs when they are distilled
/// (earlier tasks' corrections are kept in the model zip as a record, not applied: their classes have been trained on since).</para>
/// </remarks>
public sealed class BicPlugin : MemoryPlugin
{
    private ContinualNetwork? _teacher;
    private readonly List<(bool[] Classes, float Alpha, float Beta)> _corrections = new();
    private bool[] _seen = [], _seenBefore = [];
    private ContinualTaskData? _validation;

    /// <summary>The exemplar budget in rows, shared by the classes seen (class-balanced, herding). Default 2,000.</summary>
    public int MemorySize { get; set; } = 2000;

    /// <summary>The share of each class's rows held out to fit the bias correction. Default 0.1 (the paper's).</summary>
    public double ValidationShare { get; set; } = 0.1;

    /// <summary>Passes over the validation rows to fit α and β. Default 250 (Mammoth's).</summary>
    public int BiasEpochs { get; set; } = 250;

    /// <summary>The distillation temperature T. Default 2 (the paper's).</summary>
    public double Temperature { get; set; } = 2;

    /// <summary>Not supported: the correction is fitted on rows of each task held out before the task trains, and on the
    /// classes the task brought, which a boundary inside a fit does not give.</summary>
    public override string? WhyNotBoundariesInsideFit =>
        "its bias correction (stage 2) is fitted on rows of the task held out before its training starts and on the classes the task brought; a boundary inside a fit comes after those rows were trained on";

    /// <inheritdoc/>
    public override void Validate()
    {
        if (MemorySize is < 1 or > 10_000_000) throw new ArgumentOutOfRangeException(nameof(MemorySize), "Option MemorySize must be in [1, 10,000,000].");
        if (!(ValidationShare > 0 && ValidationShare < 0.5)) throw new ArgumentOutOfRangeException(nameof(ValidationShare), "Option ValidationShare must be in (0, 0.5).");
        if (BiasEpochs is < 1 or > 100_000) throw new ArgumentOutOfRangeException(nameof(BiasEpochs), "Option BiasEpochs must be in [1, 100,000].");
        if (!(Temperature > 0 && Temperature <= 100)) throw new ArgumentOutOfRangeException(nameof(Temperature), "Option Temperature must be in (0, 100].");
    }

    /// <summary>Holds out the validation rows, keeps the previous model as the teacher, trains on the rest of the task and the exemplars.</summary>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        if (context.Kind != ContinualPredictionKind.Multiclass || context.TaskIds.Count > 1)
            throw new NotSupportedException("BiC corrects the bias between classes of one head: it needs a classification label and no task-id column.");
        if (context.IsStreaming) throw new NotSupportedException("BiC trains on the task's rows and its exemplars together; leave MemoryBudgetMegabytes unset for it.");
        if (_seen.Length < context.OutputSize) Array.Resize(ref _seen, context.OutputSize);
        _seenBefore = (bool[])_seen.Clone();
        foreach (long c in context.Task.Targets.unique().output.cpu().data<long>().ToArray()) _seen[c] = true;
        _teacher?.Dispose();
        _teacher = context.TaskIndex == 0 ? null : context.Network.Copy(context.Random);
        var random = new Random(unchecked((int)(context.TaskSeed ^ 0x4249_4356)));
        var (training, validation) = Split(context.Task, Memory.ToDevice(context.Device), random);
        context.Task = training;
        _validation = validation;
    }

    /// <summary>The task's rows and the exemplars, minus a class-balanced validation part: each old class's
    /// <see cref="ValidationShare"/> of its exemplars, and as many rows of each new class.</summary>
    private (ContinualTaskData Training, ContinualTaskData? Validation) Split(ContinualTaskData task, ContinualTaskData? exemplars, Random random)
    {
        using var scope = NewDisposeScope();
        long[] taskClasses = task.Targets.cpu().data<long>().ToArray();
        long[] exemplarClasses = exemplars?.Targets.cpu().data<long>().ToArray() ?? [];
        int perClass = exemplars is null ? 0 : Math.Max(1, (int)Math.Round(ValidationShare * exemplarClasses.Length / Math.Max(exemplarClasses.Distinct().Count(), 1)));
        var held = new HashSet<long>(); // rows of the concatenation: task rows first, then exemplars
        if (perClass > 0)
        {
            foreach (var group in exemplarClasses.Select((c, i) => (c, i)).GroupBy(p => p.c))
                foreach (var (_, i) in group.OrderBy(_ => random.Next()).Take(perClass)) held.Add(taskClasses.Length + i);
            foreach (var group in taskClasses.Select((c, i) => (c, i)).GroupBy(p => p.c))
                foreach (var (_, i) in group.OrderBy(_ => random.Next()).Take(perClass)) held.Add(i);
        }
        Tensor features = exemplars is null ? task.Features : cat([task.Features, exemplars.Features], 0);
        Tensor targets = exemplars is null ? task.Targets : cat([task.Targets, exemplars.Targets], 0);
        long total = features.shape[0];
        var keep = Enumerable.Range(0, (int)total).Where(i => !held.Contains(i)).Select(i => (long)i).ToArray();
        var device = features.device;
        ContinualTaskData Part(long[] rows)
        {
            using Tensor index = tensor(rows).to(device);
            return new ContinualTaskData(features.index_select(0, index).DetachFromDisposeScope(), targets.index_select(0, index).DetachFromDisposeScope(), null);
        }
        exemplars?.Dispose();
        return (Part(keep), held.Count == 0 ? null : Part(held.Order().ToArray()));
    }

    /// <summary>(1 − λ) CE + λ T² KD on the old classes, λ = n_old / (n_old + n_new).</summary>
    public override void BeforeBackward(ContinualTrainingContext context, ContinualStep step)
    {
        if (_teacher is null || step.TaskOutputs is not Tensor logits) return;
        int oldClasses = _seenBefore.Count(s => s), allClasses = _seen.Count(s => s);
        double lambda = (double)oldClasses / allClasses;
        long[] old = Enumerable.Range(0, _seenBefore.Length).Where(c => _seenBefore[c] && c < logits.shape[1]).Select(c => (long)c).ToArray();
        using var columns = tensor(old).to(logits.device);
        Tensor teacher;
        using (no_grad()) teacher = Corrected(_teacher.Forward(step.TaskBatch.Features, null)).index_select(1, columns);
        Tensor distillation = LwfPlugin.KnowledgeDistillation(logits.index_select(1, columns), teacher, Temperature);
        step.ReplaceTaskLoss(context.Loss(logits, step.TaskBatch) * (1 - lambda));
        step.AddLoss("distillation", distillation * lambda);
    }

    /// <summary>Stage 2 (the bias correction of this task's classes), then the exemplars.</summary>
    public override void AfterTask(ContinualTrainingContext context)
    {
        _teacher?.Dispose();
        _teacher = null;
        if (context.TaskIndex > 0 && _validation is not null) FitCorrection(context, _validation);
        var task = context.Task;
        var random = new Random(unchecked((int)(context.TaskSeed ^ 0x4249_4345)));
        long[] classes = task.Targets.cpu().data<long>().ToArray();
        using Tensor own = tensor(Enumerable.Range(0, classes.Length).Where(i => !_seenBefore[(int)classes[i]]).Select(i => (long)i).ToArray()).to(task.Features.device);
        using var rows = new ContinualTaskData(task.Features.index_select(0, own), task.Targets.index_select(0, own), null);
        Memory = Memory.Offer(rows, context.TaskIndex, ExampleMemory.ClassesOf(rows, context.Kind), ReplayBufferPolicy.ClassBalanced,
            MemorySize, ExemplarSelection.Herding, random, context.Network.Embed);
        _validation?.Dispose();
        _validation = null;
    }

    private void FitCorrection(ContinualTrainingContext context, ContinualTaskData validation)
    {
        bool[] newClasses = Enumerable.Range(0, _seen.Length).Select(c => _seen[c] && !_seenBefore[c]).ToArray();
        using var scope = NewDisposeScope();
        Tensor logits;
        using (no_grad()) logits = Corrected(context.Network.Forward(validation.Features, null));
        var alpha = new Parameter(ones(1, device: logits.device), requires_grad: true);
        var beta = new Parameter(zeros(1, device: logits.device), requires_grad: true);
        using var optimizer = optim.Adam([alpha, beta], 1e-3);
        Tensor mask = tensor(newClasses.Concat(new bool[Math.Max(0, (int)logits.shape[1] - newClasses.Length)]).Take((int)logits.shape[1]).ToArray()).to(logits.device).unsqueeze(0);
        long[] active = Enumerable.Range(0, (int)logits.shape[1]).Where(c => c < _seen.Length && _seen[c]).Select(c => (long)c).ToArray();
        Tensor columns = tensor(active).to(logits.device);
        Tensor targets = validation.Targets;
        for (int epoch = 0; epoch < BiasEpochs; epoch++)
        {
            optimizer.zero_grad();
            Tensor corrected = where(mask, logits * alpha + beta, logits).index_select(1, columns);
            Tensor remapped = Remap(targets, active);
            nn.functional.cross_entropy(corrected, remapped).backward();
            optimizer.step();
        }
        float a = alpha.item<float>(), b = beta.item<float>();
        _corrections.Add((newClasses, a, b));
        context.Info($"BiC: bias correction of task {context.TaskIndex + 1}'s classes: α = {a:F4}, β = {b:F4}.");
    }

    /// <summary>Class indices as positions among <paramref name="active"/> (the columns kept).</summary>
    private static Tensor Remap(Tensor targets, long[] active)
    {
        var position = new long[active.Max() + 1];
        for (int i = 0; i < active.Length; i++) position[active[i]] = i;
        using Tensor lookup = tensor(position).to(targets.device);
        return lookup.index_select(0, targets);
    }

    /// <summary>The logits with the latest correction applied to its classes (the newest task's): once a later task has
    /// trained on them with distillation they are old classes and pass through, as in the paper and Mammoth's <c>forward</c>.</summary>
    /// <summary>For export: the correction that applies at prediction time (the last task's), or null before the second task.</summary>
    internal (bool[] Classes, float Alpha, float Beta)? Correction => _corrections.Count == 0 ? null : _corrections[^1];

    private Tensor Corrected(Tensor logits)
    {
        if (_corrections.Count == 0) return logits;
        var (classes, alpha, beta) = _corrections[^1];
        using var mask = tensor(classes.Concat(new bool[Math.Max(0, (int)logits.shape[1] - classes.Length)]).Take((int)logits.shape[1]).ToArray()).to(logits.device).unsqueeze(0);
        return where(mask, logits * alpha + beta, logits);
    }

    /// <inheritdoc/>
    public override Tensor ScoringOutputs(ContinualNetwork network, Tensor features, Tensor? heads, Tensor logits) => Corrected(logits);

    /// <inheritdoc/>
    public override void SaveState(ContinualState state)
    {
        base.SaveState(state);
        using var seen = tensor(_seen);
        state.Set("classes seen", seen);
        state.Set("corrections", _corrections.Count);
        for (int i = 0; i < _corrections.Count; i++)
        {
            using var classes = tensor(_corrections[i].Classes);
            state.Set($"correction{i}/classes", classes);
            state.Set($"correction{i}/alpha", _corrections[i].Alpha);
            state.Set($"correction{i}/beta", _corrections[i].Beta);
        }
    }

    /// <inheritdoc/>
    public override void LoadState(ContinualState state)
    {
        base.LoadState(state);
        using var seen = state.GetTensor("classes seen");
        if (seen.dtype != ScalarType.Bool || seen.dim() != 1) throw new ContinualModelFormatException("BiC's classes seen must be a vector of Booleans.");
        _seen = seen.data<bool>().ToArray();
        _corrections.Clear();
        int count = state.GetInt32("corrections", 0, 1 << 16);
        for (int i = 0; i < count; i++)
        {
            using var classes = state.GetTensor($"correction{i}/classes");
            double alpha = state.GetDouble($"correction{i}/alpha"), beta = state.GetDouble($"correction{i}/beta");
            if (classes.dtype != ScalarType.Bool || !double.IsFinite(alpha) || !double.IsFinite(beta)) throw new ContinualModelFormatException($"BiC's correction {i} is damaged.");
            _corrections.Add((classes.data<bool>().ToArray(), (float)alpha, (float)beta));
        }
    }

    internal override void CopyStateFrom(ContinualPlugin previous)
    {
        using var state = new ContinualState();
        previous.SaveState(state);
        LoadState(state);
    }

    /// <summary>False: the held-out rows and the teacher are not part of a within-task checkpoint.</summary>
    public override bool SupportsCheckpoints => false;

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>
    {
        ["exemplars"] = Memory.Count,
        ["bias corrections"] = _corrections.Count,
    };
}
