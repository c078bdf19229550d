using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>Experience replay (<see cref="ReplayTrainer"/>): rows drawn from the memory join every minibatch; the task's rows are offered to the memory after it.</summary>
internal sealed class ReplayStrategy : MemoryStrategy
{
    private readonly ReplayTrainer.Options _options;
    private TaskTensors? _deviceMemory;
    private Generator? _generator;

    public ReplayStrategy(ReplayTrainer.Options options) => _options = options;

    public override void BeforeTask(TrainingContext context)
    {
        _deviceMemory = Memory.ToDevice(context.Device);
        _generator = _deviceMemory is null ? null
            : new Generator((ulong)(context.TaskSeed ^ 0x5245_504C), CPU); // draws are made on the CPU (then moved), so the generator lives there on every device
    }

    public override IEnumerable<TrainingBatch> ExtraBatches(TrainingContext context, TrainingBatch taskBatch)
    {
        if (_deviceMemory is null) yield break;
        long batchRows = taskBatch.Features.shape[0];
        int rows = _options.ReplayRows(batchRows);
        if (rows == 0) yield break;
        Tensor index = randint(_deviceMemory.Count, [rows], generator: _generator, device: CPU).to(context.Device);
        var replayed = _deviceMemory.Select(index);
        yield return replayed with { Weight = (double)rows / batchRows };
    }

    public override void AfterTask(TrainingContext context)
    {
        var task = context.Task;
        var random = new Random(unchecked((int)(context.TaskSeed ^ 0x5245_5000)));
        var network = context.Network;
        Memory = Memory.Offer(task, context.TaskIndex, ExampleMemory.ClassesOf(task, context.State.Kind), _options.BufferPolicy,
            _options.MemorySize, _options.Selection, random, network.Embed);
        _deviceMemory?.Dispose();
        _deviceMemory = null;
        _generator?.Dispose();
        _generator = null;
    }

    public override void SaveTaskProgress(BinaryWriter writer) => Checkpoint.WriteGenerator(writer, _generator);
    public override void LoadTaskProgress(BinaryReader reader) => Checkpoint.ReadGenerator(reader, _generator);
}

/// <summary>Several strategies on the same loop (e.g. replay + online EWC): every hook runs each part in order; the state is each part's state in turn.</summary>
internal sealed class CompositeStrategy(IReadOnlyList<ContinualStrategy> parts) : ContinualStrategy
{
    public IReadOnlyList<ContinualStrategy> Parts { get; } = parts;

    public override NetworkColumns Columns => Parts.Select(p => p.Columns).FirstOrDefault(c => c != NetworkColumns.Shared);
    public override bool SupportsCheckpoints => Parts.All(p => p.SupportsCheckpoints);
    public override bool AllocatesPerTask => Parts.Any(p => p.AllocatesPerTask);
    public override bool GrowsHiddenLayers => Parts.Any(p => p.GrowsHiddenLayers);
    public override void AttachTo(ContinualNetwork network) { foreach (var p in Parts) p.AttachTo(network); }
    public override int EpochCount(TrainingContext context) => Parts.Max(p => p.EpochCount(context));
    public override void BeforeEpoch(TrainingContext context) { foreach (var p in Parts) p.BeforeEpoch(context); }
    public override IEnumerable<TorchSharp.Modules.Parameter> ExtraParameters(TrainingContext context) => Parts.SelectMany(p => p.ExtraParameters(context));
    public override ContinualCapacity? Capacity(ContinualModelState state) => Parts.Select(p => p.Capacity(state)).FirstOrDefault(c => c is not null);
    public override void SaveTaskProgress(BinaryWriter writer) { foreach (var p in Parts) p.SaveTaskProgress(writer); }
    public override void LoadTaskProgress(BinaryReader reader) { foreach (var p in Parts) p.LoadTaskProgress(reader); }

    public override void CopyStateFrom(ContinualStrategy previous)
    {
        var other = ((CompositeStrategy)previous).Parts;
        for (int i = 0; i < Parts.Count; i++) Parts[i].CopyStateFrom(other[i]);
    }

    public override void BeforeTask(TrainingContext context) { foreach (var p in Parts) p.BeforeTask(context); }
    public override IEnumerable<TrainingBatch> ExtraBatches(TrainingContext context, TrainingBatch taskBatch) => Parts.SelectMany(p => p.ExtraBatches(context, taskBatch));

    public override Tensor? Penalty(TrainingContext context)
    {
        Tensor? total = null;
        foreach (var p in Parts)
            if (p.Penalty(context) is Tensor penalty) total = total is null ? penalty : total + penalty;
        return total;
    }

    public override void AfterBackward(TrainingContext context) { foreach (var p in Parts) p.AfterBackward(context); }
    public override void AfterStep(TrainingContext context) { foreach (var p in Parts) p.AfterStep(context); }
    public override void AfterTask(TrainingContext context) { foreach (var p in Parts) p.AfterTask(context); }
    public override void SaveState(BinaryWriter writer) { foreach (var p in Parts) p.SaveState(writer); }
    public override void LoadState(BinaryReader reader, int formatVersion) { foreach (var p in Parts) p.LoadState(reader, formatVersion); }

    public override IReadOnlyDictionary<string, long> StateSizes() =>
        Parts.SelectMany(p => p.StateSizes()).GroupBy(kv => kv.Key).ToDictionary(g => g.Key, g => g.Sum(kv => kv.Value));
}
