using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>Joint training (<see cref="JointTrainer"/>): keeps every task's rows; before each task, re-initialises the
/// network and trains on the union. The upper bound, not a continual method.</summary>
public sealed class JointPlugin : ContinualPlugin
{
    // Tensors here are never changed once stored, so copies of the strategy may share them.
    private List<(Tensor Features, Tensor Targets, Tensor? Heads)> _tasks = new();
    private ContinualTaskData? _current;

    /// <inheritdoc/>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        if (context.Stream is not null)
            throw new NotSupportedException("The joint baseline keeps every row of every task; it cannot train on a task larger than MemoryBudgetMegabytes. Leave MemoryBudgetMegabytes unset for it.");
        context.Network.Reinitialize(context.Random);
        _current = context.Task;
        if (_tasks.Count == 0) return;
        var device = context.Device;
        var current = context.Task;
        context.Task = new ContinualTaskData( // the loop disposes this union when the task ends
            cat(_tasks.Select(t => t.Features.to(device)).Append(current.Features).ToList(), 0),
            cat(_tasks.Select(t => t.Targets.to(device)).Append(current.Targets).ToList(), 0),
            current.Heads is null ? null : cat(_tasks.Select(t => t.Heads!.to(device)).Append(current.Heads).ToList(), 0));
    }

    /// <inheritdoc/>
    public override void AfterTask(ContinualTrainingContext context)
    {
        var own = _current!;
        _tasks = new List<(Tensor, Tensor, Tensor?)>(_tasks)
        {
            (own.Features.cpu().clone().DetachFromDisposeScope(), own.Targets.cpu().clone().DetachFromDisposeScope(), own.Heads?.cpu().clone().DetachFromDisposeScope()),
        };
        _current = null;
    }

    internal override void CopyStateFrom(ContinualPlugin previous) => _tasks = new(((JointPlugin)previous)._tasks);

    /// <inheritdoc/>
    public override void SaveState(ContinualState state)
    {
        state.Set("tasks", _tasks.Count);
        for (int i = 0; i < _tasks.Count; i++)
        {
            var (features, targets, heads) = _tasks[i];
            state.Set($"task{i}/features", features);
            state.Set($"task{i}/targets", targets);
            if (heads is not null) state.Set($"task{i}/heads", heads);
        }
    }

    /// <inheritdoc/>
    public override void LoadState(ContinualState state)
    {
        int count = state.GetInt32("tasks", 0, 1 << 20);
        var tasks = new List<(Tensor, Tensor, Tensor?)>();
        for (int i = 0; i < count; i++)
        {
            var features = state.GetTensor($"task{i}/features").DetachFromDisposeScope();
            var targets = state.GetTensor($"task{i}/targets").DetachFromDisposeScope();
            var heads = state.TryGetTensor($"task{i}/heads")?.DetachFromDisposeScope();
            if (features.dim() != 2 || targets.shape[0] != features.shape[0] || (heads is not null && heads.shape[0] != features.shape[0]))
                throw new ContinualModelFormatException($"The joint baseline's task {i} has parts of different lengths.");
            tasks.Add((features, targets, heads));
        }
        _tasks = tasks;
    }

    internal override void LoadLegacyState(BinaryReader reader, int formatVersion)
    {
        int count = ModelIO.ReadCount(reader, "joint task");
        var tasks = new List<(Tensor, Tensor, Tensor?)>();
        for (int i = 0; i < count; i++)
            tasks.Add((TensorIO.Read(reader, "joint features"), TensorIO.Read(reader, "joint targets"), reader.ReadBoolean() ? TensorIO.Read(reader, "joint heads") : null));
        _tasks = tasks;
    }

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>
    {
        ["stored rows"] = _tasks.Sum(t => t.Features.shape[0]),
        ["stored floats"] = _tasks.Sum(t => t.Features.numel()),
    };
}

/// <summary>One network per task (<see cref="IndependentTrainer"/>): asks the loop for a trunk (backbone) per head; nothing else to do.</summary>
public sealed class IndependentPlugin : ContinualPlugin
{
    internal override NetworkColumns Columns => NetworkColumns.PerTask;
}
