using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>Joint training: keeps every task's rows; before each task, re-initialises the network and trains on the union.</summary>
internal sealed class JointStrategy : ContinualStrategy
{
    // Tensors here are never changed once stored, so copies of the strategy may share them.
    private List<(Tensor Features, Tensor Targets, Tensor? Heads)> _tasks = new();
    private TaskTensors? _current;

    public override void BeforeTask(TrainingContext context)
    {
        if (context.Stream is not null)
            throw new NotSupportedException("The joint baseline keeps every row of every task; it cannot train on a task larger than MemoryBudgetMegabytes. Leave MemoryBudgetMegabytes unset for it.");
        context.Network.Reinitialize();
        _current = context.Task;
        if (_tasks.Count == 0) return;
        var device = context.Device;
        var current = context.Task;
        context.Task = new TaskTensors( // the loop disposes this union when the task ends
            cat(_tasks.Select(t => t.Features.to(device)).Append(current.Features).ToList(), 0),
            cat(_tasks.Select(t => t.Targets.to(device)).Append(current.Targets).ToList(), 0),
            current.Heads is null ? null : cat(_tasks.Select(t => t.Heads!.to(device)).Append(current.Heads).ToList(), 0));
    }

    public override void AfterTask(TrainingContext context)
    {
        var own = _current!;
        _tasks = new List<(Tensor, Tensor, Tensor?)>(_tasks)
        {
            (own.Features.cpu().clone().DetachFromDisposeScope(), own.Targets.cpu().clone().DetachFromDisposeScope(), own.Heads?.cpu().clone().DetachFromDisposeScope()),
        };
        _current = null;
    }

    public override void CopyStateFrom(ContinualStrategy previous) => _tasks = new(((JointStrategy)previous)._tasks);

    public override void SaveState(BinaryWriter writer)
    {
        writer.Write(_tasks.Count);
        foreach (var (features, targets, heads) in _tasks)
        {
            TensorIO.Write(writer, features);
            TensorIO.Write(writer, targets);
            writer.Write(heads is not null);
            if (heads is not null) TensorIO.Write(writer, heads);
        }
    }

    public override void LoadState(BinaryReader reader, int formatVersion)
    {
        int count = ModelIO.ReadCount(reader, "joint task");
        var tasks = new List<(Tensor, Tensor, Tensor?)>();
        for (int i = 0; i < count; i++)
            tasks.Add((TensorIO.Read(reader, "joint features"), TensorIO.Read(reader, "joint targets"), reader.ReadBoolean() ? TensorIO.Read(reader, "joint heads") : null));
        _tasks = tasks;
    }

    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>
    {
        ["stored rows"] = _tasks.Sum(t => t.Features.shape[0]),
        ["stored floats"] = _tasks.Sum(t => t.Features.numel()),
    };
}

/// <summary>One network per task: asks the loop for a trunk per head; nothing else to do.</summary>
internal sealed class IndependentStrategy : ContinualStrategy
{
    public override NetworkColumns Columns => NetworkColumns.PerTask;
}
