using System.Diagnostics;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// The one training loop every continual trainer runs, in named phases: check the request and the columns, read the
/// task, build the new model state (vocabulary, task ids, heads) and its network (made, or grown from the previous
/// model's), train the epochs with the plugins' hooks around forward, backward and the optimizer step, and consolidate.
/// It always trains a copy of the previous model, so a failure or cancellation leaves the previous model as it was; a
/// loss or parameter that becomes infinite or NaN fails the fit (<see cref="ContinualTrainingException"/>).
/// </summary>
internal static class TrainingLoop
{
    /// <summary>Trains one task and returns the new model state.</summary>
    /// <param name="env">Where progress is logged (<c>MLContext.Log</c>) and the default seed comes from.</param>
    /// <param name="previous">The model to continue from, or null for a first fit.</param>
    /// <param name="trainerName">The trainer's name, stored in the model.</param>
    /// <param name="options">The options to train with (already frozen: a private copy).</param>
    /// <param name="plugins">Fresh plugins, or copies of the previous model's carrying their state.</param>
    /// <param name="data">The task's rows.</param>
    /// <param name="cancellation">Stops training between batches; nothing of the previous model changes.</param>
    /// <param name="fit">Checkpoints, progress and statistics reports, the communicator; or null.</param>
    /// <param name="untrained">Build and initialise the model but run no epochs (the "row 0" model of an experiment).</param>
    public static ContinualModelState Train(IHostEnvironment env, ContinualModelState? previous, string trainerName,
        ContinualTrainerOptions options, PluginList plugins, IDataView data, CancellationToken cancellation, ContinualFitOptions? fit = null, bool untrained = false)
    {
        ContinualCommunicator communicator = fit?.Communicator ?? ContinualCommunicator.World;
        var progress = new FitProgress();
        var request = new FitRequest(env, previous, trainerName, options, plugins, data, cancellation, fit, communicator, untrained);
        if (communicator.Size == 1) return Train(request, progress);
        try
        {
            return Train(request, progress);
        }
        catch (ContinualDistributedException)
        {
            throw; // every process throws it at the same point
        }
        catch (Exception) when (!progress.Agreed)
        {
            progress.Agreed = true;
            communicator.AllSucceeded(false); // tells the others, which are waiting at the agreement, that this process failed
            throw;
        }
        catch (Exception e)
        {
            communicator.AbortJob(e); // training had started: the other processes would wait for this one forever
            throw;
        }
    }

    /// <summary>Whether the processes of a data-parallel fit have passed the agreement before training.</summary>
    private sealed class FitProgress
    {
        public bool Agreed { get; set; }
    }

    private sealed record FitRequest(IHostEnvironment Env, ContinualModelState? Previous, string TrainerName, ContinualTrainerOptions Options,
        PluginList Plugins, IDataView Data, CancellationToken Cancellation, ContinualFitOptions? Fit, ContinualCommunicator Communicator, bool Untrained);

    /// <summary>The columns' kinds, checked against the options and the previous model.</summary>
    private sealed record Columns(int FeatureSize, ValueKind LabelKind, ContinualPredictionKind Kind, ValueKind? TaskIdKind);

    /// <summary>The task read once: in memory (or, streaming, the sample used for consolidation) and the streaming pass's findings.</summary>
    private sealed record ReadTask(TaskData Data, StreamedTask? Streamed, long BudgetBytes, long RowBytes) : IDisposable
    {
        public void Dispose() => Data.Dispose();
    }

    /// <summary>The new state's label side: vocabulary, task ids and heads, each row's target and head.</summary>
    private sealed record Labels(LabelVocabulary? Classes, List<string> TaskIds, List<bool[]> HeadClasses, long[]? HeadOfRow,
        Dictionary<string, int> HeadIndex, SortedSet<long> HeadsInTask, Tensor Targets);

    private static ContinualModelState Train(FitRequest request, FitProgress progress)
    {
        var (env, previous, trainerName, options, plugins, data, cancellation, fit, communicator, _) = request;
        CheckRequest(request);
        var host = env.Register("Continual");
        using var channel = host.Start(trainerName);
        Columns columns = CheckColumns(data.Schema, options, previous);

        if (options.NumberOfThreads is int threads) set_num_threads(threads); // process-wide in libtorch: applied only when set
        int seed = options.Seed ?? (env is IHostEnvironmentInternal internalEnv ? internalEnv.Seed : null) ?? 0;
        // A fit that continues a stream's pass goes on with the previous fit's task; any other fit is a task of its own.
        ContinualState? carried = options.ContinueAcrossFits ? previous?.Continuation : null;
        if (carried is not null)
        {
            if (previous!.TasksSeen < 1) throw new ContinualModelFormatException("The model continues a stream's pass but says it has seen no task.");
            StreamContinuation.CheckPlugins(carried, plugins);
        }
        int taskIndex = carried is not null ? previous!.TasksSeen - 1 : previous?.TasksSeen ?? 0;
        var device = new Device(options.Device);
        var stopwatch = Stopwatch.StartNew();

        using ReadTask read = Read(data, options, columns.FeatureSize, seed + taskIndex, channel, cancellation);
        using var _ = NewDisposeScope();
        Labels labels = BuildLabels(read, previous, options, columns, data.Schema, channel);
        StreamingBatches? batches = StreamingFor(read, data, options, columns, labels);

        // The fit's own generator: every draw of the initialisation and of dropout comes from it (nothing process-wide),
        // seeded per task so that every task's initialisation, shuffling and dropout are reproducible.
        long taskSeed = seed + 1_000_003L * taskIndex;
        using var random = new Generator((ulong)taskSeed, CPU);
        ContinualNetwork network = BuildNetwork(previous, options, plugins, columns, labels, random);
        network.MoveTo(device);
        plugins.AttachTo(network);

        var state = new ContinualModelState
        {
            TrainerName = trainerName, Options = options, Plugins = plugins, Network = network, Kind = columns.Kind,
            FeatureSize = columns.FeatureSize, LabelKind = columns.LabelKind, Classes = labels.Classes, TaskIdKind = columns.TaskIdKind,
            TaskIds = labels.TaskIds, HeadClasses = labels.HeadClasses, TasksSeen = taskIndex, RowsSeen = previous?.RowsSeen ?? 0,
        };
        try
        {
            using var task = WithPendingRows(carried, new ContinualTaskData(read.Data.Features.to(device), labels.Targets.to(device),
                labels.HeadOfRow is null ? null : tensor(labels.HeadOfRow).to(device)), columns.FeatureSize, device);
            if (!options.ContinueAcrossFits && previous?.Continuation is { } dropped)
                channel.Warning($"The previous fit continued a stream's pass; this one does not (ContinueAcrossFits is false). The {dropped.GetInt64("pending/rows")} rows it left short of a batch "
                    + $"are not trained, and the {dropped.GetInt64("window/rows/count")} rows sampled since its last boundary are not consolidated: this fit is a task of its own.");
            // Continuing a pass, only whole batches are trained; the rest waits in the model for the next fit.
            long trainedRows = options.ContinueAcrossFits ? task.Count - task.Count % options.BatchSize : task.Count;
            using var trained = trainedRows == task.Count ? null
                : new ContinualTaskData(task.Features.narrow(0, 0, trainedRows), task.Targets.narrow(0, 0, trainedRows), task.Heads?.narrow(0, 0, trainedRows));
            var context = new ContinualTrainingContext(state, trained ?? task, device, cancellation)
            {
                Continuation = carried,
                TaskIndex = taskIndex, TaskSeed = taskSeed, Random = random, InfoSink = message => channel.Info(message),
                Stream = batches, HeadsInTask = labels.HeadsInTask.ToArray(), Communicator = communicator,
                Window = options.Boundaries == ContinualBoundaries.Given ? null
                    : carried is not null ? StreamContinuation.Window(carried, options.BoundarySampleRows, columns.FeatureSize, device)
                    : new BoundaryWindow(options.BoundarySampleRows, taskSeed, savable: options.ContinueAcrossFits),
                Detector = options.Boundaries switch
                {
                    ContinualBoundaries.OnLossPlateau => new LossPlateauDetector(options.BoundaryLossWindow, options.BoundaryLossMean, options.BoundaryLossVariance),
                    ContinualBoundaries.OnInputShift => new InputShiftDetector(columns.FeatureSize, options.BoundaryShiftRows, options.BoundaryShiftAlpha, taskSeed, savable: options.ContinueAcrossFits),
                    _ => null,
                },
            };
            using var window = context.Window;
            using var detector = context.Detector as IDisposable;
            if (communicator.Size > 1)
            {
                // The agreement: every process has checked and read its data (a failure before this point is caught above and
                // reported here, so that no process goes on into training and waits for one that stopped).
                progress.Agreed = true;
                if (!communicator.AllSucceeded(true))
                    throw new ContinualDistributedException($"Another process of this data-parallel fit ({communicator.Description}) failed while checking or reading its data; its error is in its output. This process stops too; nothing was trained.");
            }
            if (request.Untrained)
            {
                network.eval();
                return state;
            }
            network.Random = random;
            var loopClock = Stopwatch.StartNew();
            var epochs = TrainEpochs(context, channel, trainerName, fit);
            if (options.ContinueAcrossFits)
            {
                // Not a boundary: the pass goes on at the next fit, from where this one stopped.
                context.Network.eval();
                CheckParametersFinite(context, "at the fit's end");
                state.Continuation = StreamContinuation.Capture(context, task, trainedRows);
                foreach (var plugin in context.State.Plugins.Items) plugin.ReleaseTaskResources();
            }
            else Consolidate(context, fit);
            trainedRows = batches?.RowCount ?? context.Task.Count;
            var statistics = new ContinualFitStatistics(trainedRows, epochs.EpochSeconds.Count, context.Step, loopClock.Elapsed.TotalSeconds, epochs.EpochSeconds)
            {
                EpochTrainingAccuracy = epochs.EpochAccuracy,
                BoundariesPassed = context.BoundariesPassed - StreamContinuation.BoundariesBefore(carried), // this fit's
            };
            if (!ReferenceEquals(context.Task, task) && !ReferenceEquals(context.Task, trained)) context.Task.Dispose();
            state.Network.Random = null;
            state.TasksSeen = taskIndex + 1;
            state.RowsSeen += trainedRows;
            state.ShiftReference = KeepReference(read.Data.Features, options.ShiftReferenceRows, taskSeed);
            state.Network.eval();
            channel.Info($"Task {taskIndex + 1} trained on {trainedRows} rows in {stopwatch.Elapsed.TotalSeconds:F1} s.");
            fit?.Completed?.Invoke(statistics);
            return state;
        }
        catch
        {
            state.Dispose();
            throw;
        }
    }

    /// <summary>The task with the rows the previous fit left short of a batch first (a fit that continues a pass); the task
    /// itself when there are none.</summary>
    private static ContinualTaskData WithPendingRows(ContinualState? carried, ContinualTaskData task, int featureSize, Device device)
    {
        if (carried is null || StreamContinuation.PendingRows(carried, featureSize) is not var (features, targets, heads)) return task;
        using (task)
        using (features)
        using (targets)
        using (heads)
        {
            if ((heads is null) != (task.Heads is null))
                throw new ContinualDataException(null, "The rows left from the previous fit and this fit's rows do not both have task ids: a pass continued across fits keeps its task-id column.");
            using var scope = NewDisposeScope();
            return new ContinualTaskData(cat([features.to(device), task.Features]).DetachFromDisposeScope(),
                cat([targets.to(device).to_type(task.Targets.dtype), task.Targets]).DetachFromDisposeScope(),
                heads is null ? null : cat([heads.to(device), task.Heads!]).DetachFromDisposeScope());
        }
    }

    /// <summary>The rows shift detection will compare new data with: a sample of this task's rows (in a streamed task, of
    /// the consolidation sample, itself uniform), on the CPU; null when the options keep none.</summary>
    private static ShiftReference? KeepReference(Tensor features, int size, long taskSeed)
    {
        if (size == 0 || features.shape[0] < ShiftTest.MinimumRows) return null; // too few rows to test against
        long[] rows = ShiftReference.SampleRows((int)features.shape[0], size, unchecked((int)(taskSeed ^ 0x5EEDF00D)));
        using var index = tensor(rows);
        using var sample = features.detach().index_select(0, index.to(features.device)).cpu().contiguous();
        return new ShiftReference(sample.data<float>().ToArray(), rows.Length, (int)features.shape[1]);
    }

    // ---- phase 1: check ----

    /// <summary>Refuses what cannot run before any work: options, checkpoints the plugins cannot capture, data-parallel limits.</summary>
    private static void CheckRequest(FitRequest request)
    {
        var (_, previous, trainerName, options, plugins, _, _, fit, communicator, _) = request;
        options.Validate();
        fit?.Validate();
        foreach (var plugin in plugins.Items) plugin.Validate();
        if (previous is not null && !previous.Plugins.Names.SequenceEqual(plugins.Names) && (previous.Plugins.AllocatesPerTask || plugins.AllocatesPerTask))
            throw new ArgumentException(
                $"A model made by {previous.TrainerName} cannot be continued by {trainerName}: {(previous.Plugins.AllocatesPerTask ? previous.TrainerName : trainerName)} divides the network among its tasks, "
                + "and the other trainer would change or misread what the earlier tasks use. Continue it with its own trainer (ml.Continual().Refit), or start a new model.", "previousModel");
        if (fit?.CheckpointPath is not null && !plugins.SupportsCheckpoints)
            throw new NotSupportedException($"Trainer {trainerName} accumulates state during a task that a checkpoint does not capture; run it without CheckpointPath (the model file is still written atomically at the end).");
        if (options.Backbone is not null && (plugins.AllocatesPerTask || plugins.GrowsHiddenLayers || plugins.Columns == NetworkColumns.Progressive))
            throw new NotSupportedException($"Trainer {trainerName} masks, widens or adds columns to the layers of a multilayer perceptron; it does not support backbone '{options.Backbone.Name}'. Leave Backbone null (the perceptron of HiddenLayerSizes).");
        if (options.Boundaries != ContinualBoundaries.Given)
        {
            if (plugins.WhyNotBoundariesInsideFit() is var (plugin, reason))
                throw new NotSupportedException($"Trainer {trainerName} cannot consolidate inside a fit (Boundaries = {options.Boundaries}): plugin {plugin}: {reason}. Use Boundaries = Given (one fit per task), or a method that supports it (the regularization family with EWC in Online mode, GEM, A-GEM, Replay, Er, ER-ACE, DER, DER++, MIR, LwF, iCaRL, FineTune).");
            if (fit?.CheckpointPath is not null)
                throw new NotSupportedException($"Boundaries = {options.Boundaries} with a CheckpointPath is not supported: the sample of rows since the last boundary is not in the checkpoint. Run without CheckpointPath (the model file is still written atomically at the end).");
            if (options.ContinueAcrossFits && plugins.WhyNotContinuesAcrossFits() is var (stopper, why))
                throw new NotSupportedException($"Trainer {trainerName} cannot continue one pass across fits (ContinueAcrossFits): plugin {stopper}: {why}. Leave ContinueAcrossFits false (each fit ends at a boundary), or use a method that supports it (FineTune, L2, online EWC, SI, MAS, RWalk, SCP, GEM, A-GEM, Replay, Er, ER-ACE, MIR, DER, DER++, LwF, iCaRL).");
            if (options.ContinueAcrossFits && communicator.Size > 1)
                throw new NotSupportedException($"ContinueAcrossFits with data-parallel training ({communicator.Description}) is not supported: the rows short of a batch and the window are one process's. Train in one process.");
            if (options.Boundaries == ContinualBoundaries.OnLossPlateau && communicator.Size > 1)
                throw new NotSupportedException($"Boundaries = OnLossPlateau with data-parallel training ({communicator.Description}) is not supported: each process sees the loss of its own share, and the processes must agree on every boundary. Use EverySteps, or train in one process.");
            if (options.Boundaries == ContinualBoundaries.OnInputShift && communicator.Size > 1)
                throw new NotSupportedException($"Boundaries = OnInputShift with data-parallel training ({communicator.Description}) is not supported: the processes must agree on every boundary, and a test's floating-point sums may differ between machines. Use EverySteps, or train in one process.");
        }
        if (!options.ShuffleRows && options.MemoryBudgetMegabytes is not null)
            throw new NotSupportedException("ShuffleRows false (rows in the data's order) with MemoryBudgetMegabytes is not supported: a task read in passes is shuffled through a buffer. Leave MemoryBudgetMegabytes null, or ShuffleRows true.");
        if (communicator.Size > 1)
        {
            if (options.Dropout > 0)
                throw new NotSupportedException($"Dropout ({options.Dropout}) with data-parallel training ({communicator.Description}) is not supported: every process would draw the same masks for its share of the batch. Train with Dropout 0, or in one process (ContinualFitOptions.Communicator = ContinualCommunicator.SingleProcess).");
            if (options.Backbone is not null)
                throw new NotSupportedException($"Backbone '{options.Backbone.Name}' with data-parallel training ({communicator.Description}) is not supported (its layers may draw dropout masks the processes would share): train it in one process (ContinualFitOptions.Communicator = ContinualCommunicator.SingleProcess), or train the perceptron (Backbone null; the tool's --featurize none).");
            if (new Device(options.Device).type != DeviceType.CPU)
                throw new NotSupportedException($"Data-parallel training ({communicator.Description}) runs on the CPU; option Device is '{options.Device}'.");
        }
    }

    /// <summary>Checks every column before any work, naming what is wrong.</summary>
    private static Columns CheckColumns(DataViewSchema schema, ContinualTrainerOptions options, ContinualModelState? previous)
    {
        int featureSize = TaskData.FeatureSize(schema, options.FeatureColumnName, previous?.FeatureSize);
        options.Backbone?.Validate(featureSize);
        ValueKind labelKind = TaskData.CheckValueColumn(schema, options.LabelColumnName, "Label", previous?.LabelKind,
            k => true, "a key, text, integer, Boolean, Single or Double label");
        ContinualPredictionKind kind = previous?.Kind ?? ResolveKind(options.PredictionKind, labelKind, options.LabelColumnName);
        CheckLabelFits(kind, labelKind, options.LabelColumnName);
        ValueKind? taskIdKind = null;
        if (options.TaskIdColumnName is string taskColumn)
            taskIdKind = TaskData.CheckValueColumn(schema, taskColumn, "Task-id", previous?.TaskIdKind,
                k => k is ValueKind.Key or ValueKind.Text or ValueKind.Int32 or ValueKind.Int64 or ValueKind.UInt32, "a text, key or integer task id");
        if (previous is not null && previous.MultiHead != (taskIdKind is not null))
            throw new ContinualDataException(options.TaskIdColumnName,
                previous.MultiHead ? "The model is multi-head (trained with a task-id column); the options name none."
                                   : "The model was trained without a task-id column; it cannot become multi-head.");
        return new Columns(featureSize, labelKind, kind, taskIdKind);
    }

    // ---- phase 2: read ----

    /// <summary>Reads the task once into memory, or, when it is larger than the memory budget (or its row count unknown),
    /// makes one streaming pass for classes, task ids and a sample (1/8 of the budget); the epochs then read the data view
    /// again through a shuffle buffer (3/8), and the other half is left for the data view's and the runtime's allocations.</summary>
    private static ReadTask Read(IDataView data, ContinualTrainerOptions options, int featureSize, int sampleSeed, IChannel channel, CancellationToken cancellation)
    {
        long budgetBytes = options.MemoryBudgetMegabytes is int mb ? mb * 1048576L : long.MaxValue;
        long rowBytes = featureSize * 4L + 16;
        bool stream = options.MemoryBudgetMegabytes is not null && (data.GetRowCount() is not long rows || rows * rowBytes > budgetBytes);
        StreamedTask? streamed = stream
            ? StreamedTask.Read(data, options.FeatureColumnName, featureSize, options.LabelColumnName, options.TaskIdColumnName,
                (int)Math.Clamp(budgetBytes / 8 / rowBytes, 1, int.MaxValue / Math.Max(featureSize, 1)), sampleSeed, cancellation)
            : null;
        var taskData = streamed?.Sample ?? TaskData.Read(data, options.FeatureColumnName, featureSize, options.LabelColumnName, options.TaskIdColumnName, cancellation);
        long rowsSkipped = streamed?.RowsSkipped ?? taskData.RowsSkipped;
        if (rowsSkipped > 0)
            channel.Warning($"{rowsSkipped} rows with a missing label were skipped.");
        if (streamed is not null)
            channel.Info($"The task ({streamed.RowCount:N0} rows) is larger than the memory budget of {options.MemoryBudgetMegabytes} MB: it streams, with a sample of {taskData.Count:N0} rows for consolidation.");
        return new ReadTask(taskData, streamed, budgetBytes, rowBytes);
    }

    // ---- phase 3: build the state and the network ----

    /// <summary>The new state's vocabulary, task ids and heads: copies of the previous model's, grown by this task, and each row's target and head.</summary>
    private static Labels BuildLabels(ReadTask read, ContinualModelState? previous, ContinualTrainerOptions options, Columns columns, DataViewSchema schema, IChannel channel)
    {
        var (taskData, streamed, _, _) = read;
        LabelVocabulary? classes = columns.Kind == ContinualPredictionKind.Multiclass
            ? previous?.Classes?.Clone() ?? new LabelVocabulary(columns.LabelKind) : null;
        if (classes is not null)
        {
            if (columns.LabelKind == ValueKind.Key)
            {
                var labelType = (Microsoft.ML.Data.KeyDataViewType)schema[options.LabelColumnName].Type;
                classes.EnsureKeyCount(labelType.Count, KeyNames(schema[options.LabelColumnName]));
            }
            int added = classes.AddRange((IEnumerable<LabelValue>?)streamed?.Labels ?? taskData.Labels);
            if (added > 0 && previous is not null)
                channel.Info($"{added} new classes; the output layer grows to {classes.Count}.");
        }
        var taskIds = new List<string>(previous?.TaskIds ?? []);
        var headClasses = (previous?.HeadClasses ?? []).Select(a => (bool[])a.Clone()).ToList();
        long[]? headOfRow = null;
        var headIndex = taskIds.Select((id, i) => (id, i)).ToDictionary(p => p.id, p => p.i, StringComparer.Ordinal);
        long HeadOf(LabelValue taskId)
        {
            string id = taskId.ToString();
            if (!headIndex.TryGetValue(id, out int head)) { head = taskIds.Count; headIndex[id] = head; taskIds.Add(id); }
            return head;
        }
        var headsInTask = new SortedSet<long>();
        if (streamed?.TaskIds is { } streamedIds)
            foreach (var id in streamedIds) headsInTask.Add(HeadOf(id)); // every task id, in order of first appearance
        if (taskData.TaskIds is not null)
        {
            headOfRow = new long[taskData.Count];
            for (int i = 0; i < headOfRow.Length; i++) headsInTask.Add(headOfRow[i] = HeadOf(taskData.TaskIds[i]));
        }

        Tensor targets = MakeTargets(columns.Kind, classes, taskData, options.LabelColumnName);
        if (classes is not null && headOfRow is not null)
        {
            while (headClasses.Count < taskIds.Count) headClasses.Add(new bool[classes.Count]);
            for (int h = 0; h < headClasses.Count; h++)
                if (headClasses[h].Length < classes.Count) { var a = headClasses[h]; Array.Resize(ref a, classes.Count); headClasses[h] = a; }
            if (streamed?.TaskLabels is { } pairs)
                foreach (var (taskId, label) in pairs) headClasses[headIndex[taskId]][classes.IndexOf(label)] = true;
            else
            {
                long[] classOfRow = targets.data<long>().ToArray();
                for (int i = 0; i < classOfRow.Length; i++) headClasses[(int)headOfRow[i]][classOfRow[i]] = true;
            }
        }
        return new Labels(classes, taskIds, headClasses, headOfRow, headIndex, headsInTask, targets);
    }

    /// <summary>The epochs' batches of a streamed task, or null when the task is in memory.</summary>
    private static StreamingBatches? StreamingFor(ReadTask read, IDataView data, ContinualTrainerOptions options, Columns columns, Labels labels)
    {
        if (read.Streamed is not { } streamed) return null;
        var classes = labels.Classes;
        var headIndex = labels.HeadIndex;
        return new StreamingBatches(data, options, columns.FeatureSize,
            (int)Math.Clamp(read.BudgetBytes * 3 / 8 / read.RowBytes, 1, int.MaxValue / Math.Max(columns.FeatureSize, 1)), streamed.RowCount,
            classTargets: classes is not null,
            targetOf: classes is not null
                ? label => classes.IndexOf(label) is int c and >= 0 ? c : throw new ContinualDataException(options.LabelColumnName,
                    $"Label {label} appeared in an epoch but not in the first pass: the data view must give the same rows each time it is read.")
                : label => TargetValue(label, columns.Kind, options.LabelColumnName),
            headOf: read.Data.TaskIds is null ? null : id => headIndex.TryGetValue(id.ToString(), out int h) ? h
                : throw new ContinualDataException(options.TaskIdColumnName, $"Task id '{id}' appeared in an epoch but not in the first pass: the data view must give the same rows each time it is read."));
    }

    /// <summary>A new network for a first fit, or the previous model's grown (a copy) for the task's classes and task ids.</summary>
    private static ContinualNetwork BuildNetwork(ContinualModelState? previous, ContinualTrainerOptions options, PluginList plugins, Columns columns, Labels labels, Generator random)
    {
        int outputs = labels.Classes is null ? 1 : Math.Max(labels.Classes.Count, 1);
        int[] hiddenSizes = plugins.GrowsHiddenLayers && previous is not null ? previous.Network.Shape.HiddenSizes : options.HiddenLayerSizes.ToArray();
        var shape = new NetworkShape(columns.FeatureSize, options.Backbone is null ? hiddenSizes : [], options.Activation, options.Dropout,
            outputs, Math.Max(labels.TaskIds.Count, 1), plugins.Columns) { Backbone = options.Backbone };
        CheckArchitecture(previous, shape, plugins.GrowsHiddenLayers ? previous?.Options.HiddenLayerSizes : null, options.HiddenLayerSizes);
        return previous is null ? new ContinualNetwork(shape, random) : previous.Network.GrowTo(shape, random);
    }

    // ---- phase 4: train the epochs ----

    private sealed record EpochsRun(List<double> EpochSeconds, List<double> EpochAccuracy);

    private static EpochsRun TrainEpochs(ContinualTrainingContext context, IChannel channel, string trainerName, ContinualFitOptions? fit)
    {
        var communicator = context.Communicator;
        using DataParallel? parallel = communicator.Size > 1 ? new DataParallel(communicator) : null;
        var options = context.Options;
        var plugins = context.State.Plugins;
        context.Network.train();
        // The parameter list is read once, when the optimizer is made (the plugins' extra parameters as they are then).
        context.CreateOptimizer = () => CreateOptimizer(options, context.Network.parameters().Concat(plugins.ExtraParameters(context)).ToList());
        parallel?.CheckSameStart(context, trainerName);
        plugins.BeforeTask(context); // may replace context.Task (the joint baseline trains on every task so far) or the network
        context.Optimizer = context.CreateOptimizer();
        if (context.Continuation is { } carried) StreamContinuation.Restore(carried, context, message => channel.Warning(message));
        if (parallel is not null)
        {
            parallel.BroadcastParameters(context);
            channel.Info($"Data-parallel training: {communicator.Description}.");
        }
        using var shuffle = new Generator((ulong)context.TaskSeed, CPU); // draws are made on the CPU (then moved), so the generator lives there on every device
        long count = context.Stream?.RowCount ?? context.Task.Count;
        long stepsPerEpoch = (count + options.BatchSize - 1) / options.BatchSize;
        string? checkpointPath = fit?.CheckpointPath;
        string? fingerprint = checkpointPath is null ? null : Checkpoint.Fingerprint(context, trainerName);
        int firstEpoch = 0;
        if (checkpointPath is not null && fit!.Resume && File.Exists(checkpointPath))
        {
            firstEpoch = Checkpoint.Read(checkpointPath, fingerprint!, context, shuffle);
            channel.Info($"Resumed from checkpoint '{checkpointPath}' after epoch {firstEpoch}.");
        }
        if (parallel is not null && checkpointPath is not null && communicator.CountDiffering(BitConverter.GetBytes(firstEpoch)) > 0)
            throw new ContinualCheckpointException($"The processes of this data-parallel fit found different checkpoints at '{checkpointPath}' (this one resumes after epoch {firstEpoch}): the checkpoint must be on storage every process reads (rank 0 writes it).");
        var epochSeconds = new List<double>();
        var epochAccuracy = new List<double>();
        for (int epoch = firstEpoch; epoch < plugins.EpochCount(context); epoch++)
        {
            var epochClock = Stopwatch.StartNew();
            context.Epoch = epoch;
            plugins.BeforeEpoch(context);
            int epochs = plugins.EpochCount(context);
            using Tensor? order = context.Stream is not null ? null
                : options.ShuffleRows ? randperm(count, generator: shuffle, device: CPU).to(context.Device) : arange(count, dtype: ScalarType.Int64, device: context.Device);
            IEnumerable<ContinualBatch> epochBatches = context.Stream?.Epoch(context.TaskSeed, epoch, context.Device, context.Cancellation) ?? InMemoryBatches(context.Task, order!, options.BatchSize);
            var (lossSum, correct) = RunEpoch(context, epochBatches, parallel, fit, epochs, stepsPerEpoch, firstEpoch > 0);
            if (parallel is not null) (lossSum, correct) = parallel.SumEpoch(lossSum, correct);
            CheckParametersFinite(context, $"after epoch {epoch + 1}");
            epochSeconds.Add(epochClock.Elapsed.TotalSeconds);
            epochAccuracy.Add(context.State.Kind == ContinualPredictionKind.Regression ? double.NaN : (double)correct / count);
            fit?.Progress?.Invoke(new ContinualFitProgress(epoch, epochs, stepsPerEpoch, stepsPerEpoch, true, lossSum / count, firstEpoch > 0));
            plugins.AfterEpoch(context, lossSum / count);
            if (checkpointPath is not null && (epoch + 1) % fit!.CheckpointEveryEpochs == 0 && epoch + 1 < epochs && communicator.Rank == 0)
                Checkpoint.Write(checkpointPath, fingerprint!, context, shuffle, epoch + 1);
            string accuracy = context.State.Kind == ContinualPredictionKind.Regression ? "" : $", training accuracy {(double)correct / count:F4}";
            channel.Info($"Task {context.TaskIndex + 1}, epoch {epoch + 1}/{epochs}: loss {lossSum / count:F4}{accuracy}");
            if (context.StopRequested) break;
        }
        return new EpochsRun(epochSeconds, epochAccuracy);
    }

    /// <summary>One epoch's steps; returns the sum of the task loss over its rows and the rows predicted right.</summary>
    private static (double LossSum, long Correct) RunEpoch(ContinualTrainingContext context, IEnumerable<ContinualBatch> epochBatches, DataParallel? parallel,
        ContinualFitOptions? fit, int epochs, long stepsPerEpoch, bool resumed)
    {
        var communicator = context.Communicator;
        long reportEvery = Math.Max(1, stepsPerEpoch / 50);
        double lossSum = 0;
        long correct = 0;
        using var batchEnumerator = epochBatches.GetEnumerator();
        for (long stepInEpoch = 1; ; stepInEpoch++)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope(); // the batch's tensors are made in MoveNext, inside the step's scope
            if (!batchEnumerator.MoveNext()) break;
            ContinualBatch batch = batchEnumerator.Current;
            if (context.BoundaryDue)
            {
                context.CurrentBatch = null; // the last step's batch is disposed; this one is not trained yet
                PassBoundary(context);       // only now that a step follows: a fit's last window is its end's
            }
            context.CurrentBatch = batch;
            context.Optimizer!.zero_grad();
            var (loss, taskLoss, rows, right, taskTermOnly) = Forward(context, batch);
            lossSum += taskLoss * rows;
            correct += right;
            if (!float.IsFinite(taskLoss)) throw Diverged(context, stepInEpoch, "the task loss", taskLoss);
            if (loss is not null && !taskTermOnly && loss.item<float>() is float total && !float.IsFinite(total))
                throw Diverged(context, stepInEpoch, "the loss with the plugins' terms", total);
            loss?.backward();
            parallel?.SumGradients(context);
            context.State.Plugins.AfterBackward(context);
            context.Optimizer.step();
            context.State.Plugins.AfterStep(context);
            context.Step++;
            if (context.Window is { } window)
            {
                window.Add(batch);
                context.BoundaryDue = context.Detector is { } detector ? detector.Observe(batch, taskLoss) : context.Step % context.Options.BoundaryEverySteps == 0;
            }
            if (fit?.Progress is { } report && stepInEpoch % reportEvery == 0 && stepInEpoch < stepsPerEpoch)
                report(new ContinualFitProgress(context.Epoch, epochs, stepInEpoch, stepsPerEpoch, false, double.NaN, resumed));
        }
        context.CurrentBatch = null;
        return (lossSum, correct);
    }

    /// <summary>The step's forward passes and loss. In a data-parallel fit each process computes its share of the batch (and
    /// of each extra batch), each loss scaled to its part of the global mean and penalties divided by the process count; one
    /// process computes the batch itself, unscaled. Returns the loss to minimise, the task loss and rows of this process's
    /// share, and its rows predicted right.</summary>
    private static (Tensor? Loss, float TaskLoss, long Rows, long Correct, bool TaskTermOnly) Forward(ContinualTrainingContext context, ContinualBatch batch)
    {
        var communicator = context.Communicator;
        var plugins = context.State.Plugins;
        ContinualBatch share = DataParallel.Share(batch, communicator);
        var step = new ContinualStep(share, batch.Rows, communicator);
        float taskLoss = 0;
        long correct = 0;
        if (share.Rows > 0)
        {
            Tensor outputs = context.Network.Forward(share.Features, share.Heads);
            Tensor shareLoss = context.State.Loss(outputs, share);
            taskLoss = shareLoss.item<float>();
            correct = context.State.CountCorrect(outputs, share);
            step.TaskOutputs = outputs;
            step.AddTaskTerm(DataParallel.PartOfMean(shareLoss, share, batch, communicator));
        }
        foreach (var plugin in plugins.Items)
            foreach (ContinualBatch extra in plugin.ExtraBatches(context, batch))
            {
                ContinualBatch extraShare = DataParallel.Share(extra, communicator);
                if (extraShare.Rows == 0) continue;
                Tensor extraOutputs = context.Network.Forward(extraShare.Features, extraShare.Heads);
                Tensor? part = extra.Weight == 0 ? null
                    : DataParallel.PartOfMean(context.State.Loss(extraOutputs, extraShare), extraShare, extra, communicator) * extra.Weight;
                step.AddExtra(new ContinualStepBatch(extraShare, extraOutputs, plugin, extra.Rows), part, plugin.Name);
            }
        plugins.BeforeBackward(context, step);
        return (step.Total(), taskLoss, share.Rows, correct, communicator.Size == 1 && step.TaskTermOnly);
    }

    // ---- phase 5: consolidate ----

    /// <summary>After the last epoch: the plugins consolidate with the network in evaluation mode, and the result is checked.
    /// With boundaries inside the fit they consolidate on the rows since the last boundary, as at every boundary.</summary>
    private static void Consolidate(ContinualTrainingContext context, ContinualFitOptions? fit)
    {
        context.Network.eval();
        if (context.Window is { Count: > 0 } window) WithWindow(context, window, () => context.State.Plugins.AfterTask(context));
        else context.State.Plugins.AfterTask(context);
        CheckParametersFinite(context, "after the task's consolidation");
        if (fit?.CheckpointPath is string path && fit.DeleteCheckpointOnSuccess && File.Exists(path)) File.Delete(path); // the task is done
    }

    /// <summary>A boundary inside the fit: the plugins consolidate on the sample of rows since the last one, in evaluation
    /// mode, and start tracking anew; the optimizer goes on. In a nested scope: plugin state is detached, as at a task's end.</summary>
    private static void PassBoundary(ContinualTrainingContext context)
    {
        context.BoundaryDue = false;
        using var scope = NewDisposeScope();
        context.Network.eval();
        context.BoundariesPassed++;
        WithWindow(context, context.Window!, () => context.State.Plugins.AtBoundary(context));
        context.Network.train();
        if (context.Options.BoundaryResetsOptimizer)
        {
            // A new optimizer, as a new fit makes, at the learning rate the schedule has set for this epoch.
            var old = context.Optimizer!;
            double[] rates = old.ParamGroups.Select(g => g.LearningRate).ToArray();
            (old as IDisposable)?.Dispose();
            context.Optimizer = context.CreateOptimizer();
            int i = 0;
            foreach (var group in context.Optimizer.ParamGroups) group.LearningRate = rates[Math.Min(i++, rates.Length - 1)];
        }
        CheckParametersFinite(context, $"after the consolidation at step {context.Step}");
    }

    /// <summary>Runs <paramref name="consolidate"/> with <see cref="ContinualTrainingContext.Task"/> set to the window's sample.</summary>
    private static void WithWindow(ContinualTrainingContext context, BoundaryWindow window, Action consolidate)
    {
        var task = context.Task;
        using var sample = window.Take();
        context.Task = sample;
        try { consolidate(); }
        finally { context.Task = task; }
    }

    /// <summary>Fails the fit when a parameter holds an infinite or NaN value.</summary>
    private static void CheckParametersFinite(ContinualTrainingContext context, string when)
    {
        using var _ = no_grad();
        foreach (var (name, parameter) in context.Network.OrderedParameters())
        {
            using Tensor finite = parameter.isfinite().all();
            if (!finite.item<bool>())
                throw new ContinualTrainingException($"Training diverged in task {context.TaskIndex + 1}, {when}: parameter '{name}' holds infinite or NaN values. "
                    + "Nothing was written; the previous model is unchanged. Lower the learning rate, scale the features and the label (a regression label of large magnitude makes the squared loss overflow), or use Adam.",
                    context.TaskIndex, context.Epoch, context.Step, name);
        }
    }

    private static ContinualTrainingException Diverged(ContinualTrainingContext context, long stepInEpoch, string what, float value) =>
        new($"Training diverged in task {context.TaskIndex + 1}, epoch {context.Epoch + 1}, step {stepInEpoch}: {what} is {value}. "
            + "Nothing was written; the previous model is unchanged. Lower the learning rate, scale the features and the label (a regression label of large magnitude makes the squared loss overflow), or use Adam.",
            context.TaskIndex, context.Epoch, context.Step, what);

    /// <summary>The minibatches of an in-memory task in the epoch's shuffled order.</summary>
    private static IEnumerable<ContinualBatch> InMemoryBatches(ContinualTaskData task, Tensor order, int batchSize)
    {
        long count = order.shape[0];
        for (long start = 0; start < count; start += batchSize)
            yield return task.Select(order.narrow(0, start, Math.Min(batchSize, count - start)));
    }

    private static optim.Optimizer CreateOptimizer(ContinualTrainerOptions options, IEnumerable<TorchSharp.Modules.Parameter> parameters) => options.Optimizer switch
    {
        ContinualOptimizer.Sgd => new KeptScalarSgd(parameters, options.LearningRate, momentum: 0, options.WeightDecay),
        ContinualOptimizer.SgdMomentum => new KeptScalarSgd(parameters, options.LearningRate, options.Momentum, options.WeightDecay),
        _ => new KeptScalarAdam(parameters, options.LearningRate, options.WeightDecay),
    };

    private static Tensor MakeTargets(ContinualPredictionKind kind, LabelVocabulary? classes, TaskData data, string labelColumn)
    {
        if (kind == ContinualPredictionKind.Multiclass)
        {
            var indices = new long[data.Count];
            for (int i = 0; i < indices.Length; i++)
            {
                int index = classes!.IndexOf(data.Labels[i]);
                if (index < 0) throw new ContinualDataException(labelColumn, $"Label value {data.Labels[i]} is outside the label's key range.");
                indices[i] = index;
            }
            return tensor(indices);
        }
        var values = new float[data.Count];
        for (int i = 0; i < values.Length; i++) values[i] = TargetValue(data.Labels[i], kind, labelColumn);
        return tensor(values);
    }

    /// <summary>The training target of a binary (0/1) or regression label.</summary>
    private static float TargetValue(LabelValue label, ContinualPredictionKind kind, string labelColumn)
    {
        float value = (float)label.Number;
        if (!float.IsFinite(value))
            throw new ContinualDataException(labelColumn, $"Label column '{labelColumn}' has an infinite value; a finite label is expected.");
        return value;
    }

    private static ContinualPredictionKind ResolveKind(ContinualPredictionKind requested, ValueKind label, string column)
    {
        if (requested != ContinualPredictionKind.Auto) return requested;
        return label switch
        {
            ValueKind.Boolean => ContinualPredictionKind.Binary,
            ValueKind.Single or ValueKind.Double => ContinualPredictionKind.Regression,
            _ => ContinualPredictionKind.Multiclass,
        };
    }

    private static void CheckLabelFits(ContinualPredictionKind kind, ValueKind label, string column)
    {
        bool ok = kind switch
        {
            ContinualPredictionKind.Binary => label == ValueKind.Boolean,
            ContinualPredictionKind.Regression => label is ValueKind.Single or ValueKind.Double or ValueKind.Int32 or ValueKind.Int64 or ValueKind.UInt32,
            _ => true,
        };
        if (!ok)
            throw new ContinualDataException(column, kind == ContinualPredictionKind.Binary
                ? $"Label column '{column}' must be Boolean for binary classification."
                : $"Label column '{column}' must be numeric for regression.");
    }

    /// <summary>Refits must describe the previous model's network. For a method that widens its layers,
    /// <paramref name="firstSizes"/> are the hidden sizes the model started with, compared with <paramref name="optionSizes"/>
    /// instead of the current widths.</summary>
    private static void CheckArchitecture(ContinualModelState? previous, NetworkShape shape, int[]? firstSizes, int[] optionSizes)
    {
        if (previous is null) return;
        var old = previous.Network.Shape;
        var differences = new List<string>();
        int[] modelSizes = firstSizes ?? old.HiddenSizes;
        int[] requested = firstSizes is null ? shape.HiddenSizes : optionSizes;
        if (!modelSizes.SequenceEqual(requested)) differences.Add($"HiddenLayerSizes [{string.Join(",", modelSizes)}] vs [{string.Join(",", requested)}]");
        if (old.Activation != shape.Activation) differences.Add($"Activation {old.Activation} vs {shape.Activation}");
        if (old.Dropout != shape.Dropout) differences.Add($"Dropout {old.Dropout} vs {shape.Dropout}");
        if (differences.Count > 0)
            throw new ArgumentException($"The options describe another network than the previous model's: {string.Join("; ", differences)} (model vs options).", "options");
    }

    /// <summary>A key column's value names (its KeyValues annotation), or null when it has none.</summary>
    internal static IReadOnlyList<string>? KeyNames(Microsoft.ML.DataViewSchema.Column column)
    {
        if (column.Annotations.Schema.GetColumnOrNull("KeyValues") is not { } annotation || annotation.Type is not Microsoft.ML.Data.VectorDataViewType { ItemType: Microsoft.ML.Data.TextDataViewType })
            return null;
        Microsoft.ML.Data.VBuffer<ReadOnlyMemory<char>> names = default;
        column.Annotations.GetValue("KeyValues", ref names);
        return names.DenseValues().Select(n => n.ToString()).ToList();
    }
}
