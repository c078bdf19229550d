using System.Globalization;
using Microsoft.ML.Data;

namespace Microsoft.ML.Continual.Trees;

/// <summary>What a <see cref="ContinualLightGbmTransformer"/> holds: the trees as LightGBM's model text, the replay memory
/// and the options; never changed after it is made.</summary>
internal sealed class BoostedTreesState
{
    private LightGbmNative.Booster? _booster;
    private readonly object _load = new();

    public required ContinualLightGbmTrainer.Options Options { get; init; }
    public required ContinualPredictionKind Kind { get; init; }
    public required int FeatureSize { get; init; }
    public required string ModelText { get; init; }
    public required ReplayRows Memory { get; init; }
    public required IReadOnlyList<int> RoundsPerTask { get; init; }
    public long RowsSeen { get; init; }
    /// <summary>A sample of the latest fit's raw feature rows for shift detection, or null (none kept).</summary>
    public ShiftReference? ShiftReference { get; init; }
    public int TasksSeen => RoundsPerTask.Count;
    public TreeFeatureLayout Layout => TreeFeatureLayout.Of(Options, FeatureSize, Options.FeatureColumnName);
    public int FormatVersion { get; init; } = Internal.BoostedTreesFormat.CurrentVersion;

    /// <summary>The trees, loaded from the model text on first use (prediction is thread-safe in LightGBM).</summary>
    public LightGbmNative.Booster Booster
    {
        get
        {
            lock (_load) return _booster ??= LightGbmNative.Booster.FromText(ModelText);
        }
    }
}

/// <summary>A bounded uniform sample of every row seen (reservoir sampling, Vitter's algorithm R), row-major features.</summary>
internal sealed class ReplayRows
{
    public ReplayRows(int capacity, int featureSize, float[] features, float[] labels, int count, long seen)
    {
        Capacity = capacity;
        FeatureSize = featureSize;
        Features = features;
        Labels = labels;
        Count = count;
        Seen = seen;
    }

    public int Capacity { get; }
    public int FeatureSize { get; }
    public float[] Features { get; }
    public float[] Labels { get; }
    public int Count { get; }

    /// <summary>Rows offered to the reservoir so far.</summary>
    public long Seen { get; }

    public static ReplayRows Empty(int capacity, int featureSize) => new(capacity, featureSize, [], [], 0, 0);

    /// <summary>The same sample grown one row at a time, for a task read as a stream: offering the task's rows in order gives
    /// exactly <see cref="With"/>'s result (same algorithm, same generator), without holding the task.</summary>
    public sealed class Builder
    {
        private readonly ReplayRows _from;
        private readonly Random _random;
        private float[] _features, _labels;
        private int _count;
        private long _seen;

        public Builder(ReplayRows from, int seed)
        {
            _from = from;
            _count = from.Count;
            _seen = from.Seen;
            _random = new Random(unchecked((int)(seed * 1_000_003L + from.Seen))); // as With: not HashCode.Combine, which is randomised per process
            int size = Math.Min(from.Capacity, Math.Max(from.Count, 1024));
            _features = new float[(long)size * from.FeatureSize];
            _labels = new float[size];
            from.Features.AsSpan(0, from.Count * from.FeatureSize).CopyTo(_features);
            from.Labels.AsSpan(0, from.Count).CopyTo(_labels);
        }

        public void Offer(ReadOnlySpan<float> row, float label)
        {
            int d = _from.FeatureSize;
            long slot = _count < _from.Capacity ? _count++ : _random.NextInt64(_seen + 1);
            _seen++;
            if (slot >= _from.Capacity) return;
            if (slot >= _labels.Length) // grow towards the capacity as rows come
            {
                int size = (int)Math.Min(_from.Capacity, Math.Max(2L * _labels.Length, slot + 1));
                Array.Resize(ref _labels, size);
                Array.Resize(ref _features, size * d);
            }
            row.CopyTo(_features.AsSpan((int)slot * d, d));
            _labels[slot] = label;
        }

        public ReplayRows Build() => new(_from.Capacity, _from.FeatureSize, _features[..(_count * _from.FeatureSize)], _labels[.._count], _count, _seen);
    }

    /// <summary>A new sample: this one with <paramref name="rows"/> rows offered in order; seeded by <paramref name="seed"/>.</summary>
    public ReplayRows With(float[] features, float[] labels, int rows, int seed)
    {
        int d = FeatureSize;
        int size = (int)Math.Min(Capacity, Count + (long)rows);
        var newFeatures = new float[(long)size * d];
        var newLabels = new float[size];
        Features.AsSpan(0, Count * d).CopyTo(newFeatures);
        Labels.AsSpan(0, Count).CopyTo(newLabels);
        int count = Count;
        long seen = Seen;
        var random = new Random(unchecked((int)(seed * 1_000_003L + seen))); // not HashCode.Combine: it is randomised per process
        for (int i = 0; i < rows; i++, seen++)
        {
            long slot = count < Capacity ? count++ : random.NextInt64(seen + 1);
            if (slot >= Capacity) continue;
            features.AsSpan(i * d, d).CopyTo(newFeatures.AsSpan((int)slot * d, d));
            newLabels[slot] = labels[i];
        }
        return new ReplayRows(Capacity, d, newFeatures, newLabels, count, seen);
    }
}

/// <summary>One task of continued boosting: read the rows, score them with the earlier trees, boost with early stopping,
/// update the memory.</summary>
internal static class BoostedTreesTraining
{
    public static ContinualPredictionKind KindOf(DataViewType labelType, string column) => labelType switch
    {
        BooleanDataViewType => ContinualPredictionKind.Binary,
        _ when labelType == NumberDataViewType.Single || labelType == NumberDataViewType.Double => ContinualPredictionKind.Regression,
        _ => throw new ContinualDataException(column,
            $"Label column '{column}' has type {labelType}; the LightGbm continual trainer takes a Boolean label (binary classification) or a Single/Double label (regression). For classes, use a network trainer (e.g. mlContext.Continual().Trainers.Replay)."),
    };

    public static BoostedTreesState Train(BoostedTreesState? previous, ContinualLightGbmTrainer.Options options, IDataView data, CancellationToken cancellation)
    {
        options.Validate();
        var (kind, inputSize) = CheckSchema(previous, options, data.Schema);
        var layout = TreeFeatureLayout.Of(options, inputSize, options.FeatureColumnName);
        if (previous is not null && previous.Options.MemorySize != options.MemorySize)
            throw new ArgumentException($"MemorySize {options.MemorySize:N0} differs from the model's {previous.Options.MemorySize:N0}: a reservoir cannot change its size and stay a uniform sample of the rows seen.");
        if (previous is not null && previous.Layout != layout)
            throw new ArgumentException($"The options code {layout.Categoricals} categorical columns in {layout.Bits} bits each; the model was trained with {previous.Layout.Categoricals} in {previous.Layout.Bits}.");
        int featureSize = layout.Width;
        int seed = options.Seed ?? 0;
        int task = previous?.TasksSeen ?? 0;
        var memory = previous?.Memory ?? ReplayRows.Empty(options.MemorySize, featureSize);
        var reference = options.ShiftReferenceRows == 0 ? null : new ShiftReferenceBuilder(options.ShiftReferenceRows, inputSize, unchecked((seed + task) ^ 0x5EEDF00D));
        var (features, labels, rows, periodRows, sampledMemory) = options.MaximumRowsPerPeriod is int most
            ? ReadSample(data, options, inputSize, layout, kind, memory, most, seed + task, reference, cancellation)
            : ReadAll(data, options, inputSize, layout, kind, reference, cancellation);
        var (trainIndex, validationIndex) = Split(rows, options.ValidationFraction, seed + task);

        // The training rows: the task's (less its validation slice) and the memory's.
        int trainRows = trainIndex.Length + memory.Count;
        var trainFeatures = new float[(long)trainRows * featureSize];
        var trainLabels = new float[trainRows];
        Gather(features, labels, trainIndex, featureSize, trainFeatures, trainLabels, 0);
        memory.Features.AsSpan(0, memory.Count * featureSize).CopyTo(trainFeatures.AsSpan(trainIndex.Length * featureSize));
        memory.Labels.AsSpan(0, memory.Count).CopyTo(trainLabels.AsSpan(trainIndex.Length));
        var validationFeatures = new float[(long)validationIndex.Length * featureSize];
        var validationLabels = new float[validationIndex.Length];
        Gather(features, labels, validationIndex, featureSize, validationFeatures, validationLabels, 0);

        var (text, rounds) = Boost(options.Mode == ContinualBoostingMode.AddRounds ? previous : null, options, kind, layout, trainFeatures, trainLabels, validationFeatures, validationLabels, cancellation);
        var newMemory = options.MemorySize == 0 ? memory : sampledMemory ?? memory.With(features, labels, rows, seed);
        return new BoostedTreesState
        {
            Options = options, Kind = kind, FeatureSize = inputSize, ModelText = text, Memory = newMemory,
            RoundsPerTask = [.. previous?.RoundsPerTask ?? [], rounds], RowsSeen = (previous?.RowsSeen ?? 0) + periodRows,
            ShiftReference = reference?.Build(),
        };
    }

    /// <summary>The whole task in memory, encoded for LightGBM.</summary>
    private static (float[] Features, float[] Labels, int Rows, long PeriodRows, ReplayRows? Memory) ReadAll(IDataView data,
        ContinualLightGbmTrainer.Options options, int inputSize, TreeFeatureLayout layout, ContinualPredictionKind kind, ShiftReferenceBuilder? reference,
        CancellationToken cancellation)
    {
        var (input, labels, rows) = ReadRows(data, options, inputSize, kind, cancellation);
        if (reference is not null)
            for (int i = 0; i < rows; i++) reference.Offer(input.AsSpan(i * inputSize, inputSize));
        var features = new float[(long)rows * layout.Width];
        layout.Encode(input, rows, features);
        return (features, labels, rows, rows, null);
    }

    /// <summary>
    /// A task read as a stream when <see cref="ContinualLightGbmTrainer.Options.MaximumRowsPerPeriod"/> is set: the trees
    /// train on a uniform sample of at most that many of its rows (Vitter's algorithm R, kept in the task's order), while
    /// the replay memory is offered every row, as it would be with the task in memory. Memory: the sample and the replay
    /// memory, whatever the task's size. A task no larger than the limit gives exactly what reading it whole gives.
    /// </summary>
    private static (float[] Features, float[] Labels, int Rows, long PeriodRows, ReplayRows? Memory) ReadSample(IDataView data,
        ContinualLightGbmTrainer.Options options, int inputSize, TreeFeatureLayout layout, ContinualPredictionKind kind, ReplayRows memory,
        int most, int seed, ShiftReferenceBuilder? reference, CancellationToken cancellation)
    {
        int d = layout.Width;
        var sample = new float[(long)Math.Min(most, 1024) * d];
        var sampleLabels = new float[Math.Min(most, 1024)];
        var order = new long[sampleLabels.Length]; // each kept row's place in the task, to restore the task's order
        var builder = options.MemorySize == 0 ? null : new ReplayRows.Builder(memory, options.Seed ?? 0);
        var random = new Random(unchecked(seed * 7919 + 17));
        var row = new float[inputSize];
        var encoded = new float[d];
        long seen = 0;
        int kept = 0;
        using (var reader = new TaskRowReader(data, options.FeatureColumnName, inputSize, options.LabelColumnName, null))
        {
            while (reader.Next(row, out LabelValue label, out _, cancellation))
            {
                float y = (float)label.Number;
                if (kind == ContinualPredictionKind.Regression && !float.IsFinite(y))
                    throw new ContinualDataException(options.LabelColumnName, $"Label column '{options.LabelColumnName}' has an infinite value; regression labels must be finite.");
                reference?.Offer(row);
                layout.Encode(row, 1, encoded);
                builder?.Offer(encoded, y);
                long slot = kept < most ? kept++ : random.NextInt64(seen + 1);
                if (slot < most)
                {
                    if (slot >= sampleLabels.Length)
                    {
                        int size = (int)Math.Min(most, 2L * sampleLabels.Length);
                        Array.Resize(ref sampleLabels, size);
                        Array.Resize(ref order, size);
                        Array.Resize(ref sample, size * d);
                    }
                    encoded.CopyTo(sample.AsSpan((int)slot * d, d));
                    sampleLabels[slot] = y;
                    order[slot] = seen;
                }
                seen++;
            }
        }
        if (seen == 0) throw new ContinualDataException(options.LabelColumnName, "The task has no labelled rows.");
        // Back in the task's order: LightGBM's bins and ties see the rows as they came.
        var byPlace = Enumerable.Range(0, kept).OrderBy(i => order[i]).ToArray();
        var features = new float[(long)kept * d];
        var labels = new float[kept];
        for (int i = 0; i < kept; i++)
        {
            sample.AsSpan(byPlace[i] * d, d).CopyTo(features.AsSpan(i * d, d));
            labels[i] = sampleLabels[byPlace[i]];
        }
        return (features, labels, kept, seen, builder?.Build());
    }

    private static (ContinualPredictionKind Kind, int FeatureSize) CheckSchema(BoostedTreesState? previous, ContinualLightGbmTrainer.Options options, DataViewSchema schema)
    {
        int featureSize = TaskData.FeatureSize(schema, options.FeatureColumnName, previous?.FeatureSize);
        var label = schema.GetColumnOrNull(options.LabelColumnName) ?? throw new ContinualDataException(options.LabelColumnName,
            $"Label column '{options.LabelColumnName}' was not found; the data has: {string.Join(", ", schema.Select(c => c.Name))}.");
        var kind = KindOf(label.Type, label.Name);
        if (previous is not null && previous.Kind != kind)
            throw new ContinualDataException(label.Name, $"Label column '{label.Name}' gives {kind}; the model was trained for {previous.Kind}.");
        return (kind, featureSize);
    }

    /// <summary>Every labelled row (a missing label skips the row; a feature that is not finite is an error naming it).</summary>
    private static (float[] Features, float[] Labels, int Rows) ReadRows(IDataView data, ContinualLightGbmTrainer.Options options, int featureSize,
        ContinualPredictionKind kind, CancellationToken cancellation)
    {
        var features = new List<float>();
        var labels = new List<float>();
        var row = new float[featureSize];
        using (var reader = new TaskRowReader(data, options.FeatureColumnName, featureSize, options.LabelColumnName, null))
        {
            while (reader.Next(row, out LabelValue label, out _, cancellation))
            {
                features.AddRange(row);
                labels.Add((float)label.Number);
                if (labels.Count == int.MaxValue / Math.Max(featureSize, 1))
                    throw new ContinualDataException(options.FeatureColumnName, $"The task has more than {labels.Count:N0} rows of {featureSize} features, more than one LightGBM dataset holds; split it into several refits.");
            }
        }
        if (labels.Count == 0) throw new ContinualDataException(options.LabelColumnName, "The task has no labelled rows.");
        if (kind == ContinualPredictionKind.Regression && labels.Any(l => !float.IsFinite(l)))
            throw new ContinualDataException(options.LabelColumnName, $"Label column '{options.LabelColumnName}' has an infinite value; regression labels must be finite.");
        return (features.ToArray(), labels.ToArray(), labels.Count);
    }

    private static (int[] Train, int[] Validation) Split(int rows, double fraction, int seed)
    {
        // A random slice: the task's last rows (for rows in time order) stopped January's flights after one round.
        int validation = fraction == 0 || rows < 20 ? 0 : (int)Math.Round(rows * fraction);
        var order = Enumerable.Range(0, rows).ToArray();
        new Random(seed).Shuffle(order);
        var held = order.Take(validation).Order().ToArray();
        var train = order.Skip(validation).Order().ToArray(); // in the task's own order: LightGBM's bins and ties see the rows as given
        return (train, held);
    }

    private static void Gather(float[] features, float[] labels, int[] index, int d, float[] toFeatures, float[] toLabels, int at)
    {
        for (int i = 0; i < index.Length; i++)
        {
            features.AsSpan(index[i] * d, d).CopyTo(toFeatures.AsSpan((at + i) * d, d));
            toLabels[at + i] = labels[index[i]];
        }
    }

    private static string Parameters(ContinualLightGbmTrainer.Options options, ContinualPredictionKind kind, TreeFeatureLayout layout, int threads)
    {
        var c = CultureInfo.InvariantCulture;
        string objective = kind == ContinualPredictionKind.Binary ? "objective=binary metric=binary_logloss" : "objective=regression metric=l2";
        // Rounds added to a confident earlier model see tiny hessians where it is wrong (p(1-p) near 0 at margins of ±12), and
        // Newton's leaf values -G/H then reach thousands (AUC 0.96 fell to 0.74 on the tests' customer table). L2 on the leaf
        // values, -G/(H+λ), bounds them by the leaf's gradient sum; max_delta_step instead left no split with a positive gain.
        string trustRegion = options.Mode == ContinualBoostingMode.AddRounds ? " lambda_l2=10" : "";
        return $"{objective} learning_rate={options.LearningRate.ToString("R", c)} num_leaves={options.NumberOfLeaves} min_data_in_leaf={options.MinimumExampleCountPerLeaf}"
            + $" seed={options.Seed ?? 0} deterministic=true force_row_wise=true verbosity=-1 num_threads={threads}{trustRegion}{layout.Parameter}";
    }

    /// <summary>The task's rounds on top of the earlier trees, stopped early on the validation slice; the rounds after the
    /// best are rolled back. Returns the whole model's text and the rounds kept.</summary>
    private static (string Text, int Rounds) Boost(BoostedTreesState? previous, ContinualLightGbmTrainer.Options options, ContinualPredictionKind kind, TreeFeatureLayout layout,
        float[] trainFeatures, float[] trainLabels, float[] validationFeatures, float[] validationLabels, CancellationToken cancellation)
    {
        string parameters = Parameters(options, kind, layout, options.NumberOfThreads ?? Environment.ProcessorCount);
        // Binning on one thread: LightGBM's worker threads print warnings past the log callback (thread-local), which would
        // break the tool's JSON on standard output; binning is a small part of the time.
        string datasetParameters = Parameters(options, kind, layout, threads: 1);
        int d = layout.Width;
        int trainRows = trainLabels.Length, validationRows = validationLabels.Length;
        using var train = LightGbmNative.Dataset.Create(trainFeatures, trainRows, d, datasetParameters, null);
        train.SetLabels(trainLabels);
        using var validation = validationRows > 0 ? LightGbmNative.Dataset.Create(validationFeatures, validationRows, d, datasetParameters, train) : null;
        validation?.SetLabels(validationLabels);
        if (previous is not null)
        {
            // Start every row from the earlier trees' raw score, as LightGBM's continued training does.
            var scores = new double[Math.Max(trainRows, validationRows)];
            previous.Booster.PredictRaw(trainFeatures, trainRows, d, scores, options.NumberOfThreads ?? 1);
            train.SetInitialScores(scores.AsSpan(0, trainRows));
            if (validation is not null)
            {
                previous.Booster.PredictRaw(validationFeatures, validationRows, d, scores, options.NumberOfThreads ?? 1);
                validation.SetInitialScores(scores.AsSpan(0, validationRows));
            }
        }
        using var booster = LightGbmNative.Booster.Create(train, parameters);
        if (previous is not null) booster.MergeBefore(previous.Booster);
        if (validation is not null) booster.AddValidation(validation);

        double best = double.PositiveInfinity;
        int rounds = 0, bestRounds = 0;
        while (rounds < options.NumberOfIterations)
        {
            cancellation.ThrowIfCancellationRequested();
            if (booster.Boost()) break; // no split left: LightGBM dropped the round's trees itself
            rounds++;
            if (validation is null) bestRounds = rounds;
            else
            {
                double loss = booster.Metric(1);
                if (!double.IsFinite(loss))
                    throw new ContinualTrainingException($"Boosting diverged: the validation loss is {loss} after round {rounds} of task {(previous?.TasksSeen ?? 0) + 1}; nothing was kept (lower LearningRate).",
                        previous?.TasksSeen ?? 0, 0, rounds, "validation loss");
                if (loss < best) { best = loss; bestRounds = rounds; }
                else if (rounds - bestRounds >= options.EarlyStoppingRounds) break;
            }
        }
        if (previous is null) bestRounds = Math.Max(bestRounds, 1); // a first model has at least one tree
        for (int i = bestRounds; i < rounds; i++) booster.RollBack();
        // The text is checked as a loaded file's would be, so that what is saved is what a load accepts.
        return (LightGbmModelText.Checked(booster.ToText(), d, kind), bestRounds);
    }
}

/// <summary>How input rows become LightGBM's rows: the leading slots as numbers, then each binary-coded categorical group
/// decoded (most significant bit first) to its bucket index, one categorical feature per group.</summary>
internal readonly record struct TreeFeatureLayout(int InputSize, int Numbers, int Categoricals, int Bits)
{
    public int Width => Numbers + Categoricals;

    public static TreeFeatureLayout Of(ContinualLightGbmTrainer.Options options, int inputSize, string featureColumn)
    {
        long coded = (long)options.BinaryCodedCategoricals * options.BitsPerCategorical;
        if (coded > inputSize)
            throw new ContinualDataException(featureColumn,
                $"Feature column '{featureColumn}' has {inputSize} slots; the options say its last {options.BinaryCodedCategoricals} × {options.BitsPerCategorical} are binary-coded categories.");
        return new TreeFeatureLayout(inputSize, inputSize - (int)coded, options.BinaryCodedCategoricals, options.BitsPerCategorical);
    }

    /// <summary>LightGBM's <c>categorical_feature</c> parameter (empty when there are none).</summary>
    public string Parameter => Categoricals == 0 ? "" : " categorical_feature=" + string.Join(",", Enumerable.Range(Numbers, Categoricals));

    /// <summary>Encodes <paramref name="rows"/> input rows into LightGBM rows.</summary>
    public void Encode(ReadOnlySpan<float> input, int rows, Span<float> output)
    {
        for (int r = 0; r < rows; r++)
        {
            var source = input.Slice(r * InputSize, InputSize);
            var target = output.Slice(r * Width, Width);
            source[..Numbers].CopyTo(target);
            for (int g = 0; g < Categoricals; g++)
            {
                int bucket = 0;
                var bits = source.Slice(Numbers + g * Bits, Bits);
                for (int b = 0; b < Bits; b++) bucket = (bucket << 1) | (bits[b] > 0.5f ? 1 : 0);
                target[Numbers + g] = bucket;
            }
        }
    }
}
