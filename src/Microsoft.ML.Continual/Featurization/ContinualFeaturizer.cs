using System.Globalization;
using Microsoft.ML.Data;
using Microsoft.ML.Transforms;

namespace Microsoft.ML.Continual;

/// <summary>What a column of a table is used as.</summary>
public enum ColumnRole
{
    /// <summary>A number: standardised with the first task's mean and variance; a missing value becomes the mean, with an indicator.</summary>
    Numeric,
    /// <summary>A category: hashed into buckets (a category first seen later still gets one), learned embeddings.</summary>
    Categorical,
    /// <summary>A Boolean: 0 or 1.</summary>
    Boolean,
    /// <summary>A date and time: its hour, day of the week, day of the month and month, each as a point on a circle
    /// (sine and cosine), so that a later period's dates fall in the range the model was trained on.</summary>
    Date,
    /// <summary>Free text: hashed word counts.</summary>
    Text,
    /// <summary>Not used (an identifier, a constant, or asked for).</summary>
    Ignore,
    /// <summary>The label.</summary>
    Label,
    /// <summary>The task id.</summary>
    TaskId,
}

/// <summary>A column's inferred (or given) role and why.</summary>
/// <param name="Name">The column.</param>
/// <param name="Role">What it is used as.</param>
/// <param name="Reason">Why (for the printout), e.g. "text, 229 distinct values in 10,000 rows".</param>
public sealed record ColumnRoleInfo(string Name, ColumnRole Role, string Reason);

/// <summary>Options of <see cref="ContinualFeaturizer.Infer"/>: the label and task id, overrides, and the encoding's sizes.</summary>
public sealed class ContinualFeaturizerOptions
{
    /// <summary>The label column (not a feature). Default <c>"Label"</c>.</summary>
    public string LabelColumnName { get; set; } = "Label";

    /// <summary>The task-id column, if any (not a feature).</summary>
    public string? TaskIdColumnName { get; set; }

    /// <summary>Columns to use as categories whatever their type (e.g. integer codes).</summary>
    public IReadOnlyCollection<string> Categorical { get; set; } = [];

    /// <summary>Columns to use as numbers (text that should parse as numbers).</summary>
    public IReadOnlyCollection<string> Numeric { get; set; } = [];

    /// <summary>Columns to leave out.</summary>
    public IReadOnlyCollection<string> Ignore { get; set; } = [];

    /// <summary>Columns to use as free text.</summary>
    public IReadOnlyCollection<string> Text { get; set; } = [];

    /// <summary>Hash bits per categorical column: 2^bits buckets. Default 10 (1,024 buckets).</summary>
    public int HashBits { get; set; } = 10;

    /// <summary>Hash bits of a free-text column's word counts. Default 8 (256 counts).</summary>
    public int TextHashBits { get; set; } = 8;

    /// <summary>Rows read to infer the roles. Default 10,000.</summary>
    public int SampleRows { get; set; } = 10_000;

    internal void Validate()
    {
        if (string.IsNullOrWhiteSpace(LabelColumnName)) throw new ArgumentOutOfRangeException(nameof(LabelColumnName), "A label column is needed.");
        if (HashBits is < 1 or > 24) throw new ArgumentOutOfRangeException(nameof(HashBits), "HashBits must be in [1, 24].");
        if (TextHashBits is < 1 or > 16) throw new ArgumentOutOfRangeException(nameof(TextHashBits), "TextHashBits must be in [1, 16].");
        if (SampleRows < 1) throw new ArgumentOutOfRangeException(nameof(SampleRows), "SampleRows must be positive.");
    }
}

/// <summary>
/// Infers what each column of a table is (number, category, Boolean, date, free text, identifier to ignore), the way
/// ML.NET's column inference does, and builds the featurizing pipeline in front of a continual trainer: the
/// <c>Features</c> vector that <see cref="TabularBackbone"/> reads (standardised numbers, 0/1 indicators, hashed
/// category buckets). The pipeline is made of ML.NET's own transforms (and one custom mapping for date parts); fitted on
/// the first task, it stays as fitted in the saved chain, so every later task sees the same feature space. The
/// <c>continual</c> tool builds the same pipeline from the same inference.
/// </summary>
/// <example><code source="../../src/Samples/TabularSample.cs" /></example>
public static class ContinualFeaturizer
{
    /// <summary>The feature column the pipeline makes.</summary>
    public const string FeaturesColumn = "Features";

    /// <summary>Infers the roles from a sample of <paramref name="data"/>'s rows and builds the pipeline for them.</summary>
    public static ContinualFeaturization Infer(MLContext mlContext, IDataView data, ContinualFeaturizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var roles = ColumnInference.Infer(data, options);
        return Build(mlContext, data.Schema, roles, options);
    }

    /// <summary>
    /// The roles a fitted model's featurizer gave the columns of <paramref name="inputSchema"/> (e.g. of a model loaded from a
    /// file, for <c>continual inspect</c>), read from the columns the pipeline made; an empty list when
    /// <paramref name="model"/> has no featurizer of this class. The reasons say "fitted" (the inference's own reasons are
    /// not kept in the model).
    /// </summary>
    public static IReadOnlyList<ColumnRoleInfo> RolesOf(ITransformer model, DataViewSchema inputSchema)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputSchema);
        var output = model.GetOutputSchema(inputSchema);
        var made = new HashSet<string>(output.Select(c => c.Name), StringComparer.Ordinal);
        string[] prefixes = ["__num.", "__cat.", "__bool.", "__date.", "__text."];
        if (!made.Any(name => prefixes.Any(p => name.StartsWith(p, StringComparison.Ordinal)))) return [];
        var continual = ContinualCatalog.FindContinualModel(model); // a network or boosted trees
        string? label = continual?.LabelColumnName, taskId = continual?.TaskIdColumnName;
        return inputSchema.Where(c => !c.IsHidden).Select(c => c.Name switch
        {
            _ when c.Name == label => new ColumnRoleInfo(c.Name, ColumnRole.Label, "the label"),
            _ when c.Name == taskId => new ColumnRoleInfo(c.Name, ColumnRole.TaskId, "the task id"),
            _ when made.Contains("__num." + c.Name) => new ColumnRoleInfo(c.Name, ColumnRole.Numeric, "fitted"),
            _ when made.Contains("__cat." + c.Name) => new ColumnRoleInfo(c.Name, ColumnRole.Categorical, "fitted"),
            _ when made.Contains("__bool." + c.Name) => new ColumnRoleInfo(c.Name, ColumnRole.Boolean, "fitted"),
            _ when made.Contains("__date." + c.Name) => new ColumnRoleInfo(c.Name, ColumnRole.Date, "fitted"),
            _ when made.Contains("__text." + c.Name) => new ColumnRoleInfo(c.Name, ColumnRole.Text, "fitted"),
            _ => new ColumnRoleInfo(c.Name, ColumnRole.Ignore, "not read by the featurizer"),
        }).ToList();
    }

    /// <summary>Builds the pipeline for roles given (e.g. edited after <see cref="Infer"/>).</summary>
    public static ContinualFeaturization Build(MLContext mlContext, DataViewSchema schema, IReadOnlyList<ColumnRoleInfo> roles, ContinualFeaturizerOptions options)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        ArgumentNullException.ThrowIfNull(roles);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return new PipelineBuilder(mlContext, schema, roles, options).Build();
    }

    /// <summary>Builds the ML.NET pipeline: dates to parts, numbers standardised (with missing-value indicators), Booleans
    /// to 0/1, categories hashed and encoded as bucket bits, free text as hashed word counts, all concatenated.</summary>
    private sealed class PipelineBuilder(MLContext ml, DataViewSchema schema, IReadOnlyList<ColumnRoleInfo> roles, ContinualFeaturizerOptions options)
    {
        private IEstimator<ITransformer>? _pipeline;
        private readonly List<string> _numeric = new(), _indicators = new(), _categorical = new();

        private void Add(IEstimator<ITransformer> step) => _pipeline = _pipeline is null ? step : _pipeline.Append(step);

        public ContinualFeaturization Build()
        {
            foreach (var role in roles)
            {
                var column = schema[role.Name];
                switch (role.Role)
                {
                    case ColumnRole.Numeric: AddNumeric(role.Name, column.Type); break;
                    case ColumnRole.Boolean: AddBoolean(role.Name, column.Type); break;
                    case ColumnRole.Date: AddDate(role.Name, column.Type); break;
                    case ColumnRole.Categorical: AddCategorical(role.Name, column.Type); break;
                    case ColumnRole.Text: AddText(role.Name, column.Type); break;
                }
            }
            if (_numeric.Count + _indicators.Count + _categorical.Count == 0)
                throw new ContinualDataException(options.LabelColumnName, $"No column is left to learn from: {string.Join(", ", roles.Select(r => $"{r.Name} ({r.Role})"))}.");
            int numericSlots = 0, indicatorSlots = 0;
            var parts = new List<string>();
            if (_numeric.Count > 0)
            {
                // One vector of every number: missing values indicated, then replaced by the first task's mean, then standardised.
                Add(ml.Transforms.Concatenate("__Numbers", _numeric.ToArray()));
                Add(ml.Transforms.IndicateMissingValues("__Missing", "__Numbers"));
                Add(ml.Transforms.Conversion.ConvertType("__MissingFlags", "__Missing", DataKind.Single));
                Add(ml.Transforms.ReplaceMissingValues("__Numbers", replacementMode: MissingValueReplacingEstimator.ReplacementMode.Mean));
                Add(ml.Transforms.NormalizeMeanVariance("__Numbers", fixZero: false));
                parts.Add("__Numbers");
                numericSlots = _numeric.Sum(SlotCount);
                _slots["__MissingFlags"] = numericSlots;
                _indicators.Insert(0, "__MissingFlags");
            }
            parts.AddRange(_indicators);
            indicatorSlots = _indicators.Sum(SlotCount);
            parts.AddRange(_categorical);
            Add(ml.Transforms.Concatenate(FeaturesColumn, parts.ToArray()));
            var backbone = new TabularBackbone
            {
                NumericFeatures = numericSlots, IndicatorFeatures = indicatorSlots, CategoricalFeatures = _categorical.Count,
                CategoricalBits = options.HashBits + 2, Buckets = 1 << options.HashBits,
            };
            return new ContinualFeaturization(roles, _pipeline!, backbone, options);
        }

        private readonly Dictionary<string, int> _slots = new();

        private int SlotCount(string column) => _slots.TryGetValue(column, out int n) ? n : 1;

        private void AddNumeric(string name, DataViewType type)
        {
            string output = "__num." + name;
            if (type is VectorDataViewType vector)
            {
                if (!vector.IsKnownSize) throw new ContinualDataException(name, $"Column '{name}' is a vector of unknown size; a number or a known-size vector is expected.");
                Add(ml.Transforms.Conversion.ConvertType(output, name, DataKind.Single));
                _slots[output] = vector.Size;
            }
            else if (type is TextDataViewType)
            {
                // ML.NET's conversion reads an empty text as 0: this mapping reads it (and any text that is not a number) as missing.
                Add(ml.Transforms.CopyColumns(TextNumberFactory.InputColumn, name));
                Add(ml.Transforms.CustomMapping(new TextNumberFactory().GetMapping(), TextNumberFactory.ContractName));
                Add(ml.Transforms.CopyColumns(output, TextNumberFactory.OutputColumn));
            }
            else Add(ml.Transforms.Conversion.ConvertType(output, name, DataKind.Single)); // integers and doubles convert; NaN stays missing
            _numeric.Add(output);
        }

        private void AddBoolean(string name, DataViewType type)
        {
            string output = "__bool." + name;
            if (type is TextDataViewType)
            {
                Add(ml.Transforms.Conversion.ConvertType("__boolv." + name, name, DataKind.Boolean));
                Add(ml.Transforms.Conversion.ConvertType(output, "__boolv." + name, DataKind.Single));
            }
            else Add(ml.Transforms.Conversion.ConvertType(output, name, DataKind.Single));
            _indicators.Add(output);
        }

        private void AddDate(string name, DataViewType type)
        {
            string parsed = "__date." + name;
            Add(ml.Transforms.Conversion.ConvertType(parsed, name, DataKind.DateTime));
            Add(ml.Transforms.CopyColumns(DatePartsFactory.InputColumn, parsed));
            Add(ml.Transforms.CustomMapping(new DatePartsFactory().GetMapping(), DatePartsFactory.ContractName));
            string parts = "__dateparts." + name;
            Add(ml.Transforms.CopyColumns(parts, DatePartsFactory.OutputColumn));
            // Bounded already, and standardising with the first task's statistics would blow up a part that was constant
            // there (the month of a first task of one month): passed to the network as they are, with the indicators.
            _slots[parts] = DateParts.Count;
            _indicators.Add(parts);
        }

        private void AddCategorical(string name, DataViewType type)
        {
            string text = name;
            if (type is not TextDataViewType and not KeyDataViewType)
            {
                text = "__cat.text." + name;
                Add(ml.Transforms.Conversion.ConvertType(text, name, DataKind.String));
            }
            string key = "__cat.key." + name, bits = "__cat." + name;
            Add(ml.Transforms.Conversion.Hash(key, text, numberOfBits: options.HashBits));
            Add(ml.Transforms.Conversion.MapKeyToBinaryVector(bits, key));
            _slots[bits] = options.HashBits + 2;
            _categorical.Add(bits);
        }

        private void AddText(string name, DataViewType type)
        {
            string bag = "__text." + name;
            Add(ml.Transforms.Text.ProduceHashedWordBags(bag, name, numberOfBits: options.TextHashBits));
            _slots[bag] = 1 << options.TextHashBits;
            _indicators.Add(bag);
        }
    }
}

/// <summary>What <see cref="ContinualFeaturizer"/> made: each column's role, the pipeline (fit it on the first task) and
/// the <see cref="TabularBackbone"/> that reads its <c>Features</c>.</summary>
public sealed class ContinualFeaturization
{
    private readonly ContinualFeaturizerOptions _options;

    internal ContinualFeaturization(IReadOnlyList<ColumnRoleInfo> roles, IEstimator<ITransformer> pipeline, TabularBackbone backbone, ContinualFeaturizerOptions options)
    {
        Roles = roles;
        Pipeline = pipeline;
        Backbone = backbone;
        _options = options;
    }

    /// <summary>Every column's role, in the data's column order.</summary>
    public IReadOnlyList<ColumnRoleInfo> Roles { get; }

    /// <summary>The featurizing pipeline: makes the <c>Features</c> column.</summary>
    public IEstimator<ITransformer> Pipeline { get; }

    /// <summary>The backbone for that <c>Features</c> layout.</summary>
    public TabularBackbone Backbone { get; }

    /// <summary>
    /// Sets <paramref name="options"/> for a table: the label, task id and feature columns, the <see cref="Backbone"/>, and
    /// the tabular defaults (Adam with learning rate 2e-3 and cosine decay, batch 256, at most 20 epochs with early stopping
    /// on 10% of each task's rows after 2 epochs without improvement). The defaults were chosen on the first month of the
    /// flights benchmark (docs/benchmarks.md, "Business tables") and checked on its second table (bird strikes).
    /// </summary>
    public TOptions Configure<TOptions>(TOptions options) where TOptions : ContinualTrainerOptions
    {
        ArgumentNullException.ThrowIfNull(options);
        options.LabelColumnName = _options.LabelColumnName;
        options.TaskIdColumnName = _options.TaskIdColumnName;
        options.FeatureColumnName = ContinualFeaturizer.FeaturesColumn;
        options.Backbone = Backbone;
        options.LearningRate = 2e-3;
        options.BatchSize = 256;
        options.NumberOfEpochs = 20;
        options.ValidationFraction = 0.1;
        options.EarlyStoppingPatience = 2;
        options.LearningRateSchedule = LearningRateSchedule.Cosine;
        return options;
    }

    /// <summary>Sets <paramref name="options"/> of the boosted-trees trainer for a table: the label and feature columns, and
    /// the categorical columns' binary-coded buckets, which the trees decode and split on as categories.</summary>
    public Trees.ContinualLightGbmTrainer.Options Configure(Trees.ContinualLightGbmTrainer.Options options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (_options.TaskIdColumnName is not null)
            throw new ArgumentException("The boosted-trees trainer has no task ids (it is one model for every task); build the featurization without TaskIdColumnName.", nameof(options));
        options.LabelColumnName = _options.LabelColumnName;
        options.FeatureColumnName = ContinualFeaturizer.FeaturesColumn;
        options.BinaryCodedCategoricals = Backbone.CategoricalFeatures;
        options.BitsPerCategorical = Backbone.CategoricalBits;
        return options;
    }

    /// <summary>One line per column: its name, role and why.</summary>
    public string Describe() => string.Join(Environment.NewLine, Roles.Select(r => $"{r.Name}: {r.Role.ToString().ToLowerInvariant()} ({r.Reason})"));
}

/// <summary>The parts of a date the featurizer uses: sine and cosine of the hour of the day, the day of the week, the day
/// of the month and the month (cyclic features: 23:00 is next to 00:00, December next to January), then whether the date was given.</summary>
internal static class DateParts
{
    public const int Count = 9;

    public static void Fill(DateTime date, float[] parts)
    {
        if (date == default)
        {
            Array.Clear(parts); // a missing date: all parts 0, the last one (present) too
            return;
        }
        Circle(parts, 0, date.Hour + date.Minute / 60.0, 24);
        Circle(parts, 2, ((int)date.DayOfWeek + 6) % 7, 7);
        Circle(parts, 4, date.Day - 1, DateTime.DaysInMonth(date.Year, date.Month));
        Circle(parts, 6, date.Month - 1, 12);
        parts[8] = 1;
    }

    private static void Circle(float[] parts, int at, double value, double period)
    {
        double angle = 2 * Math.PI * value / period;
        parts[at] = (float)Math.Sin(angle);
        parts[at + 1] = (float)Math.Cos(angle);
    }
}

/// <summary>The date-parts mapping, registered by contract name so that saved pipelines load (ML.NET's custom-mapping rule:
/// <see cref="ContinualCatalog.LoadModel(string, out DataViewSchema)"/> registers this assembly; with plain
/// <c>ml.Model.Load</c>, call <c>ml.ComponentCatalog.RegisterAssembly(typeof(ContinualFeaturizer).Assembly)</c> first).</summary>
[CustomMappingFactoryAttribute(ContractName)]
public sealed class DatePartsFactory : CustomMappingFactory<DatePartsFactory.Input, DatePartsFactory.Output>
{
    /// <summary>The contract name stored in models.</summary>
    public const string ContractName = "ContinualDateParts";
    internal const string InputColumn = "__ContinualDate";
    internal const string OutputColumn = "__ContinualDateParts";

    /// <summary>The mapping's input row.</summary>
    public sealed class Input
    {
        /// <summary>The date.</summary>
        [ColumnName(InputColumn)]
        public DateTime Date { get; set; }
    }

    /// <summary>The mapping's output row.</summary>
    public sealed class Output
    {
        /// <summary>Sine and cosine of the hour, day of week, day of month and month; 1 when the date was given.</summary>
        [ColumnName(OutputColumn), VectorType(DateParts.Count)]
        public float[] Parts { get; set; } = new float[DateParts.Count];
    }

    /// <inheritdoc/>
    public override Action<Input, Output> GetMapping() => (input, output) =>
    {
        output.Parts ??= new float[DateParts.Count];
        DateParts.Fill(input.Date, output.Parts);
    };
}

/// <summary>Text to a number, invariant culture; an empty text, or one that is not a number, is missing (NaN). Registered
/// by contract name like <see cref="DatePartsFactory"/>.</summary>
[CustomMappingFactoryAttribute(ContractName)]
public sealed class TextNumberFactory : CustomMappingFactory<TextNumberFactory.Input, TextNumberFactory.Output>
{
    /// <summary>The contract name stored in models.</summary>
    public const string ContractName = "ContinualTextNumber";
    internal const string InputColumn = "__ContinualText";
    internal const string OutputColumn = "__ContinualNumber";

    /// <summary>The mapping's input row.</summary>
    public sealed class Input
    {
        /// <summary>The text.</summary>
        [ColumnName(InputColumn)]
        public string Text { get; set; } = "";
    }

    /// <summary>The mapping's output row.</summary>
    public sealed class Output
    {
        /// <summary>The number, or NaN.</summary>
        [ColumnName(OutputColumn)]
        public float Number { get; set; }
    }

    /// <inheritdoc/>
    public override Action<Input, Output> GetMapping() => (input, output) =>
        output.Number = float.TryParse(input.Text, NumberStyles.Float, CultureInfo.InvariantCulture, out float value) ? value : float.NaN;
}
