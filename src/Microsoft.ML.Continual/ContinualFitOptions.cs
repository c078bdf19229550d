namespace Microsoft.ML.Continual;

/// <summary>
/// How one fit runs (not what it learns: that is the trainer's options, frozen in the model): checkpoints within the
/// task, progress reports and the processes that train together. Pass it to <see cref="ContinualTrainer.Fit(IDataView, ContinualTransformer?, ContinualFitOptions, CancellationToken)"/>
/// or <see cref="ContinualCatalog.Refit(ITransformer, IDataView, ContinualFitOptions, CancellationToken)"/>.
/// </summary>
public sealed class ContinualFitOptions
{
    /// <summary>Where to keep the checkpoint of the task being trained; null (default): no checkpoints. The file is written
    /// atomically (temporary file, flush, rename) after every <see cref="CheckpointEveryEpochs"/> epochs and deleted when
    /// the fit succeeds.</summary>
    public string? CheckpointPath { get; set; }

    /// <summary>Whether the fit deletes its checkpoint when it succeeds. Default true. A job that writes the model afterwards
    /// (as the command-line tool does) sets false and deletes the checkpoint once the model file is safely written, so a
    /// crash during that write still leaves the checkpoint to resume from.</summary>
    public bool DeleteCheckpointOnSuccess { get; set; } = true;

    /// <summary>Epochs between checkpoints. Default 1.</summary>
    public int CheckpointEveryEpochs { get; set; } = 1;

    /// <summary>When true and <see cref="CheckpointPath"/> holds a checkpoint of this same job (same trainer, options, previous
    /// model and task rows), training continues from it and ends with the same model, bit for bit, as an uninterrupted fit;
    /// a checkpoint of another job is refused with a <see cref="ContinualCheckpointException"/>. When false (default), an
    /// existing checkpoint is replaced.</summary>
    public bool Resume { get; set; }

    /// <summary>Called as training advances (about 50 times per epoch, and at the end of each epoch with its loss).</summary>
    public Action<ContinualFitProgress>? Progress { get; set; }

    /// <summary>The processes that train this fit together (data-parallel training). Default null:
    /// <see cref="ContinualCommunicator.World"/>, which is MPI's world when the program was started by <c>mpirun</c> and a
    /// single process otherwise. Every process of the communicator must run the same fit on the same data.</summary>
    /// <example><code source="../../src/Samples/ScaleOutSample.cs" /></example>
    public ContinualCommunicator? Communicator { get; set; }

    /// <summary>Called once when the fit has trained its task, with what it measured (rows, epochs run, steps, seconds).</summary>
    public Action<ContinualFitStatistics>? Completed { get; set; }

    internal void Validate()
    {
        if (CheckpointEveryEpochs < 1) throw new ArgumentOutOfRangeException(nameof(CheckpointEveryEpochs), "Option CheckpointEveryEpochs must be positive.");
        if (CheckpointPath is not null && string.IsNullOrWhiteSpace(CheckpointPath)) throw new ArgumentOutOfRangeException(nameof(CheckpointPath), "Option CheckpointPath must be null or a file path.");
    }
}

/// <summary>Where a fit is: the epoch (0-based) of <see cref="Epochs"/>, the step within it of <see cref="StepsPerEpoch"/>, and at
/// the end of an epoch (<see cref="EpochCompleted"/>) its mean training loss.</summary>
public sealed record ContinualFitProgress(int Epoch, int Epochs, long Step, long StepsPerEpoch, bool EpochCompleted, double Loss, bool ResumedFromCheckpoint);

/// <summary>What one fit measured: the rows of its task (a joint model's include earlier tasks), the epochs it ran (PackNet
/// and CPG run more than <see cref="ContinualTrainerOptions.NumberOfEpochs"/>; a resumed fit, fewer), its optimizer steps,
/// the seconds of the training loop including the end-of-task consolidation, and each epoch's seconds.</summary>
/// <param name="Rows">Rows of the task trained on.</param>
/// <param name="Epochs">Epochs run in this fit.</param>
/// <param name="Steps">Optimizer steps taken.</param>
/// <param name="TrainingSeconds">Seconds of the loop, consolidation included.</param>
/// <param name="EpochSeconds">Seconds of each epoch run (hooks included, consolidation excluded).</param>
public sealed record ContinualFitStatistics(long Rows, int Epochs, long Steps, double TrainingSeconds, IReadOnlyList<double> EpochSeconds)
{
    /// <summary>Each epoch's share of the rows the network predicted right in the forward pass of their own step, before
    /// the step updated it (NaN for regression). In one pass over a stream in its order (one epoch,
    /// <see cref="ContinualTrainerOptions.ShuffleRows"/> false) this is the prequential accuracy of online continual learning:
    /// every batch scored by the model as it was when the batch arrived, then trained on (in training mode: with dropout, if any).</summary>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public IReadOnlyList<double> EpochTrainingAccuracy { get; init; } = [];

    /// <summary>The boundaries passed inside the fit (<see cref="ContinualTrainerOptions.Boundaries"/> =
    /// <see cref="ContinualBoundaries.EverySteps"/> or <see cref="ContinualBoundaries.OnLossPlateau"/>), each a consolidation; the fit's end consolidates once more. 0 with given boundaries.</summary>
    public int BoundariesPassed { get; init; }

    /// <summary>Rows × epochs run per second of the loop.</summary>
    public double SamplesPerSecond => TrainingSeconds > 0 ? Rows * (double)Epochs / TrainingSeconds : 0;
}

/// <summary>A fit whose loss or parameters became infinite or NaN (a diverged run): nothing was returned or written, and the
/// previous model is unchanged. The message says where (task, epoch, step) and what diverged.</summary>
public sealed class ContinualTrainingException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ContinualTrainingException(string message, int taskIndex, int epoch, long step, string what) : base(message)
    {
        TaskIndex = taskIndex;
        Epoch = epoch;
        Step = step;
        What = what;
    }

    /// <summary>The task (0-based, counting every task the model has seen).</summary>
    public int TaskIndex { get; }

    /// <summary>The epoch (0-based).</summary>
    public int Epoch { get; }

    /// <summary>Optimizer steps taken in the task when it diverged.</summary>
    public long Step { get; }

    /// <summary>What diverged: the task loss, the loss with the plugins' terms, or a parameter's name.</summary>
    public string What { get; }
}

/// <summary>A checkpoint that cannot be used: unreadable, or made by another job (other trainer, options, previous model or data).</summary>
public sealed class ContinualCheckpointException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    public ContinualCheckpointException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>Limits and the allowlist for <see cref="ContinualCatalog.LoadModel(string, out DataViewSchema, ContinualLoadOptions)"/>.</summary>
public sealed class ContinualLoadOptions
{
    /// <summary>The most bytes a file's entries may hold once decompressed, relative to the file's size: a model's entries
    /// compress by 1.1 (weights) to about 20 (memories of images, masks) times; DEFLATE's limit is about 1,000. Default 256
    /// (with at least 64 MB allowed whatever the file's size).</summary>
    public long MaxExpansion { get; set; } = 256;

    /// <summary>The most bytes a file's entries may hold once decompressed, in all. Default 8 GiB.</summary>
    public long MaxUncompressedBytes { get; set; } = 8L << 30;

    /// <summary>Simple names of further assemblies whose loaders a model may name (e.g. an assembly of your own with ML.NET
    /// transformers in the chain). ML.NET's assemblies and this library's are always allowed. Default empty.</summary>
    public IReadOnlyCollection<string> AllowedAssemblies { get; set; } = [];

    internal void Validate()
    {
        if (MaxExpansion < 1) throw new ArgumentOutOfRangeException(nameof(MaxExpansion), "MaxExpansion must be at least 1.");
        if (MaxUncompressedBytes < 1) throw new ArgumentOutOfRangeException(nameof(MaxUncompressedBytes), "MaxUncompressedBytes must be positive.");
        ArgumentNullException.ThrowIfNull(AllowedAssemblies);
    }
}
