using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// The network's gradients seen as one flat vector: the parameters and their offsets are fixed once per task, the
/// vectors that hold flattened gradients are allocated once and reused at every step.
/// </summary>
internal sealed class FlatGradients : IDisposable
{
    private readonly Parameter[] _parameters;
    private readonly long[] _offsets;

    public FlatGradients(ContinualNetwork network) : this(network.OrderedParameters().Select(p => p.Value)) { }

    public FlatGradients(IEnumerable<Parameter> parameters)
    {
        _parameters = parameters.ToArray();
        _offsets = new long[_parameters.Length];
        long offset = 0;
        for (int i = 0; i < _parameters.Length; i++) { _offsets[i] = offset; offset += _parameters[i].numel(); }
        Size = offset;
    }

    public long Size { get; }

    /// <summary>How many parameters the vector covers.</summary>
    public int ParameterCount => _parameters.Length;

    /// <summary>Sets <paramref name="flags"/>[i] to 1 where parameter i has a gradient, 0 where it has none.</summary>
    public void MarkPresent(Span<float> flags)
    {
        for (int i = 0; i < _parameters.Length; i++) flags[i] = _parameters[i].grad is null ? 0 : 1;
    }

    /// <summary>Copies the current gradients into <paramref name="destination"/> (zeros for parameters without one); a
    /// gradient that already is that part of <paramref name="destination"/> (see <see cref="ShareAsGradients"/>) is left alone.</summary>
    public void CopyTo(Tensor destination)
    {
        using var _ = no_grad();
        for (int i = 0; i < _parameters.Length; i++)
        {
            using Tensor part = destination.narrow(0, _offsets[i], _parameters[i].numel());
            if (_parameters[i].grad is Tensor gradient) { if (!SameMemory(gradient, part)) part.copy_(gradient.view(-1)); }
            else part.zero_();
        }
    }

    /// <summary>Makes the parts of <paramref name="source"/> the parameters' gradients (no copy), for each parameter that has a
    /// gradient or whose <paramref name="present"/> flag is positive. While they stay so (the optimizer's <c>zero_grad</c> zeroes
    /// them in place and backward adds into them), the next steps' gradients are written straight into <paramref name="source"/>.</summary>
    public void ShareAsGradients(Tensor source, ReadOnlySpan<float> present)
    {
        using var _ = no_grad();
        _views ??= new Tensor?[_parameters.Length];
        for (int i = 0; i < _parameters.Length; i++)
        {
            Tensor? gradient = _parameters[i].grad;
            if (gradient is null && present[i] <= 0) continue;
            Tensor view = _views[i] ??= source.narrow(0, _offsets[i], _parameters[i].numel()).view(_parameters[i].shape).DetachFromDisposeScope();
            if (gradient is not null && SameMemory(gradient, view)) continue;
            _parameters[i].grad = view;
        }
    }

    private Tensor?[]? _views;

    /// <summary>Releases the views made by <see cref="ShareAsGradients"/> (the parameters keep their gradients).</summary>
    public void Dispose()
    {
        foreach (Tensor? view in _views ?? []) view?.Dispose();
        _views = null;
    }

    /// <summary>In a data-parallel fit, gives every parameter that has a gradient in any process a gradient in every process
    /// (zero where this one has none): a hook's own backward passes over a share of the work (GEM's past tasks, A-GEM's
    /// reference rows) reach different parameters in different processes (other tasks' heads), and the optimizers treat a
    /// missing gradient differently from a zero one. One process ends with what the whole work would have given it.</summary>
    public void AgreePresence(ContinualCommunicator communicator)
    {
        if (communicator.Size == 1) return;
        var present = new float[_parameters.Length];
        MarkPresent(present);
        communicator.AllReduceSum(present);
        using var _ = no_grad();
        for (int i = 0; i < _parameters.Length; i++)
            if (present[i] > 0 && _parameters[i].grad is null) _parameters[i].grad = zeros_like(_parameters[i]).DetachFromDisposeScope();
    }

    /// <summary>True when <paramref name="a"/> and <paramref name="b"/> are the same CPU memory (only views made by
    /// <see cref="ShareAsGradients"/> can be; data-parallel training runs on the CPU, and <c>bytes</c> would copy a CUDA tensor).</summary>
    private bool SameMemory(Tensor a, Tensor b) =>
        _views is not null && a.numel() == b.numel() && a.device_type == TorchSharp.DeviceType.CPU && b.device_type == TorchSharp.DeviceType.CPU
        && a.is_contiguous() && b.is_contiguous() && System.Runtime.CompilerServices.Unsafe.AreSame(
            ref System.Runtime.InteropServices.MemoryMarshal.GetReference(a.bytes), ref System.Runtime.InteropServices.MemoryMarshal.GetReference(b.bytes));

    /// <summary>Sets the gradients from <paramref name="source"/>; a parameter without a gradient gets one only where the source is not zero.</summary>
    public void CopyFrom(Tensor source)
    {
        using var _ = no_grad();
        for (int i = 0; i < _parameters.Length; i++)
        {
            using Tensor part = source.narrow(0, _offsets[i], _parameters[i].numel()).view(_parameters[i].shape);
            if (_parameters[i].grad is Tensor gradient) gradient.copy_(part);
            else if (part.count_nonzero().item<long>() > 0) _parameters[i].grad = part.clone().DetachFromDisposeScope();
        }
    }

    public void Zero()
    {
        using var _ = no_grad();
        foreach (var parameter in _parameters) parameter.grad?.zero_();
    }
}

/// <summary>
/// Gradient episodic memory (Lopez-Paz and Ranzato 2017): <see cref="GemTrainer"/>, whose remarks give the equations. At
/// every step the gradient of each past task's memory is computed (one forward and backward each) and the step's gradient
/// projected when it would increase any of their losses. After a task, a random sample of its rows joins the memory.
/// </summary>
public sealed class GemPlugin : MemoryPlugin
{
    private const double Epsilon = 1e-3; // GEM's positive-definite regularisation of GGᵀ
    private List<ContinualBatch> _pastTasks = new();
    private FlatGradients? _flat;
    private Tensor? _gradient, MemoryGradients;

    /// <summary>Rows of each task kept in the episodic memory (a random sample, drawn with the task's seed). Default 256 (the paper's MNIST setting).</summary>
    public int MemoriesPerTask { get; set; } = 256;

    /// <summary>The memory strength γ ≥ 0: lower bound of the dual variables; larger values favour backward transfer. Default 0.5 (the paper's MNIST setting).</summary>
    public double MemoryStrength { get; set; } = 0.5;

    /// <summary>With boundaries inside a fit: the most groups (constraints) the memory keeps, each of at most
    /// <see cref="MemoriesPerTask"/> rows. Default 10 (the paper's 20 tasks had 20; ten keep a step's cost at ten extra
    /// passes). Window w joins group w mod this, as a reservoir over the windows the group holds, so every window
    /// is represented alike whatever the number of boundaries, and neither the memory nor a step's cost grows with it.</summary>
    public int MemoryGroupsInsideFit { get; set; } = 10;

    private long _windows; // consolidations made with boundaries inside fits (across fits), for the group of the next
    private int _groupBase; // the first group number inside fits: above every task the memory held before
    private long[] _offered = []; // rows each group inside fits has been offered (its reservoir's N)
    private ExampleMemory? _madeHere; // the memory this instance made last (the one it started with is shared with the previous model)

    /// <inheritdoc/>
    public override void Validate()
    {
        if (MemoriesPerTask < 1 || MemoriesPerTask > 1_000_000) throw new ArgumentOutOfRangeException(nameof(MemoriesPerTask), "Option MemoriesPerTask must be in [1, 1,000,000].");
        if (MemoryGroupsInsideFit < 1 || MemoryGroupsInsideFit > 1000) throw new ArgumentOutOfRangeException(nameof(MemoryGroupsInsideFit), "Option MemoryGroupsInsideFit must be in [1, 1,000].");
        if (!(MemoryStrength >= 0) || double.IsInfinity(MemoryStrength)) throw new ArgumentOutOfRangeException(nameof(MemoryStrength), "Option MemoryStrength must be non-negative and finite.");
    }

    /// <summary>Steps of the last task whose gradient was projected (for diagnostics and tests).</summary>
    internal long ProjectedSteps { get; private set; }

    /// <summary>Steps of the last task.</summary>
    internal long Steps { get; private set; }

    /// <inheritdoc/>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        ProjectedSteps = Steps = 0;
        _pastTasks = new();
        _flat = new FlatGradients(context.Network);
        if (Memory.Count == 0) return;
        // Each past task's memory as one batch on the device, gathered once per task. Detached and disposed at the task's
        // end: a boundary inside a fit runs this again in a nested dispose scope.
        using ContinualTaskData memory = Memory.ToDevice(context.Device)!;
        foreach (int task in Memory.TaskOf.Distinct().Order())
        {
            using Tensor rows = tensor(Enumerable.Range(0, Memory.Count).Where(i => Memory.TaskOf[i] == task).Select(i => (long)i).ToArray()).to(context.Device);
            var batch = memory.Select(rows);
            _pastTasks.Add(new ContinualBatch(batch.Features.DetachFromDisposeScope(), batch.Targets.DetachFromDisposeScope(), batch.Heads?.DetachFromDisposeScope()));
        }
        _gradient = zeros(_flat.Size, device: context.Device).DetachFromDisposeScope();
        MemoryGradients = zeros(_pastTasks.Count, _flat.Size, device: context.Device).DetachFromDisposeScope();
    }

    /// <inheritdoc/>
    public override void AfterBackward(ContinualTrainingContext context)
    {
        Steps++;
        if (_pastTasks.Count == 0) return;
        var flat = _flat!;
        flat.CopyTo(_gradient!);
        var communicator = context.Communicator;
        for (int k = 0; k < _pastTasks.Count; k++)
        {
            using Tensor row = MemoryGradients![k];
            if (k % communicator.Size != communicator.Rank) { row.zero_(); continue; } // data-parallel: each process takes every Size-th past task
            flat.Zero();
            context.Loss(_pastTasks[k]).backward();
            flat.CopyTo(row);
        }
        communicator.AllReduceSum(MemoryGradients!);
        flat.AgreePresence(communicator);
        bool violated;
        using (no_grad()) violated = MemoryGradients!.mv(_gradient!).lt(0).any().item<bool>();
        if (!violated)
        {
            flat.CopyFrom(_gradient!);
            return;
        }
        ProjectedSteps++;
        using Tensor projected = GemProjection.Project(MemoryGradients!, _gradient!, MemoryStrength, Epsilon, out _);
        flat.CopyFrom(projected);
    }

    /// <inheritdoc/>
    public override void AfterTask(ContinualTrainingContext context)
    {
        var task = context.Task;
        bool inFit = context.Options.Boundaries != ContinualBoundaries.Given;
        long draw = inFit ? context.Step : 0; // distinct at every consolidation of a fit, the end's included
        var random = new Random(unchecked((int)(context.TaskSeed ^ 0x4745_4D00 ^ (draw * 7919))));
        int[] rows = Enumerable.Range(0, (int)task.Count).OrderBy(_ => random.Next()).Take(MemoriesPerTask).ToArray();
        var classes = ExampleMemory.ClassesOf(task, context.State.Kind);
        var old = Memory;
        // With given boundaries the group is the task index, as ever; after fits with boundaries inside, the next number.
        Memory = inFit ? JoinGroup(task, classes, rows, random)
            : Memory.Append(task, Math.Max(context.TaskIndex, Memory.TaskOf.DefaultIfEmpty(-1).Max() + 1), classes, rows);
        if (ReferenceEquals(old, _madeHere)) old.DisposeTensors(); // made at this fit's last boundary; the inherited one is shared
        _madeHere = Memory;
        ReleaseTaskResources();
    }

    internal override void ReleaseTaskResources()
    {
        foreach (var past in _pastTasks)
        {
            past.Features.Dispose();
            past.Targets.Dispose();
            past.Heads?.Dispose();
        }
        _pastTasks = new();
        _gradient?.Dispose();
        MemoryGradients?.Dispose();
        _gradient = MemoryGradients = null;
    }

    /// <summary>With boundaries inside a fit: window w's rows join group g = w mod <see cref="MemoryGroupsInsideFit"/> as
    /// reservoir sampling over the rows the group's windows offered (each offers <see cref="MemoriesPerTask"/>), so the
    /// group stays a uniform sample of its windows' and at most <see cref="MemoriesPerTask"/> rows.</summary>
    private ExampleMemory JoinGroup(ContinualTaskData window, int[] classes, int[] rows, Random random)
    {
        if (_windows == 0)
        {
            // Numbered after every task the memory holds (fits with given boundaries before), so none is overwritten.
            _groupBase = Memory.TaskOf.DefaultIfEmpty(-1).Max() + 1;
            _offered = new long[MemoryGroupsInsideFit];
        }
        int slot = (int)(_windows % MemoryGroupsInsideFit), group = _groupBase + slot;
        _windows++;
        var slots = Enumerable.Range(0, Memory.Count).ToList();
        var members = Enumerable.Range(0, Memory.Count).Where(i => Memory.TaskOf[i] == group).ToList();
        foreach (int row in rows)
        {
            long seen = ++_offered[slot];
            if (members.Count < MemoriesPerTask)
            {
                members.Add(slots.Count);
                slots.Add(-1 - row);
            }
            else if (random.NextInt64(seen) is long j && j < MemoriesPerTask) slots[members[(int)j]] = -1 - row;
        }
        return Memory.Compose(slots.ToArray(), window, group, classes);
    }

    private const long MaxWindows = 1L << 50; // bounds the counts read from a file

    /// <summary>Supported: each window's rows join one of at most <see cref="MemoryGroupsInsideFit"/> groups (see there),
    /// each group one constraint; the memory is then at most that many times <see cref="MemoriesPerTask"/> rows.</summary>
    public override string? WhyNotBoundariesInsideFit => null;

    internal override void CopyStateFrom(ContinualPlugin previous)
    {
        base.CopyStateFrom(previous);
        var gem = (GemPlugin)previous;
        (_windows, _groupBase, _offered) = (gem._windows, gem._groupBase, (long[])gem._offered.Clone());
    }

    /// <inheritdoc/>
    public override void SaveState(ContinualState state)
    {
        base.SaveState(state);
        if (_windows == 0) return; // nothing for given boundaries: their models save as before
        state.Set("windows", _windows);
        state.Set("group base", (long)_groupBase);
        using var offered = tensor(_offered);
        state.Set("rows offered per group", offered);
    }

    /// <inheritdoc/>
    public override void LoadState(ContinualState state)
    {
        base.LoadState(state);
        _windows = state.Contains("windows") ? state.GetInt64("windows") : 0;
        if (_windows is < 0 or > MaxWindows) throw new ContinualModelFormatException($"GEM's window count {_windows} is out of range.");
        if (_windows == 0) return;
        _groupBase = state.GetInt32("group base", 0, int.MaxValue - 1000);
        using var offered = state.GetTensor("rows offered per group");
        if (offered.dtype != ScalarType.Int64 || offered.dim() != 1) throw new ContinualModelFormatException("GEM's rows offered per group must be a vector of integers.");
        _offered = offered.data<long>().ToArray();
        if (_offered.Any(n => n is < 0 or > MaxWindows)) throw new ContinualModelFormatException("GEM's rows offered per group are out of range.");
        if (_offered.Length != MemoryGroupsInsideFit)
            throw new ContinualModelFormatException($"GEM's memory has {_offered.Length} groups inside fits; its MemoryGroupsInsideFit is {MemoryGroupsInsideFit}.");
    }
}

/// <summary>
/// Averaged GEM (Chaudhry et al. 2019): <see cref="AGemTrainer"/>, whose remarks give the equation. One reference gradient
/// per step from a random sample of the whole memory; when the step's gradient g points against it (gᵀg_ref &lt; 0), g is
/// projected onto its half-space. The memory is task-balanced with a fixed budget.
/// </summary>
public sealed class AGemPlugin : MemoryPlugin
{
    private ContinualTaskData? _deviceMemory;
    private Generator? _generator;
    private FlatGradients? _flat;
    private Tensor? _gradient, _reference;
    private ExampleMemory? _madeHere; // the memory this instance made last (the one it started with is shared with the previous model)

    /// <summary>The memory budget in rows, shared equally among the tasks seen. Default 5,120 (256 per task after 20 tasks).</summary>
    public int MemorySize { get; set; } = 5120;

    /// <summary>Rows drawn from the memory for each step's reference gradient. Default 256.</summary>
    public int ReferenceSampleSize { get; set; } = 256;

    /// <inheritdoc/>
    public override void Validate()
    {
        if (MemorySize < 1 || MemorySize > 10_000_000) throw new ArgumentOutOfRangeException(nameof(MemorySize), "Option MemorySize must be in [1, 10,000,000].");
        if (ReferenceSampleSize < 1) throw new ArgumentOutOfRangeException(nameof(ReferenceSampleSize), "Option ReferenceSampleSize must be positive.");
    }

    internal long ProjectedSteps { get; private set; }
    internal long Steps { get; private set; }

    /// <inheritdoc/>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        ProjectedSteps = Steps = 0;
        _flat = new FlatGradients(context.Network);
        _deviceMemory = Memory.ToDevice(context.Device);
        if (_deviceMemory is null) return;
        _generator = new Generator((ulong)(context.TaskSeed ^ 0x4147_454D ^ (context.BoundariesPassed * 7919L)), CPU); // draws are made on the CPU (then moved), so the generator lives there on every device
        // Detached and disposed at the task's end: a boundary inside a fit runs this again in a nested dispose scope.
        _gradient = zeros(_flat.Size, device: context.Device).DetachFromDisposeScope();
        _reference = zeros(_flat.Size, device: context.Device).DetachFromDisposeScope();
    }

    /// <inheritdoc/>
    public override void AfterBackward(ContinualTrainingContext context)
    {
        Steps++;
        if (_deviceMemory is null) return;
        var flat = _flat!;
        flat.CopyTo(_gradient!);
        long count = _deviceMemory.Count;
        // The reference sample: the whole memory when it is no larger than the sample size, else a uniform draw.
        ContinualBatch reference = count <= ReferenceSampleSize
            ? new ContinualBatch(_deviceMemory.Features, _deviceMemory.Targets, _deviceMemory.Heads)
            : _deviceMemory.Select(randint(count, [ReferenceSampleSize], generator: _generator, device: CPU).to(context.Device));
        flat.Zero();
        // Data-parallel: each process takes its share of the sample; the shares' gradients add up to the sample mean's.
        ContinualBatch share = DataParallel.Share(reference, context.Communicator);
        if (share.Features.shape[0] > 0) DataParallel.PartOfMean(context.Loss(share), share, reference, context.Communicator).backward();
        flat.CopyTo(_reference!);
        context.Communicator.AllReduceSum(_reference!);
        flat.AgreePresence(context.Communicator);
        if (Project(_gradient!, _reference!)) ProjectedSteps++;
        flat.CopyFrom(_gradient!);
    }

    /// <summary>g ← g − (gᵀg_ref / g_refᵀg_ref) g_ref when gᵀg_ref &lt; 0 (Chaudhry et al. 2019, eq. 11), in place; true when it projected.</summary>
    internal static bool Project(Tensor gradient, Tensor reference)
    {
        using var _ = no_grad();
        double dot = gradient.dot(reference).item<float>();
        if (dot >= 0) return false;
        double norm = reference.dot(reference).item<float>();
        if (norm > 0) gradient.add_(reference, alpha: -dot / norm);
        return true;
    }

    /// <inheritdoc/>
    public override void AfterTask(ContinualTrainingContext context)
    {
        var task = context.Task;
        bool inFit = context.Options.Boundaries != ContinualBoundaries.Given;
        // With boundaries inside a fit each window is a group of its own (the next after the memory's last), so the
        // shares spread over the windows and the memory stays MemorySize rows however many there are (with more windows
        // than MemorySize rows, FairShares gives the rows to the earliest groups and later windows add none). With given
        // boundaries the group is the task index, as ever (the memory's groups are then all below it).
        int group = Math.Max(context.TaskIndex, Memory.TaskOf.DefaultIfEmpty(-1).Max() + 1);
        long draw = inFit ? context.Step : 0; // distinct at every consolidation of a fit, the end's included
        var random = new Random(unchecked((int)(context.TaskSeed ^ 0x4147_4500 ^ (draw * 7919))));
        var old = Memory;
        Memory = old.Offer(task, group, ExampleMemory.ClassesOf(task, context.State.Kind), ReplayBufferPolicy.TaskBalanced,
            MemorySize, ExemplarSelection.Random, random, embed: null);
        if (ReferenceEquals(old, _madeHere)) old.DisposeTensors(); // made at this fit's last boundary; the inherited one is shared
        _madeHere = Memory;
        _deviceMemory?.Dispose();
        _deviceMemory = null;
        _generator?.Dispose();
        _generator = null;
        _gradient?.Dispose();
        _reference?.Dispose();
        _gradient = _reference = null;
    }

    /// <summary>Supported: at a boundary the window's sample joins the memory as a group of its own (fair shares over
    /// the groups, at most <see cref="MemorySize"/> rows), and the reference gradients come from the memory as it then is.</summary>
    public override string? WhyNotBoundariesInsideFit => null;

    /// <inheritdoc/>
    public override void SaveTaskProgress(ContinualState state) => Checkpoint.WriteGenerator(state, _generator);

    /// <inheritdoc/>
    public override void LoadTaskProgress(ContinualState state) => Checkpoint.ReadGenerator(state, _generator);

}
