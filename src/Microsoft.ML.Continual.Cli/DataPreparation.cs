using System.Globalization;
using Microsoft.ML.Data;

namespace Microsoft.ML.Continual.Cli;

/// <summary>Turns a file's table into what a model needs, and says everything that does not match before any training.</summary>
internal static class DataPreparation
{
    /// <summary>The vector column the tool concatenates the feature columns into.</summary>
    public const string FeaturesColumn = "Features";

    /// <summary>A task ready for the model: its view, the feature columns, and how many rows the library will use and skip (and why).</summary>
    public sealed record Prepared(IDataView View, string[] FeatureColumns, long RowsUsed, long RowsSkipped, string? SkipReason)
    {
        /// <summary>With --featurize auto and --features given: the other columns, which the featurizer is told to ignore.</summary>
        public string[] Unselected { get; init; } = [];
    }

    /// <summary>
    /// The first task for the featurizer: the label (and task id) must exist and every column named in --features too; any
    /// column type is welcome (the featurizer decides each one's role). With --features, the other columns are left out.
    /// </summary>
    public static Prepared ForFeaturizing(Table table, string label, string? taskId, string[] features, ContinualPredictionKind? kind)
    {
        var problems = FirstTaskProblems(table, label, taskId);
        foreach (string f in features)
            if (table.Find(f) is null) problems.Add($"the feature column '{f}' {table.WhyAbsent(f)}");
        var columns = FirstTaskColumns(table, label, kind, problems);
        var unselected = features.Length == 0 ? [] : columns.Select(c => c.Name).Where(n => n != label && n != taskId && !features.Contains(n)).ToArray();
        return WithSkippedRows(table, columns, label, features) with { Unselected = unselected };
    }

    /// <summary>The first task: the label (and task id) must exist; the features are the given columns or every numeric one.</summary>
    public static Prepared ForTraining(Table table, string label, string? taskId, string[] features, ContinualPredictionKind? kind)
    {
        var problems = FirstTaskProblems(table, label, taskId);
        string[] chosen = features.Length > 0 ? features
            : table.Columns.Where(c => c.Kind == ColumnKind.Single && c.Name != label && c.Name != taskId).Select(c => c.Name).ToArray();
        foreach (string f in chosen)
        {
            var column = table.Find(f);
            if (column is null) problems.Add($"the feature column '{f}' {table.WhyAbsent(f)}");
            else if (column.Kind != ColumnKind.Single) problems.Add($"the feature column '{f}' is {column.Kind}, not numeric (declare it Single in --schema, or leave it out with --features)");
        }
        if (chosen.Length == 0) problems.Add("there is no numeric feature column");
        var columns = FirstTaskColumns(table, label, kind, problems);
        return WithSkippedRows(table, columns, label, chosen);
    }

    /// <summary>What both first-task paths check: the label and task-id columns exist, and no column takes the feature vector's name.</summary>
    private static List<string> FirstTaskProblems(Table table, string label, string? taskId)
    {
        var problems = new List<string>();
        if (table.Find(label) is null) problems.Add($"the label column '{label}' {table.WhyAbsent(label)}");
        if (taskId is not null && table.Find(taskId) is null) problems.Add($"the task-id column '{taskId}' {table.WhyAbsent(taskId)}");
        if (table.Find(FeaturesColumn) is not null) problems.Add($"a column is named '{FeaturesColumn}', the name the tool gives the feature vector; rename it");
        return problems;
    }

    /// <summary>Fails with every problem found (and the file's columns), else the columns with the label read as the trainer's kind.</summary>
    private static List<TableColumn> FirstTaskColumns(Table table, string label, ContinualPredictionKind? kind, List<string> problems)
    {
        if (table.Rows == 0) problems.Add("the file has no rows");
        if (problems.Count > 0)
            throw new CliException(ExitCodes.DataError, $"Data file '{table.Source}' does not fit: {string.Join("; ", problems)}. Columns: {string.Join(", ", table.Columns.Select(c => $"{c.Name} ({c.Kind})"))}.");
        var columns = table.Columns.ToList();
        int at = columns.FindIndex(c => c.Name == label);
        columns[at] = ConvertLabel(table, columns[at], kind switch
        {
            ContinualPredictionKind.Multiclass => ColumnKind.Text,
            ContinualPredictionKind.Binary => ColumnKind.Boolean,
            _ => columns[at].Kind,
        });
        return columns;
    }

    /// <summary>
    /// A later task or test set for <paramref name="model"/>: finds the columns the model needs (those its scoring cannot do
    /// without, plus its label and task-id columns), and lists every one that is missing or has another type. Numeric labels are
    /// read as the model's label type (text classes, Boolean) when they can be.
    /// </summary>
    /// <param name="featuresOnly">Only the columns the features are made from are needed (shift detection): the label and the task id may be missing.</param>
    public static Prepared ForModel(Table table, ITransformer model, DataViewSchema trainingSchema, IContinualModel continual, bool featuresOnly = false)
    {
        var needed = NeededColumns(model, trainingSchema, continual);
        if (featuresOnly) needed = needed.Where(c => c.Name != continual.LabelColumnName && c.Name != continual.TaskIdColumnName).ToList();
        var problems = new List<string>();
        var columns = table.Columns.ToList();
        var position = columns.Select((c, i) => (c.Name, i)).ToDictionary(p => p.Name, p => p.i, StringComparer.Ordinal);
        foreach (var column in needed)
        {
            int at = position.GetValueOrDefault(column.Name, -1);
            ColumnKind expected = KindOf(column.Type);
            if (at < 0) { problems.Add($"column '{column.Name}' ({expected}) {table.WhyAbsent(column.Name)}"); continue; }
            if (columns[at].Kind == expected) continue;
            if (column.Name == continual.LabelColumnName && columns[at].Kind == ColumnKind.Single && expected != ColumnKind.Single)
            {
                columns[at] = ConvertLabel(table, columns[at], expected);
                continue;
            }
            problems.Add($"column '{column.Name}' is {columns[at].Kind} here but {expected} in the model's training data");
        }
        if (continual.PredictionKind == ContinualPredictionKind.Multiclass && columns.FirstOrDefault(c => c.Name == continual.LabelColumnName) is { Kind: ColumnKind.Text } labelColumn)
        {
            var unseen = DistinctLabels(labelColumn).Where(l => l.Length > 0).Except(continual.Classes).Take(5).ToList();
            if (unseen.Count > 0) Console.Error.WriteLine($"note: new classes in '{table.Source}' ({string.Join(", ", unseen)}{(unseen.Count == 5 ? ", ..." : "")}): a refit adds them; an evaluation counts them as errors.");
        }
        if (problems.Count > 0)
            throw new CliException(ExitCodes.DataError, $"Data file '{table.Source}' does not match the model: {string.Join("; ", problems)}.");
        return WithSkippedRows(table, columns, continual.LabelColumnName, []);
    }

    /// <summary>
    /// The columns of the training schema that <paramref name="model"/> needs: its label and task-id columns, and those its
    /// scores depend on. Asks the chain's row mapper (one pass); a chain that cannot say is probed column by column (can it
    /// still score without this one?), which costs time proportional to the square of the column count.
    /// </summary>
    private static List<DataViewSchema.Column> NeededColumns(ITransformer model, DataViewSchema trainingSchema, IContinualModel continual)
    {
        var named = new HashSet<string?>(StringComparer.Ordinal) { continual.LabelColumnName, continual.TaskIdColumnName };
        HashSet<int>? scoring = null;
        try
        {
            var mapper = model.GetRowToRowMapper(trainingSchema);
            var added = mapper.OutputSchema.Where(c => c.Index >= trainingSchema.Count); // a mapper's output is its input, then what it adds
            scoring = mapper.GetDependencies(added).Select(c => c.Index).ToHashSet();
            if (scoring.Count == 0) scoring = null; // the scores depend on something: a mapper that names nothing cannot say
        }
        catch (Exception e) when (e is InvalidOperationException or NotSupportedException or ArgumentException)
        {
            // not every transformer maps rows: fall back to probing
        }
        return trainingSchema.Where(c => named.Contains(c.Name)
            || (scoring?.Contains(c.Index) ?? !Scores(model, Without(trainingSchema, c.Name)))).ToList();
    }

    /// <summary>The prepared task, counting the rows whose label is missing (NaN or empty text): the library skips them.</summary>
    private static Prepared WithSkippedRows(Table table, List<TableColumn> columns, string label, string[] features)
    {
        var profile = columns.FirstOrDefault(c => c.Name == label);
        long skipped = profile?.Reading switch
        {
            CellReading.Number => profile.Profile.Missing + profile.Profile.NaNs,
            CellReading.LabelAsText => profile.Profile.Missing + profile.Profile.NaNs + profile.Profile.Infinities, // read as "": no class
            CellReading.Text or CellReading.Identifier => profile.Profile.Missing,
            _ => 0,
        };
        string? reason = skipped == 0 ? null : $"no value in the label column {label}";
        return new Prepared(table.With(columns).ToDataView(), features, table.Rows - skipped, skipped, reason);
    }

    /// <summary>A text label column's distinct values as the model reads them (numbers read as classes in their invariant form),
    /// from the scan's profile (at most <see cref="ColumnProfile.DistinctCap"/>).</summary>
    private static IEnumerable<string> DistinctLabels(TableColumn column) => column.Reading == CellReading.LabelAsText
        ? column.Profile.DistinctNumbers.Select(v => v.ToString(CultureInfo.InvariantCulture))
        : column.Profile.DistinctText;

    private static bool Scores(ITransformer model, DataViewSchema schema)
    {
        try
        {
            model.GetOutputSchema(schema);
            return true;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or ContinualDataException or FormatException)
        {
            return false;
        }
    }

    private static DataViewSchema Without(DataViewSchema schema, string name)
    {
        var builder = new DataViewSchema.Builder();
        foreach (var column in schema)
            if (column.Name != name) builder.AddColumn(column.Name, column.Type, column.Annotations);
        return builder.ToSchema();
    }

    private static ColumnKind KindOf(DataViewType type) => type switch
    {
        BooleanDataViewType => ColumnKind.Boolean,
        TextDataViewType => ColumnKind.Text,
        _ => ColumnKind.Single,
    };

    /// <summary>A number label read as the model's type: text classes, or a 0/1 binary label (every row must be 0 or 1).</summary>
    private static TableColumn ConvertLabel(Table table, TableColumn column, ColumnKind target)
    {
        if (column.Kind == target || column.Reading != CellReading.Number) return column;
        if (target == ColumnKind.Text) return column with { Kind = ColumnKind.Text, Reading = CellReading.LabelAsText };
        if (column.Profile.FirstNotBinary is var (row, text))
            throw new CliException(ExitCodes.DataError, $"Data file '{table.Source}', label column '{column.Name}', row {row}: " +
                (text.Length == 0 ? "a missing value" : text) + " is not 0 or 1 (a binary label).");
        return column with { Kind = ColumnKind.Boolean, Reading = CellReading.LabelAsBoolean };
    }
}
