namespace Microsoft.ML.Continual;

/// <summary>The continual-learning scenarios of van de Ven and Tolias (2019) and Hsu et al. (2018).</summary>
public enum ContinualScenario
{
    /// <summary>The task id is given at training and at test time (one output head per task).</summary>
    TaskIncremental,
    /// <summary>The label space stays the same; the input distribution changes; no task id at test time.</summary>
    DomainIncremental,
    /// <summary>New classes arrive with each task; one growing label space; no task id at test time.</summary>
    ClassIncremental,
}

/// <summary>One task of a stream: its training data, its test data and a name.</summary>
public sealed record ContinualTask(string Name, IDataView Train, IDataView Test);

/// <summary>
/// An ordered list of tasks and the scenario they pose. Streams made by this library have the columns
/// <c>Features</c> (a known-size vector of Single), <c>Label</c> (a key) and <c>TaskId</c> (text: "task1", "task2", ...);
/// task-incremental trainers set <see cref="ContinualTrainerOptions.TaskIdColumnName"/> to <c>"TaskId"</c>.
/// </summary>
public sealed class TaskStream : IReadOnlyList<ContinualTask>
{
    private readonly List<ContinualTask> _tasks;

    /// <summary>A stream of the given tasks.</summary>
    public TaskStream(string name, ContinualScenario scenario, IEnumerable<ContinualTask> tasks,
        string featureColumnName = "Features", string labelColumnName = "Label", string? taskIdColumnName = "TaskId")
    {
        ArgumentNullException.ThrowIfNull(tasks);
        _tasks = tasks.ToList();
        if (_tasks.Count == 0) throw new ArgumentException("A task stream needs at least one task.", nameof(tasks));
        Name = name;
        Scenario = scenario;
        FeatureColumnName = featureColumnName;
        LabelColumnName = labelColumnName;
        TaskIdColumnName = taskIdColumnName;
    }

    /// <summary>The stream's name (e.g. "Permuted MNIST").</summary>
    public string Name { get; }

    /// <summary>The scenario the stream poses.</summary>
    public ContinualScenario Scenario { get; }

    /// <summary>The feature column of every task.</summary>
    public string FeatureColumnName { get; }

    /// <summary>The label column of every task.</summary>
    public string LabelColumnName { get; }

    /// <summary>The task-id column of every task, if any.</summary>
    public string? TaskIdColumnName { get; }

    /// <inheritdoc/>
    public int Count => _tasks.Count;

    /// <inheritdoc/>
    public ContinualTask this[int index] => _tasks[index];

    /// <inheritdoc/>
    public IEnumerator<ContinualTask> GetEnumerator() => _tasks.GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>Every task's training rows in one view, task after task in the stream's order: a task-free pass over the
    /// stream as one fit (<see cref="ContinualTrainerOptions.ShuffleRows"/> false, one epoch, and
    /// <see cref="ContinualTrainerOptions.Boundaries"/> = <see cref="ContinualBoundaries.EverySteps"/> so the methods
    /// consolidate without being told where the tasks end). The tasks' training views must have the same columns.</summary>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public IDataView TrainingInOrder() => _tasks.Count == 1 ? _tasks[0].Train : new ConcatenatedDataView(_tasks.Select(t => t.Train).ToList());

    /// <summary>A stream with only the first <paramref name="count"/> tasks.</summary>
    public TaskStream Take(int count) =>
        new(Name, Scenario, _tasks.Take(count), FeatureColumnName, LabelColumnName, TaskIdColumnName);

    /// <summary>
    /// Permuted tasks (Goodfellow et al. 2013; Kirkpatrick et al. 2017): task t applies a fixed random permutation of
    /// the features (seed <paramref name="seed"/> + t) to every row. Domain-incremental: the labels keep their meaning.
    /// </summary>
    /// <param name="train">Training rows: a feature vector column and a key, integer or text label column.</param>
    /// <param name="test">Test rows, same columns.</param>
    /// <param name="numberOfTasks">How many tasks.</param>
    /// <param name="trainSamplesPerTask">Rows per task drawn (seeded, without replacement) from <paramref name="train"/>; null: all.</param>
    /// <param name="testSamplesPerTask">Likewise from <paramref name="test"/>.</param>
    /// <param name="seed">Seed for the permutations and the samples.</param>
    /// <param name="featureColumnName">The feature column of <paramref name="train"/> and <paramref name="test"/>.</param>
    /// <param name="labelColumnName">The label column of <paramref name="train"/> and <paramref name="test"/>.</param>
    public static TaskStream Permuted(IDataView train, IDataView test, int numberOfTasks = 10, int? trainSamplesPerTask = null,
        int? testSamplesPerTask = null, int seed = 0, string featureColumnName = "Features", string labelColumnName = "Label") =>
        StreamBuilders.Permuted(LabeledArrays.Read(train, featureColumnName, labelColumnName), LabeledArrays.Read(test, featureColumnName, labelColumnName),
            "Permuted", numberOfTasks, trainSamplesPerTask, testSamplesPerTask, seed);

    /// <summary>
    /// Rotated tasks (Lopez-Paz and Ranzato 2017): task t rotates every image by an angle spread evenly over
    /// [<paramref name="minAngle"/>, <paramref name="maxAngle"/>) (bilinear interpolation). Domain-incremental.
    /// The features must be a row-major image of <paramref name="width"/> x <paramref name="height"/> pixels.
    /// </summary>
    public static TaskStream Rotated(IDataView train, IDataView test, int width, int height, int numberOfTasks = 10, double minAngle = 0,
        double maxAngle = 180, int? trainSamplesPerTask = null, int? testSamplesPerTask = null, int seed = 0,
        string featureColumnName = "Features", string labelColumnName = "Label") =>
        StreamBuilders.Rotated(LabeledArrays.Read(train, featureColumnName, labelColumnName), LabeledArrays.Read(test, featureColumnName, labelColumnName),
            "Rotated", width, height, numberOfTasks, minAngle, maxAngle, trainSamplesPerTask, testSamplesPerTask, seed);

    /// <summary>
    /// Split tasks with fuzzy boundaries (van de Ven et al.'s task-free setting, their <c>FuzzyBoundaryStream</c>): the
    /// classes of <paramref name="classGroups"/>[t] one group after another, in batches of <paramref name="batchSize"/>
    /// rows; over the <paramref name="fuzzyBatches"/> batches before and after each boundary, each row comes from the next
    /// group with a probability that rises linearly from 0 to 1 (in the batch's middle row terms: (i + ½) / (2F) for the
    /// i-th of the 2F batches), so the stream drifts from one group to the next instead of switching. Task t of the result
    /// is the t-th stretch of the stream (as many batches as one group fills, blended at its edges) with group t's test
    /// rows; train on <see cref="TrainingInOrder"/> in one pass for the task-free setting, or task by task to compare.
    /// Each stretch is drawn from as many batches as the smallest group fills whole (rows a larger group has beyond that
    /// are not used); a row whose drawn group has run out (a group that gave rows to the stretch before it) comes from
    /// the stretch's own group instead, and is left out when that one has run out too, so a stretch may be a few rows
    /// short.
    /// Domain- or class-incremental (a task-incremental row would need its own task id). Unlike van de Ven's stream, the
    /// first group does not come back at the end.
    /// </summary>
    /// <param name="train">Training rows: a feature vector column and a key, integer or text label column.</param>
    /// <param name="test">Test rows, same columns.</param>
    /// <param name="scenario">Domain- or class-incremental.</param>
    /// <param name="classGroups">The classes of each task.</param>
    /// <param name="fuzzyBatches">Batches on each side of a boundary over which the groups blend (F ≥ 1); at most half a group's batches.</param>
    /// <param name="batchSize">Rows per batch of the stream (the trainer's batch size, for the blend to be per step).</param>
    /// <param name="trainSamplesPerTask">Rows per group drawn (seeded, without replacement); null: all.</param>
    /// <param name="testSamplesPerTask">Likewise from <paramref name="test"/>.</param>
    /// <param name="seed">Seed for the samples and the blend's draws.</param>
    /// <param name="featureColumnName">The feature column of <paramref name="train"/> and <paramref name="test"/>.</param>
    /// <param name="labelColumnName">The label column of <paramref name="train"/> and <paramref name="test"/>.</param>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public static TaskStream FuzzySplit(IDataView train, IDataView test, ContinualScenario scenario, IReadOnlyList<int[]> classGroups,
        int fuzzyBatches, int batchSize = 128, int? trainSamplesPerTask = null, int? testSamplesPerTask = null, int seed = 0,
        string featureColumnName = "Features", string labelColumnName = "Label") =>
        StreamBuilders.FuzzySplit(LabeledArrays.Read(train, featureColumnName, labelColumnName), LabeledArrays.Read(test, featureColumnName, labelColumnName),
            "Fuzzy split", scenario, classGroups, fuzzyBatches, batchSize, trainSamplesPerTask, testSamplesPerTask, seed);

    /// <summary>
    /// Split tasks (Zenke et al. 2017): task t holds the classes of <paramref name="classGroups"/>[t], in the scenario
    /// asked for, as Hsu et al. (2018) and van de Ven and Tolias (2019) define them: task-incremental keeps the classes and
    /// gives each task its id (one head per task); domain-incremental relabels each task's classes 0..k-1 (one shared
    /// head of k outputs); class-incremental keeps the classes in one growing label space.
    /// </summary>
    public static TaskStream Split(IDataView train, IDataView test, ContinualScenario scenario, IReadOnlyList<int[]> classGroups,
        int? trainSamplesPerTask = null, int? testSamplesPerTask = null, int seed = 0,
        string featureColumnName = "Features", string labelColumnName = "Label") =>
        StreamBuilders.Split(LabeledArrays.Read(train, featureColumnName, labelColumnName), LabeledArrays.Read(test, featureColumnName, labelColumnName),
            "Split", scenario, classGroups, trainSamplesPerTask, testSamplesPerTask, seed);
}
