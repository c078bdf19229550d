using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>Experience replay (<see cref="ReplayTrainer"/>, whose remarks give the loss): rows drawn from the memory join
/// every minibatch as an extra batch; the task's rows are offered to the memory after it.</summary>
public sealed class ReplayPlugin : MemoryPlugin
{
    private ContinualTaskData? _deviceMemory;
    private Generator? _generator;
    private ExampleMemory? _madeHere; // the memory this instance made last (the one it started with is shared with the previous model)

    /// <summary>The memory budget in rows. Default 1,000.</summary>
    public int MemorySize { get; set; } = 1000;

    /// <summary>Which rows the memory keeps. Default <see cref="ReplayBufferPolicy.Reservoir"/>.</summary>
    public ReplayBufferPolicy BufferPolicy { get; set; } = ReplayBufferPolicy.Reservoir;

    /// <summary>How a balanced memory picks a task's rows. Default <see cref="ExemplarSelection.Random"/>; herding needs a
    /// balanced <see cref="BufferPolicy"/> (reservoir sampling is random by definition).</summary>
    public ExemplarSelection Selection { get; set; } = ExemplarSelection.Random;

    /// <summary>The share s of each minibatch's rows drawn from the memory, in [0, 0.95]. Default 0.5 (old:new = 1:1).</summary>
    public double ReplayShare { get; set; } = 0.5;

    /// <inheritdoc/>
    public override void Validate()
    {
        if (MemorySize < 1 || MemorySize > 10_000_000) throw new ArgumentOutOfRangeException(nameof(MemorySize), "Option MemorySize must be in [1, 10,000,000].");
        if (!(ReplayShare >= 0 && ReplayShare <= 0.95)) throw new ArgumentOutOfRangeException(nameof(ReplayShare), "Option ReplayShare must be in [0, 0.95].");
        if (Selection == ExemplarSelection.Herding && BufferPolicy == ReplayBufferPolicy.Reservoir)
            throw new ArgumentOutOfRangeException(nameof(Selection), "Herding selection needs BufferPolicy ClassBalanced or TaskBalanced: reservoir sampling keeps a uniform random sample by definition.");
    }

    /// <summary>The rows drawn from the memory for a minibatch of <paramref name="batchRows"/> task rows.</summary>
    internal int ReplayRows(long batchRows) => (int)Math.Round(batchRows * ReplayShare / (1 - ReplayShare));

    /// <inheritdoc/>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        _deviceMemory = Memory.ToDevice(context.Device);
        _generator = _deviceMemory is null ? null
            // Draws are made on the CPU (then moved), so the generator lives there on every device; a boundary inside a
            // fit runs this again, with a seed of its own.
            : new Generator((ulong)(context.TaskSeed ^ 0x5245_504C ^ (context.BoundariesPassed * 7919L)), CPU);
    }

    /// <inheritdoc/>
    public override IEnumerable<ContinualBatch> ExtraBatches(ContinualTrainingContext context, ContinualBatch taskBatch)
    {
        if (_deviceMemory is null) yield break;
        long batchRows = taskBatch.Features.shape[0];
        int rows = ReplayRows(batchRows);
        if (rows == 0) yield break;
        Tensor index = randint(_deviceMemory.Count, [rows], generator: _generator, device: CPU).to(context.Device);
        var replayed = _deviceMemory.Select(index);
        yield return replayed with { Weight = (double)rows / batchRows };
    }

    /// <inheritdoc/>
    public override void AfterTask(ContinualTrainingContext context)
    {
        var task = context.Task;
        // With boundaries inside a fit each window's sample is offered as a group of its own, drawn with a seed of its own.
        bool inFit = context.Options.Boundaries != ContinualBoundaries.Given;
        // The next group after the memory's last: the task index itself when every earlier fit had given boundaries.
        int group = Math.Max(context.TaskIndex, Memory.TaskOf.DefaultIfEmpty(-1).Max() + 1);
        long draw = inFit ? context.Step : 0;
        var random = new Random(unchecked((int)(context.TaskSeed ^ 0x5245_5000 ^ (draw * 7919))));
        var network = context.Network;
        var old = Memory;
        Memory = old.Offer(task, group, ExampleMemory.ClassesOf(task, context.State.Kind), BufferPolicy,
            MemorySize, Selection, random, network.Embed);
        if (ReferenceEquals(old, _madeHere) && !ReferenceEquals(old, Memory)) old.DisposeTensors(); // made at this fit's last boundary
        _madeHere = Memory;
        _deviceMemory?.Dispose();
        _deviceMemory = null;
        _generator?.Dispose();
        _generator = null;
    }

    /// <summary>Supported: at a boundary inside a fit the window's sample (at most
    /// <see cref="ContinualTrainerOptions.BoundarySampleRows"/> rows, uniform over the window) is offered to the memory as
    /// a group of its own, and the memory never exceeds <see cref="MemorySize"/> rows. With the reservoir policy the
    /// reservoir runs over those samples, so it is uniform over the stream when the windows are of equal length.</summary>
    public override string? WhyNotBoundariesInsideFit => null;

    /// <inheritdoc/>
    public override void SaveTaskProgress(ContinualState state) => Checkpoint.WriteGenerator(state, _generator);

    /// <inheritdoc/>
    public override void LoadTaskProgress(ContinualState state) => Checkpoint.ReadGenerator(state, _generator);
}
