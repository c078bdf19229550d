using System.Text;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// What a fit with <see cref="ContinualTrainerOptions.ContinueAcrossFits"/> leaves in the model for the next fit to go on
/// from, so that many refits on consecutive slices train as one pass over the whole stream: the step count and a due
/// boundary, the optimizer's state, the fit's generator, the boundary window (its sample and its generator) and the
/// boundary detector (loss plateau or input shift), each plugin's in-task progress (<see cref="ContinualPlugin.SaveTaskProgress"/>), and the rows
/// short of a batch at the slice's end. One store, <c>Continuation.bin</c> in the zip; its size is bounded by the
/// window (<see cref="ContinualTrainerOptions.BoundarySampleRows"/>), one batch of rows and the optimizer's moments.
/// </summary>
internal static class StreamContinuation
{
    public const string EntryName = "Continuation.bin";
    private const string Pending = "pending/";

    /// <summary>Where the pass stands at the end of a fit; <paramref name="task"/> holds every row of the fit (the pending
    /// ones of the previous fit first) and the first <paramref name="trainedRows"/> were trained.</summary>
    public static ContinualState Capture(ContinualTrainingContext context, ContinualTaskData task, long trainedRows)
    {
        var state = new ContinualState();
        try
        {
            state.Set("step", context.Step);
            state.Set("boundaries passed", context.BoundariesPassed);
            state.Set("boundary due", context.BoundaryDue);
            OptimizerMoments.Save(state, OptimizerPrefix, context.Optimizer!);
            state.Set("optimizer settings", OptimizerSettings(context.Options));
            state.Set("plugins", PluginNames(context.State.Plugins));
            using (var shapes = ParameterShapes(context)) state.Set("optimizer shapes", shapes);
            using (var random = context.Random.get_state()) state.Set("random", random);
            context.Window!.Save(state, "window/");
            if (context.Detector is { } detector)
            {
                state.Set("detector kind", detector.Kind);
                detector.Save(state, "detector/");
            }
            long pending = task.Count - trainedRows;
            state.Set(Pending + "rows", pending);
            if (pending > 0)
            {
                using var scope = NewDisposeScope();
                state.Set(Pending + "features", task.Features.narrow(0, trainedRows, pending).cpu());
                state.Set(Pending + "targets", task.Targets.narrow(0, trainedRows, pending).cpu());
                if (task.Heads is not null) state.Set(Pending + "heads", task.Heads.narrow(0, trainedRows, pending).cpu());
            }
            var plugins = context.State.Plugins.Items;
            for (int i = 0; i < plugins.Count; i++)
            {
                using var progress = new ContinualState();
                plugins[i].SaveTaskProgress(progress);
                using var buffer = new MemoryStream();
                using (var writer = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true)) progress.Write(writer);
                using var bytes = tensor(buffer.ToArray(), dtype: ScalarType.Byte);
                state.Set($"plugin {i}", bytes);
            }
            return state;
        }
        catch
        {
            state.Dispose();
            throw;
        }
    }

    /// <summary>The rows the previous fit left short of a batch, to be trained first: features, targets and heads (null
    /// when the model has one head); null when there are none.</summary>
    public static (Tensor Features, Tensor Targets, Tensor? Heads)? PendingRows(ContinualState carried, int featureSize)
    {
        long rows = carried.GetInt64(Pending + "rows");
        if (rows == 0) return null;
        var features = carried.GetTensor(Pending + "features");
        var targets = carried.GetTensor(Pending + "targets");
        var heads = carried.TryGetTensor(Pending + "heads");
        if (rows < 0 || rows > 100_000_000 || features.dtype != ScalarType.Float32 || features.dim() != 2 || features.shape[0] != rows || features.shape[1] != featureSize
            || targets.dim() != 1 || targets.shape[0] != rows || targets.dtype is not (ScalarType.Int64 or ScalarType.Float32)
            || (heads is not null && (heads.dtype != ScalarType.Int64 || heads.dim() != 1 || heads.shape[0] != rows)))
            throw new ContinualModelFormatException($"The stream continuation's pending rows do not all hold {rows} rows of {featureSize} features.");
        return (features, targets, heads);
    }

    /// <summary>Boundaries the stream's pass had passed before this fit.</summary>
    public static int BoundariesBefore(ContinualState? carried) => carried?.GetInt32("boundaries passed") ?? 0;

    /// <summary>The boundary window the previous fit left.</summary>
    public static BoundaryWindow Window(ContinualState carried, int capacity, int featureSize, Device device) =>
        BoundaryWindow.Load(carried, "window/", capacity, featureSize, device);

    /// <summary>Refuses a continuation written by other plugins than this fit's (their progress would be misread).</summary>
    public static void CheckPlugins(ContinualState carried, PluginList plugins)
    {
        string written = carried.GetString("plugins"), now = PluginNames(plugins);
        if (written != now)
            throw new ArgumentException($"The model continues a stream's pass made with plugins [{written}]; this fit has [{now}]. Refit it with the trainer that made it, or set ContinueAcrossFits = false to start a new task.", "previousModel");
    }

    /// <summary>Goes on from <paramref name="carried"/>: after the plugins' BeforeTask and the optimizer's creation, as a
    /// checkpoint resumes. An optimizer whose parameters changed shape (a new class widened the head) or whose settings
    /// changed starts anew, with a warning.</summary>
    public static void Restore(ContinualState carried, ContinualTrainingContext context, Action<string> warn)
    {
        context.Step = carried.GetInt64("step");
        context.BoundariesPassed = carried.GetInt32("boundaries passed");
        context.BoundaryDue = carried.GetBoolean("boundary due");
        using (var random = carried.GetTensor("random")) context.Random.set_state(random);
        if (context.Detector is { } detector)
        {
            // The first continuations had only the loss-plateau detector, without its kind.
            string? written = carried.Contains("detector kind") ? carried.GetString("detector kind")
                : carried.Contains("detector/losses") ? "loss plateau" : null;
            if (written == detector.Kind) detector.Load(carried, "detector/");
            else warn($"The previous fit placed its boundaries {(written is null ? "every N steps" : "by its " + written + " detector")}; the {detector.Kind} detector starts with nothing seen.");
        }
        using (var shapes = ParameterShapes(context))
        using (var saved = carried.GetTensor("optimizer shapes"))
        {
            if (carried.GetString("optimizer settings") != OptimizerSettings(context.Options))
                warn("The optimizer's options changed since the previous fit: the optimizer starts anew with this fit's, so this fit does not continue the pass exactly.");
            else if (!OptimizerMoments.IsIn(carried, OptimizerPrefix))
                warn("The stream continuation was written by an earlier version of this library, whose optimizer state is not read (its format was not bounded): the optimizer starts anew, so this fit does not continue the pass exactly.");
            else if (saved.data<long>().ToArray().SequenceEqual(shapes.data<long>().ToArray())) LoadOptimizer(carried, context);
            else warn("The network's parameters changed shape since the previous fit (a new class widened the head): the optimizer starts anew, so this fit does not continue the pass exactly. Give the label as a key of known count to keep the shape.");
        }
        var plugins = context.State.Plugins.Items;
        for (int i = 0; i < plugins.Count; i++)
        {
            using var bytes = carried.GetTensor($"plugin {i}");
            using var stream = new MemoryStream(bytes.data<byte>().ToArray());
            using var reader = new BinaryReader(stream, Encoding.UTF8);
            using var progress = ContinualState.Read(reader, stream.Length, $"stream progress of plugin '{plugins[i].Name}'");
            plugins[i].LoadTaskProgress(progress);
        }
    }

    /// <summary>The options that make the optimizer besides its learning rate: a change starts it anew.</summary>
    private static string OptimizerSettings(ContinualTrainerOptions options) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{options.Optimizer}|momentum={options.Momentum:R}|weight decay={options.WeightDecay:R}");

    private static string PluginNames(PluginList plugins) => string.Join(", ", plugins.Names);

    private const string OptimizerPrefix = "optimizer/";

    /// <summary>The saved state of the optimizer, with the learning rates the new fit's options gave it (its schedule is the fit's).</summary>
    private static void LoadOptimizer(ContinualState carried, ContinualTrainingContext context) =>
        OptimizerMoments.Load(carried, OptimizerPrefix, context.Optimizer!, "stream continuation");

    /// <summary>Each optimized parameter's rank and sizes, in the optimizer's order, as one vector.</summary>
    private static Tensor ParameterShapes(ContinualTrainingContext context)
    {
        var words = new List<long>();
        foreach (var parameter in context.Optimizer!.parameters())
        {
            words.Add(parameter.dim());
            words.AddRange(parameter.shape);
        }
        return tensor(words.ToArray());
    }
}
