using Microsoft.ML.Data;

namespace Microsoft.ML.Continual;

/// <summary>What a model's output columns depend on: the prediction kind, the feature column and, for a multi-head
/// model, its task-id column and task ids.</summary>
internal sealed record OutputLayout(ContinualPredictionKind Kind, string FeatureColumnName, int FeatureSize, int OutputSize,
    LabelVocabulary? Classes, string? TaskIdColumnName, ValueKind? TaskIdKind, IReadOnlyList<string> TaskIds);

/// <summary>
/// The columns a continual model adds and how each is computed from one row's scores. Shared by the batched
/// <see cref="ScoredDataView"/> and the per-row mapper used by prediction engines.
/// </summary>
internal sealed class OutputColumns
{
    private readonly OutputLayout _state;

    public OutputColumns(ContinualModelState state, DataViewSchema input)
        : this(new OutputLayout(state.Kind, state.Options.FeatureColumnName, state.FeatureSize, state.OutputSize, state.Classes,
            state.MultiHead ? state.Options.TaskIdColumnName : null, state.TaskIdKind, state.TaskIds), input)
    {
    }

    public OutputColumns(OutputLayout state, DataViewSchema input)
    {
        _state = state;
        Input = input;
        // Check the input before anything is scored, naming the column at fault.
        TaskData.FeatureSize(input, state.FeatureColumnName, state.FeatureSize);
        FeatureColumn = input[state.FeatureColumnName];
        if (state.TaskIdColumnName is { } taskColumn)
        {
            if (input.GetColumnOrNull(taskColumn) is null)
                throw new ContinualDataException(taskColumn,
                    $"This model has one head per task and needs the task-id column '{taskColumn}' to predict; the data has: {string.Join(", ", input.Select(c => c.Name))}.");
            TaskData.CheckValueColumn(input, taskColumn, "Task-id", state.TaskIdKind, _ => true, "");
            TaskIdColumn = input[taskColumn];
        }

        var builder = new DataViewSchema.Builder();
        builder.AddColumns(input);
        switch (state.Kind)
        {
            case ContinualPredictionKind.Multiclass:
            {
                var classes = state.Classes!;
                int size = state.OutputSize;
                var scoreAnnotations = new DataViewSchema.Annotations.Builder();
                scoreAnnotations.AddSlotNames(size, (ref VBuffer<ReadOnlyMemory<char>> names) =>
                    names = new VBuffer<ReadOnlyMemory<char>>(size, Enumerable.Range(0, size).Select(i => (i < classes.Count ? classes.Describe(i) : "").AsMemory()).ToArray()));
                builder.AddColumn("Score", new VectorDataViewType(NumberDataViewType.Single, size), scoreAnnotations.ToAnnotations());
                var labelAnnotations = new DataViewSchema.Annotations.Builder();
                if (classes.Kind == ValueKind.Key && classes.KeyNames.Count == size)
                    labelAnnotations.AddKeyValues(size, TextDataViewType.Instance, (ref VBuffer<ReadOnlyMemory<char>> values) =>
                        values = new VBuffer<ReadOnlyMemory<char>>(size, classes.KeyNames.Select(n => n.AsMemory()).ToArray()));
                builder.AddColumn("PredictedLabel", LabelVocabulary.TypeOf(classes.Kind, (ulong)size), labelAnnotations.ToAnnotations());
                break;
            }
            case ContinualPredictionKind.Binary:
                builder.AddColumn("Score", NumberDataViewType.Single);
                builder.AddColumn("Probability", NumberDataViewType.Single);
                builder.AddColumn("PredictedLabel", BooleanDataViewType.Instance);
                break;
            default:
                builder.AddColumn("Score", NumberDataViewType.Single);
                break;
        }
        Output = builder.ToSchema();
    }

    public DataViewSchema Input { get; }
    public DataViewSchema Output { get; }
    public DataViewSchema.Column FeatureColumn { get; }
    public DataViewSchema.Column? TaskIdColumn { get; }
    public int OutputSize => _state.OutputSize;
    public int FeatureSize => _state.FeatureSize;

    public bool IsOutput(int index) => index >= Input.Count;

    /// <summary>The input columns needed to compute the outputs.</summary>
    public IEnumerable<DataViewSchema.Column> Dependencies =>
        TaskIdColumn is { } t ? [FeatureColumn, t] : [FeatureColumn];

    /// <summary>Maps a task id read from a row to its head, with a clear error for a task the model never saw.</summary>
    public long HeadOf(in LabelValue taskId)
    {
        string id = taskId.ToString();
        int head = -1;
        for (int i = 0; i < _state.TaskIds.Count && head < 0; i++) if (_state.TaskIds[i] == id) head = i;
        if (head < 0)
            throw new ContinualDataException(TaskIdColumn?.Name,
                $"Task id '{id}' in column '{TaskIdColumn?.Name}' was never trained; this model knows tasks: {string.Join(", ", _state.TaskIds)}.")
            { IsUnknownTask = true };
        return head;
    }

    /// <summary>A getter for output column <paramref name="index"/> that reads the current row's scores through <paramref name="scores"/>.</summary>
    public Delegate MakeGetter(int index, Func<ReadOnlyMemory<float>> scores)
    {
        string name = Output[index].Name;
        switch (_state.Kind)
        {
            case ContinualPredictionKind.Multiclass when name == "Score":
                return (ValueGetter<VBuffer<float>>)((ref VBuffer<float> value) =>
                {
                    var s = scores();
                    var editor = VBufferEditor.Create(ref value, s.Length);
                    s.Span.CopyTo(editor.Values);
                    value = editor.Commit();
                });
            case ContinualPredictionKind.Multiclass:
                return PredictedClassGetter(scores);
            case ContinualPredictionKind.Binary when name == "Score":
                return (ValueGetter<float>)((ref float value) => value = scores().Span[0]);
            case ContinualPredictionKind.Binary when name == "Probability":
                return (ValueGetter<float>)((ref float value) => value = 1f / (1f + MathF.Exp(-scores().Span[0])));
            case ContinualPredictionKind.Binary:
                return (ValueGetter<bool>)((ref bool value) => value = scores().Span[0] > 0);
            default:
                return (ValueGetter<float>)((ref float value) => value = scores().Span[0]);
        }
    }

    private Delegate PredictedClassGetter(Func<ReadOnlyMemory<float>> scores)
    {
        var classes = _state.Classes!;
        int ArgMax()
        {
            var s = scores().Span;
            int best = 0;
            for (int i = 1; i < s.Length; i++) if (s[i] > s[best]) best = i;
            return best;
        }
        return classes.Kind switch
        {
            ValueKind.Key => (ValueGetter<uint>)((ref uint v) => v = (uint)ArgMax() + 1),
            ValueKind.Text => (ValueGetter<ReadOnlyMemory<char>>)((ref ReadOnlyMemory<char> v) => v = classes.TextAt(ArgMax()).AsMemory()),
            ValueKind.Boolean => (ValueGetter<bool>)((ref bool v) => v = classes.NumberAt(ArgMax()) != 0),
            ValueKind.Int32 => (ValueGetter<int>)((ref int v) => v = (int)classes.NumberAt(ArgMax())),
            ValueKind.Int64 => (ValueGetter<long>)((ref long v) => v = (long)classes.NumberAt(ArgMax())),
            ValueKind.UInt32 => (ValueGetter<uint>)((ref uint v) => v = (uint)classes.NumberAt(ArgMax())),
            ValueKind.Single => (ValueGetter<float>)((ref float v) => v = (float)classes.NumberAt(ArgMax())),
            _ => (ValueGetter<double>)((ref double v) => v = classes.NumberAt(ArgMax())),
        };
    }
}
