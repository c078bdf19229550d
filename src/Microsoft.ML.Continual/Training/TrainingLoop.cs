using System.Diagnostics;
using Microsoft.ML.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// The one training loop every continual trainer runs. It reads the task, grows the model for new classes and
/// task ids, then for each epoch and minibatch calls the strategy's hooks around forward, backward and the
/// optimizer step. It always trains a copy of the previous model, so a failure or cancellation leaves the
/// previous model as it was.
/// </summary>
internal static class TrainingLoop
{
    private static readonly AsyncLocal<bool> UntrainedScope = new();

    /// <summary>Within the returned scope, fits build and initialise models but run no epochs: the "row 0" model of
    /// an experiment (same seed, same first-task vocabulary, no training).</summary>
    public static IDisposable BeginUntrained()
    {
        UntrainedScope.Value = true;
        return new ScopeEnd();
    }

    private sealed class ScopeEnd : IDisposable
    {
        public void Dispose() => UntrainedScope.Value = false;
    }

    /// <summary>Trains one task and returns the new model state.</summary>
    /// <param name="previous">The model to continue from, or null for a first fit.</param>
    /// <param name="trainerName">The trainer whose strategy to run.</param>
    /// <param name="options">The options to train with (already frozen: a private copy).</param>
    /// <param name="strategy">A fresh strategy, or a copy of the previous model's strategy carrying its state.</param>
    /// <param name="env">Where progress is logged (<c>MLContext.Log</c>) and the default seed comes from.</param>
    /// <param name="data">The task's rows.</param>
    /// <param name="cancellation">Stops training between batches; nothing of the previous model changes.</param>
    /// <param name="fit">Checkpoints within the task and progress reports, or null.</param>
    public static ContinualModelState Train(IHostEnvironment env, ContinualModelState? previous, string trainerName,
        ContinualTrainerOptions options, ContinualStrategy strategy, IDataView data, CancellationToken cancellation, ContinualFitOptions? fit = null)
    {
        ContinualCommunicator communicator = fit?.Communicator ?? ContinualCommunicator.World;
        var progress = new FitProgress();
        if (communicator.Size == 1) return Train(env, previous, trainerName, options, strategy, data, cancellation, fit, communicator, progress);
        try
        {
            return Train(env, previous, trainerName, options, strategy, data, cancellation, fit, communicator, progress);
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

    private static ContinualModelState Train(IHostEnvironment env, ContinualModelState? previous, string trainerName,
        ContinualTrainerOptions options, ContinualStrategy strategy, IDataView data, CancellationToken cancellation, ContinualFitOptions? fit,
        ContinualCommunicator communicator, FitProgress progress)
    {
        options.Validate();
        fit?.Validate();
        if (previous is not null && previous.TrainerName != trainerName && (previous.Strategy.AllocatesPerTask || strategy.AllocatesPerTask))
            throw new ArgumentException(
                $"A model made by {previous.TrainerName} cannot be continued by {trainerName}: {(previous.Strategy.AllocatesPerTask ? previous.TrainerName : trainerName)} divides the network among its tasks, "
                + "and the other trainer would change or misread what the earlier tasks use. Continue it with its own trainer (ml.Continual().Refit), or start a new model.", "previousModel");
        if (fit?.CheckpointPath is not null && !strategy.SupportsCheckpoints)
            throw new NotSupportedException($"Trainer {trainerName} accumulates state during a task that a checkpoint does not capture; run it without CheckpointPath (the model file is still written atomically at the end).");
        if (communicator.Size > 1)
        {
            if (options.Dropout > 0)
                throw new NotSupportedException($"Dropout ({options.Dropout}) with data-parallel training ({communicator.Description}) is not supported: every process would draw the same masks for its share of the batch. Train with Dropout 0, or in one process (ContinualFitOptions.Communicator = ContinualCommunicator.SingleProcess).");
            if (new Device(options.Device).type != DeviceType.CPU)
                throw new NotSupportedException($"Data-parallel training ({communicator.Description}) runs on the CPU; option Device is '{options.Device}'.");
        }
        var host = env.Register("Continual");
        using var channel = host.Start(trainerName);
        var schema = data.Schema;

        // Check every column before any work, naming what is wrong.
        int featureSize = TaskData.FeatureSize(schema, options.FeatureColumnName, previous?.FeatureSize);
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

        if (options.NumberOfThreads is int threads) set_num_threads(threads);
        int seed = options.Seed ?? (env is IHostEnvironmentInternal internalEnv ? internalEnv.Seed : null) ?? 0;
        int taskIndex = previous?.TasksSeen ?? 0;
        var device = new Device(options.Device);
        var stopwatch = Stopwatch.StartNew();

        // A task larger than the memory budget is streamed: one pass for classes, task ids and a sample (1/8 of the budget),
        // then one per epoch through a shuffle buffer (3/8); the other half is left for the data view's and the runtime's allocations.
        long budgetBytes = options.MemoryBudgetMegabytes is int mb ? mb * 1048576L : long.MaxValue;
        long rowBytes = featureSize * 4L + 16;
        bool stream = options.MemoryBudgetMegabytes is not null && (data.GetRowCount() is not long rows || rows * rowBytes > budgetBytes);
        StreamedTask? streamed = stream
            ? StreamedTask.Read(data, options.FeatureColumnName, featureSize, options.LabelColumnName, options.TaskIdColumnName,
                (int)Math.Clamp(budgetBytes / 8 / rowBytes, 1, int.MaxValue / Math.Max(featureSize, 1)), seed + taskIndex, cancellation)
            : null;
        using var taskData = streamed?.Sample ?? TaskData.Read(data, options.FeatureColumnName, featureSize, options.LabelColumnName, options.TaskIdColumnName, cancellation);
        long rowsSkipped = streamed?.RowsSkipped ?? taskData.RowsSkipped;
        if (rowsSkipped > 0)
            channel.Warning($"{rowsSkipped} rows with a missing label were skipped.");
        if (streamed is not null)
            channel.Info($"The task ({streamed.RowCount:N0} rows) is larger than the memory budget of {options.MemoryBudgetMegabytes} MB: it streams, with a sample of {taskData.Count:N0} rows for consolidation.");

        // The new state: copies of the previous vocabulary and task ids, grown by this task.
        LabelVocabulary? classes = kind == ContinualPredictionKind.Multiclass
            ? previous?.Classes?.Clone() ?? new LabelVocabulary(labelKind) : null;
        if (classes is not null)
        {
            if (labelKind == ValueKind.Key)
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

        using var _ = NewDisposeScope();
        Tensor targets = MakeTargets(kind, classes, taskData, options.LabelColumnName);
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
        StreamingBatches? batches = streamed is null ? null : new StreamingBatches(data, options, featureSize,
            (int)Math.Clamp(budgetBytes * 3 / 8 / rowBytes, 1, int.MaxValue / Math.Max(featureSize, 1)), streamed.RowCount,
            classTargets: classes is not null,
            targetOf: classes is not null
                ? label => classes.IndexOf(label) is int c and >= 0 ? c : throw new ContinualDataException(options.LabelColumnName,
                    $"Label {label} appeared in an epoch but not in the first pass: the data view must give the same rows each time it is read.")
                : label => TargetValue(label, kind, options.LabelColumnName),
            headOf: taskData.TaskIds is null ? null : id => headIndex.TryGetValue(id.ToString(), out int h) ? h
                : throw new ContinualDataException(options.TaskIdColumnName, $"Task id '{id}' appeared in an epoch but not in the first pass: the data view must give the same rows each time it is read."));

        // Seeding per task keeps every task's initialisation, shuffling and dropout reproducible.
        long taskSeed = seed + 1_000_003L * taskIndex;
        manual_seed(taskSeed);
        int outputs = classes is null ? 1 : Math.Max(classes.Count, 1);
        int[] hiddenSizes = strategy.GrowsHiddenLayers && previous is not null ? previous.Network.Shape.HiddenSizes : options.HiddenLayerSizes.ToArray();
        var shape = new NetworkShape(featureSize, hiddenSizes, options.Activation, options.Dropout,
            outputs, Math.Max(taskIds.Count, 1), strategy.Columns);
        CheckArchitecture(previous, shape, strategy.GrowsHiddenLayers ? previous?.Options.HiddenLayerSizes : null, options.HiddenLayerSizes);
        ContinualNetwork network = previous is null ? new ContinualNetwork(shape) : previous.Network.GrowTo(shape);
        network.MoveTo(device);
        strategy.AttachTo(network);

        var state = new ContinualModelState
        {
            TrainerName = trainerName,
            Options = options,
            Strategy = strategy,
            Network = network,
            Kind = kind,
            FeatureSize = featureSize,
            LabelKind = labelKind,
            Classes = classes,
            TaskIdKind = taskIdKind,
            TaskIds = taskIds,
            HeadClasses = headClasses,
            TasksSeen = taskIndex,
            RowsSeen = previous?.RowsSeen ?? 0,
        };
        try
        {
            using var task = new TaskTensors(taskData.Features.to(device), targets.to(device),
                headOfRow is null ? null : tensor(headOfRow).to(device));
            var context = new TrainingContext
            {
                Network = network, Options = options, State = state, Task = task, Device = device,
                Cancellation = cancellation, TaskIndex = taskIndex, TaskSeed = taskSeed, Info = message => channel.Info(message),
                Stream = batches, HeadsInTask = headsInTask.ToArray(), Communicator = communicator,
            };
            if (communicator.Size > 1)
            {
                // The agreement: every process has checked and read its data (a failure before this point is caught above and
                // reported here, so that no process goes on into training and waits for one that stopped).
                progress.Agreed = true;
                if (!communicator.AllSucceeded(true))
                    throw new ContinualDistributedException($"Another process of this data-parallel fit ({communicator.Description}) failed while checking or reading its data; its error is in its output. This process stops too; nothing was trained.");
            }
            if (UntrainedScope.Value)
            {
                network.eval();
                return state;
            }
            var loopClock = Stopwatch.StartNew();
            RunEpochs(context, channel, taskSeed, trainerName, fit, communicator);
            state.LastTaskTrainingSeconds = loopClock.Elapsed.TotalSeconds;
            state.LastTaskTrainingRows = batches?.RowCount ?? context.Task.Count;
            if (!ReferenceEquals(context.Task, task)) context.Task.Dispose();
            state.TasksSeen = taskIndex + 1;
            state.RowsSeen += batches?.RowCount ?? task.Count;
            state.Network.eval();
            channel.Info($"Task {taskIndex + 1} trained on {state.LastTaskTrainingRows} rows in {stopwatch.Elapsed.TotalSeconds:F1} s.");
            return state;
        }
        catch
        {
            state.Dispose();
            throw;
        }
    }

    private static void RunEpochs(TrainingContext context, IChannel channel, long taskSeed, string trainerName, ContinualFitOptions? fit, ContinualCommunicator communicator)
    {
        using DataParallel? parallel = communicator.Size > 1 ? new DataParallel(communicator) : null;
        var options = context.Options;
        var strategy = context.State.Strategy;
        context.Network.train();
        context.CreateOptimizer = () => CreateOptimizer(options, context.Network.parameters().Concat(strategy.ExtraParameters(context)));
        parallel?.CheckSameStart(context, trainerName);
        strategy.BeforeTask(context); // may replace context.Task (the joint baseline trains on every task so far) or the network
        context.Optimizer = context.CreateOptimizer();
        if (parallel is not null)
        {
            parallel.BroadcastParameters(context);
            channel.Info($"Data-parallel training: {communicator.Description}.");
        }
        using var generator = new Generator((ulong)taskSeed, CPU); // draws are made on the CPU (then moved), so the generator lives there on every device
        long count = context.Stream?.RowCount ?? context.Task.Count;
        long stepsPerEpoch = (count + options.BatchSize - 1) / options.BatchSize;
        long reportEvery = Math.Max(1, stepsPerEpoch / 50);
        string? checkpointPath = fit?.CheckpointPath;
        string? fingerprint = checkpointPath is null ? null : Checkpoint.Fingerprint(context, trainerName);
        int firstEpoch = 0;
        if (checkpointPath is not null && fit!.Resume && File.Exists(checkpointPath))
        {
            firstEpoch = Checkpoint.Read(checkpointPath, fingerprint!, context, generator);
            channel.Info($"Resumed from checkpoint '{checkpointPath}' after epoch {firstEpoch}.");
        }
        if (parallel is not null && checkpointPath is not null && communicator.CountDiffering(BitConverter.GetBytes(firstEpoch)) > 0)
            throw new ContinualCheckpointException($"The processes of this data-parallel fit found different checkpoints at '{checkpointPath}' (this one resumes after epoch {firstEpoch}): the checkpoint must be on storage every process reads (rank 0 writes it).");
        for (int epoch = firstEpoch; epoch < strategy.EpochCount(context); epoch++)
        {
            var epochClock = Stopwatch.StartNew();
            context.Epoch = epoch;
            strategy.BeforeEpoch(context);
            int epochs = strategy.EpochCount(context);
            double lossSum = 0;
            long correct = 0;
            using Tensor? order = context.Stream is null ? randperm(count, generator: generator, device: CPU).to(context.Device) : null;
            IEnumerable<TrainingBatch> epochBatches = context.Stream?.Epoch(taskSeed, epoch, context.Device, context.Cancellation) ?? InMemoryBatches(context.Task, order!, options.BatchSize);
            using var batchEnumerator = epochBatches.GetEnumerator();
            for (long stepInEpoch = 1; ; stepInEpoch++)
            {
                context.Cancellation.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope(); // the batch's tensors are made in MoveNext, inside the step's scope
                if (!batchEnumerator.MoveNext()) break;
                TrainingBatch batch = batchEnumerator.Current;
                context.CurrentBatch = batch;
                context.Optimizer!.zero_grad();
                // Data-parallel: this process's share of the batch (and of each extra batch), each loss scaled to its part of
                // the global mean and the penalty divided by the process count; one process: the batch itself, unscaled.
                TrainingBatch share = DataParallel.Share(batch, communicator);
                Tensor? loss = null;
                if (share.Features.shape[0] > 0)
                {
                    Tensor outputs = context.Network.Forward(share.Features, share.Heads);
                    Tensor shareLoss = context.State.Loss(outputs, share);
                    lossSum += shareLoss.item<float>() * share.Features.shape[0];
                    correct += context.State.CountCorrect(outputs, share);
                    loss = DataParallel.PartOfMean(shareLoss, share, batch, communicator);
                }
                foreach (TrainingBatch extra in strategy.ExtraBatches(context, batch))
                {
                    TrainingBatch extraShare = DataParallel.Share(extra, communicator);
                    if (extraShare.Features.shape[0] == 0) continue;
                    Tensor part = DataParallel.PartOfMean(context.Loss(extraShare), extraShare, extra, communicator) * extra.Weight;
                    loss = loss is null ? part : loss + part;
                }
                if (strategy.Penalty(context) is Tensor penalty)
                {
                    Tensor part = communicator.Size == 1 ? penalty : penalty / communicator.Size; // the processes' parts add up to the penalty once
                    loss = loss is null ? part : loss + part;
                }
                loss?.backward();
                parallel?.SumGradients(context);
                strategy.AfterBackward(context);
                context.Optimizer.step();
                strategy.AfterStep(context);
                context.Step++;
                if (fit?.Progress is { } report && stepInEpoch % reportEvery == 0 && stepInEpoch < stepsPerEpoch)
                    report(new ContinualFitProgress(epoch, epochs, stepInEpoch, stepsPerEpoch, false, double.NaN, firstEpoch > 0));
            }
            context.CurrentBatch = null;
            if (parallel is not null) (lossSum, correct) = parallel.SumEpoch(lossSum, correct);
            context.State.LastTaskEpochSeconds.Add(epochClock.Elapsed.TotalSeconds);
            fit?.Progress?.Invoke(new ContinualFitProgress(epoch, epochs, stepsPerEpoch, stepsPerEpoch, true, lossSum / count, firstEpoch > 0));
            if (checkpointPath is not null && (epoch + 1) % fit!.CheckpointEveryEpochs == 0 && epoch + 1 < epochs && communicator.Rank == 0)
            {
                Checkpoint.Write(checkpointPath, fingerprint!, context, generator, epoch + 1);
            }
            string accuracy = context.State.Kind == ContinualPredictionKind.Regression ? "" : $", training accuracy {(double)correct / count:F4}";
            channel.Info($"Task {context.TaskIndex + 1}, epoch {epoch + 1}/{epochs}: loss {lossSum / count:F4}{accuracy}");
        }
        context.Network.eval();
        strategy.AfterTask(context);
        if (checkpointPath is not null && fit!.DeleteCheckpointOnSuccess && File.Exists(checkpointPath)) File.Delete(checkpointPath); // the task is done
    }

    /// <summary>The minibatches of an in-memory task in the epoch's shuffled order.</summary>
    private static IEnumerable<TrainingBatch> InMemoryBatches(TaskTensors task, Tensor order, int batchSize)
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

    private static IReadOnlyList<string>? KeyNames(Microsoft.ML.DataViewSchema.Column column)
    {
        if (column.Annotations.Schema.GetColumnOrNull("KeyValues") is not { } annotation || annotation.Type is not Microsoft.ML.Data.VectorDataViewType { ItemType: Microsoft.ML.Data.TextDataViewType })
            return null;
        Microsoft.ML.Data.VBuffer<ReadOnlyMemory<char>> names = default;
        column.Annotations.GetValue("KeyValues", ref names);
        return names.DenseValues().Select(n => n.ToString()).ToList();
    }
}
