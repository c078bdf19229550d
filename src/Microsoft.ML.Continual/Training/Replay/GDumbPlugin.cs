using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// GDumb (Prabhu, Torr and Dokania 2020, "GDumb: A Simple Approach that Questions Our Progress in Continual Learning",
/// ECCV): a greedy class-balanced memory, and a network trained from scratch on the memory alone at every task.
/// </summary>
/// <remarks>
/// <para>The sampler (their Algorithm 1): each incoming row is stored while the memory has room; when it is full, a row of a
/// class with fewer rows than the largest class replaces a random row of the largest class; otherwise it is dropped. So
/// the memory stays class-balanced whatever order the classes arrive in. Each fit then re-initialises the network and
/// trains it for <see cref="Epochs"/> epochs on the memory only (the task's rows are seen only through it); the paper's
/// MNIST runs use SGD with momentum and cosine annealing, which the trainer's options give
/// (<see cref="ContinualTrainerOptions.LearningRateSchedule"/>).</para>
/// </remarks>
public sealed class GDumbPlugin : MemoryPlugin
{
    /// <summary>The memory budget in rows (k). Default 500.</summary>
    public int MemorySize { get; set; } = 500;

    /// <summary>Epochs of training from scratch on the memory at each fit; 0: the options' <see cref="ContinualTrainerOptions.NumberOfEpochs"/>. Default 0.</summary>
    public int Epochs { get; set; }

    /// <inheritdoc/>
    public override void Validate()
    {
        if (MemorySize is < 1 or > 10_000_000) throw new ArgumentOutOfRangeException(nameof(MemorySize), "Option MemorySize must be in [1, 10,000,000].");
        if (Epochs is < 0 or > 100_000) throw new ArgumentOutOfRangeException(nameof(Epochs), "Option Epochs must be in [0, 100,000].");
    }

    /// <summary>Not supported, and not needed: every row of a fit joins the greedy memory before any step, and the steps
    /// train on the memory alone, so a boundary inside the fit would mark nothing. GDumb is task-free as it is: a fit per
    /// slice of a stream (each refit feeds the memory and retrains).</summary>
    public override string? WhyNotBoundariesInsideFit =>
        "every row of a fit joins its greedy memory before training starts and the steps train on the memory alone, so a boundary inside the fit would mark nothing; it needs none (refit it on each slice of the stream)";

    /// <inheritdoc/>
    public override int EpochCount(ContinualTrainingContext context) => Epochs > 0 ? Epochs : context.Options.NumberOfEpochs;

    /// <summary>The task's rows go through the greedy sampler; then the network starts afresh and trains on the memory.</summary>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        if (context.IsStreaming)
            throw new NotSupportedException("GDumb trains on its memory only; it does not need a task larger than MemoryBudgetMegabytes to stream. Leave MemoryBudgetMegabytes unset for it.");
        var task = context.Task;
        var random = new Random(unchecked((int)(context.TaskSeed ^ 0x4744_4D42)));
        Memory = Memory.Greedy(task, context.TaskIndex, ExampleMemory.ClassesOf(task, context.Kind), MemorySize, random);
        context.Network.Reinitialize(context.Random);
        var memory = Memory.ToDevice(context.Device)!;
        context.Task = memory; // the loop disposes it at the end of the task
    }

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>
    {
        ["memory rows"] = Memory.Count,
        ["memory classes"] = Memory.ClassOf.Distinct().Count(),
    };
}
