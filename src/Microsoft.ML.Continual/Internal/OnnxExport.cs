// See README.md in this folder: ML.NET's ONNX export interfaces (IDataTransform, ITransformCanSaveOnnx, OnnxContext)
// are internal to Microsoft.ML.Data; this file is the only code that uses them.
using Microsoft.ML.Data;
using Microsoft.ML.Model.OnnxConverter;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// <c>ml.Model.ConvertToOnnx</c> walks a scored pipeline back from its last view through every
/// <see cref="IDataTransform"/> that can write itself as ONNX; this makes a continual model's scored view one of them.
/// </summary>
internal sealed partial class ScoredDataView : ITransformCanSaveOnnx
{
    IDataView IDataTransform.Source => _input;

    void ICanSaveModel.Save(ModelSaveContext ctx) =>
        throw new NotSupportedException("A continual model's scored view is not saved on its own; save the model with ml.Model.Save.");

    /// <summary>True when the model can be written as ONNX; otherwise throws, saying why (ML.NET would only log a
    /// warning and then fail with a message that does not name the model).</summary>
    bool ICanSaveOnnx.CanSaveOnnx(OnnxContext ctx)
    {
        if (_network is not null) OnnxGraph.CheckExportable(_network);
        else if (_scorer is not Trees.BoostedTreesScorer) throw new NotSupportedException($"ONNX export does not know this model's scorer ({_scorer.GetType().Name}).");
        return true;
    }

    void ISaveAsOnnx.SaveAsOnnx(OnnxContext ctx)
    {
        foreach (var column in _columns.Dependencies)
            if (!ctx.ContainsColumn(column.Name))
                throw new NotSupportedException($"The continual model reads column '{column.Name}', which the steps before it make in a way ML.NET cannot export to ONNX" +
                    (FirstStepWithoutOnnx(ctx) is { } step ? $" (its converter stops at {step})" : "") + ". Leave those steps out (e.g. the featurizer's columns of numbers written as text, dates or free text: ContinualFeaturizerOptions.Ignore), or score with the model itself.");
        if (_network is not null) new OnnxGraph(ctx, _network, _columns).Write();
        else new TreesOnnxGraph(ctx, ((Trees.BoostedTreesScorer)_scorer).State, _columns).Write();
    }

    /// <summary>The nearest step before this one that cannot write itself as ONNX, by its type's name.</summary>
    private string? FirstStepWithoutOnnx(OnnxContext ctx)
    {
        for (var view = _input; view is IDataTransform step; view = step.Source)
            if (step is not ITransformCanSaveOnnx onnx || !onnx.CanSaveOnnx(ctx))
            {
                var made = ((IDataView)step).Schema.Skip(step.Source.Schema.Count).Select(c => c.Name).ToList();
                return made.Count > 0 ? $"{step.GetType().Name}, which makes {string.Join(", ", made)}" : step.GetType().Name;
            }
        return null;
    }
}

/// <summary>What every ONNX writer of a continual model uses: nodes of the standard domain, and the output columns of the
/// models with one score.</summary>
internal abstract class OnnxNodes
{
    protected OnnxNodes(OnnxContext ctx) => _ctx = ctx;

#pragma warning disable IDE1006 // the writers' many calls read best with the field's name
    protected readonly OnnxContext _ctx;
#pragma warning restore IDE1006

    /// <summary>Binary: <c>Score</c> (the logit or margin), <c>Probability</c> (its logistic) and <c>PredictedLabel</c>
    /// (score &gt; 0); regression: <c>Score</c>. <paramref name="score"/> is [N, 1].</summary>
    protected void WriteScoreColumns(ContinualPredictionKind kind, string score)
    {
        string output = Output("Score", NumberDataViewType.Single);
        Node("Identity", [score], output);
        if (kind != ContinualPredictionKind.Binary) return;
        Node("Sigmoid", [output], Output("Probability", NumberDataViewType.Single));
        Node("Greater", [output, _ctx.AddInitializer(0f, "zero")], Output("PredictedLabel", BooleanDataViewType.Instance));
    }

    protected string SliceColumns(string input, int start, int count, string name) =>
        Node("Slice", [input, _ctx.AddInitializer(new long[] { start }, [1], "Start"), _ctx.AddInitializer(new long[] { start + count }, [1], "End"),
            _ctx.AddInitializer(new long[] { 1 }, [1], "Axis")], Temp(name));

    protected string Cast(string input, string output, Type to)
    {
        var node = _ctx.CreateNode("Cast", input, output, _ctx.GetNodeName("Cast"), "");
        node.AddAttribute("to", to);
        return output;
    }

    protected string Node(string op, string[] inputs, string output, params (string Name, object Value)[] attributes)
    {
        var node = _ctx.CreateNode(op, inputs, [output], _ctx.GetNodeName(op), "");
        foreach (var (name, value) in attributes)
        {
            if (value is long l) node.AddAttribute(name, l);
            else node.AddAttribute(name, (long[])value);
        }
        return output;
    }

    protected string Temp(string name) => _ctx.AddIntermediateVariable(null, name, true);

    protected string Output(string column, DataViewType type) => _ctx.AddIntermediateVariable(type, column);
}

/// <summary>
/// Writes a continual network model as ONNX nodes: each head's chain of dense layers (Gemm and the activation; the
/// shared trunk once, PackNet's and CPG's per-head weights as each head sees them; progressive columns; the built-in
/// backbones), the head of each row chosen by its
/// task id, the outputs a head may not predict masked, then the output columns as the model's <c>Transform</c> names and
/// types them: multiclass <c>Score</c> (probabilities) and <c>PredictedLabel</c> (with the label's own values); binary
/// <c>Score</c> (logit), <c>Probability</c> and <c>PredictedLabel</c>; regression <c>Score</c>.
/// </summary>
/// <remarks>
/// Operators of ONNX opset 11 and ai.onnx.ml 2 (what ML.NET's converter declares by default). A graph cannot throw: a
/// row whose task id the model never saw gets NaN scores, where <c>Transform</c> throws. Every head is computed for every
/// row and the row's head is then selected (a mask sum), so a model with H separate trunks costs H forwards per row.
/// </remarks>
internal sealed class OnnxGraph : OnnxNodes
{
    private readonly ContinualModelState _state;
    private readonly OutputColumns _columns;

    public OnnxGraph(OnnxContext ctx, ContinualModelState state, OutputColumns columns) : base(ctx)
    {
        _state = state;
        _columns = columns;
    }

    /// <summary>Null when this writer can express <paramref name="state"/>'s model; else why not.</summary>
    public static string? WhyNotExportable(ContinualModelState state)
    {
        var network = state.Network;
        if (network.Shape.Backbone is { } backbone && backbone is not (ConvBackbone or TabularBackbone))
            return $"its network has a backbone ONNX export does not know ({backbone.GetType().Name}; perceptrons, the convolutional and the tabular backbones are exported)";
        if (state.Plugins.Items.FirstOrDefault(p => DenseInference.ChangesScoringOutputs(p) && p is not (IcarlPlugin or BicPlugin)) is { } plugin)
            return $"its plugin {plugin.GetType().Name} changes the outputs at prediction time";
        return null;
    }

    /// <summary>Throws a clear error for a model this writer cannot express.</summary>
    public static void CheckExportable(ContinualModelState state)
    {
        if (WhyNotExportable(state) is { } reason)
            throw new NotSupportedException($"This continual model cannot be exported to ONNX yet: {reason}. Exportable: every trainer's network (perceptrons shared or one per task, progressive columns, PackNet's or CPG's per-task weights, the convolutional and tabular backbones, iCaRL's nearest-mean classifier, BiC's correction).");
        if (state.MultiHead && state.TaskIdKind is not (ValueKind.Text or ValueKind.Int32 or ValueKind.Int64 or ValueKind.UInt32))
            throw new NotSupportedException($"ONNX export needs a text or integer task-id column; this model's task ids are {state.TaskIdKind}.");
        if (state.MultiHead && state.TaskIdKind != ValueKind.Text && state.TaskIds.Any(id => !long.TryParse(id, out _)))
            throw new NotSupportedException("ONNX export: a task id of this model is not an integer.");
    }

    public void Write()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        string features = _ctx.GetVariableName(_columns.FeatureColumn.Name);
        string? head = _state.MultiHead ? HeadIndex(_ctx.GetVariableName(_columns.TaskIdColumn!.Value.Name)) : null;
        string logits = head is null ? HeadLogits(features, 0, trunkOutput: null) : SelectedHeadLogits(features, head);
        logits = PluginOutputs(features, logits);
        switch (_state.Kind)
        {
            case ContinualPredictionKind.Multiclass:
                WriteMulticlass(logits, head);
                break;
            default:
                WriteScoreColumns(_state.Kind, UnknownTaskIsNaN(logits, head));
                break;
        }
    }

    private void WriteMulticlass(string logits, string? head)
    {
        string masked = logits;
        if (_state.AllowedMask() is { } mask)
        {
            // Outputs the row's head may not predict get -inf before the softmax, as in Scorer (MaskLogits).
            string allowed = _ctx.AddInitializer(mask, [_state.HeadClasses.Count, _state.OutputSize], "AllowedOutputs");
            string rowHead = Node("Squeeze", [head!], Temp("RowHead"), ("axes", new long[] { 1 })); // [N, 1] -> [N]
            string rowAllowed = Node("Gather", [allowed, rowHead], Temp("RowAllowed"), ("axis", 0L)); // [N, outputs]
            masked = Node("Where", [rowAllowed, logits, _ctx.AddInitializer(float.NegativeInfinity, "NegativeInfinity")], Temp("MaskedLogits"));
        }
        string probabilities = Node("Softmax", [masked], Temp("Probabilities"), ("axis", 1L));
        string score = Output("Score", new VectorDataViewType(NumberDataViewType.Single, _state.OutputSize));
        Node("Identity", [UnknownTaskIsNaN(probabilities, head)], score);
        string best = Node("ArgMax", [score], Temp("ArgMax"), ("axis", 1L), ("keepdims", 1L));
        WritePredictedLabel(best);
    }

    /// <summary>PredictedLabel from the arg max: a key (1-based), the class's text, or its number, as <c>Transform</c> gives.</summary>
    private void WritePredictedLabel(string best)
    {
        var classes = _state.Classes!;
        var type = LabelVocabulary.TypeOf(classes.Kind, (ulong)_state.OutputSize);
        string output = Output("PredictedLabel", type);
        int n = _state.OutputSize;
        IEnumerable<int> slots = Enumerable.Range(0, n);
        switch (classes.Kind)
        {
            case ValueKind.Key:
                string oneBased = Node("Add", [best, _ctx.AddInitializer(1L, "one")], Temp("KeyValue"));
                Cast(oneBased, output, typeof(uint));
                break;
            case ValueKind.Text:
            {
                var node = _ctx.CreateNode("LabelEncoder", best, output, _ctx.GetNodeName("LabelEncoder"));
                node.AddAttribute("keys_int64s", slots.Select(i => (long)i));
                node.AddAttribute("values_strings", slots.Select(i => i < classes.Count ? classes.TextAt(i) : ""));
                node.AddAttribute("default_string", "");
                break;
            }
            case ValueKind.Single:
                Node("Gather", [_ctx.AddInitializer(slots.Select(i => i < classes.Count ? (float)classes.NumberAt(i) : 0f), [n], "ClassValues"), best], output, ("axis", 0L));
                break;
            case ValueKind.Double:
                Node("Gather", [_ctx.AddInitializer(slots.Select(i => i < classes.Count ? classes.NumberAt(i) : 0d), [n], "ClassValues"), best], output, ("axis", 0L));
                break;
            case ValueKind.Boolean:
                Node("Gather", [_ctx.AddInitializer(slots.Select(i => i < classes.Count && classes.NumberAt(i) != 0), [n], "ClassValues"), best], output, ("axis", 0L));
                break;
            default: // Int32, Int64, UInt32: gathered as int64, then cast to the label's type
            {
                string values = _ctx.AddInitializer(slots.Select(i => i < classes.Count ? (long)classes.NumberAt(i) : 0L), [n], "ClassValues");
                string gathered = Node("Gather", [values, best], Temp("ClassValue"), ("axis", 0L));
                Cast(gathered, output, classes.Kind switch { ValueKind.Int32 => typeof(int), ValueKind.UInt32 => typeof(uint), _ => typeof(long) });
                break;
            }
        }
    }

    /// <summary>Each row's head as int64 [N, 1]: the index of its task id among the model's, -1 for one it never saw.</summary>
    private string HeadIndex(string taskId)
    {
        if (_state.TaskIdKind == ValueKind.Text)
        {
            string index = Temp("HeadIndex");
            var node = _ctx.CreateNode("LabelEncoder", taskId, index, _ctx.GetNodeName("LabelEncoder"));
            node.AddAttribute("keys_strings", _state.TaskIds);
            node.AddAttribute("values_int64s", Enumerable.Range(0, _state.TaskIds.Count).Select(i => (long)i));
            node.AddAttribute("default_int64", -1L);
            return index;
        }
        // Integer ids: compare with each known id, then take the matching position (-1 when none matches).
        string id = Cast(taskId, Temp("TaskId"), typeof(long));
        string known = _ctx.AddInitializer(_state.TaskIds.Select(long.Parse), [1, _state.TaskIds.Count], "TaskIds");
        string matches = Cast(Node("Equal", [id, known], Temp("TaskMatches")), Temp("TaskMatchesAsFloat"), typeof(float));
        string any = Node("ReduceMax", [matches], Temp("AnyTaskMatches"), ("keepdims", 1L), ("axes", new long[] { 1 }));
        string position = Node("ArgMax", [matches], Temp("TaskPosition"), ("axis", 1L), ("keepdims", 1L));
        // position when a task matched (any = 1), else -1: position * any + (any - 1)
        string anyAsLong = Cast(any, Temp("AnyAsLong"), typeof(long));
        string scaled = Node("Mul", [position, anyAsLong], Temp("MatchedPosition"));
        return Node("Add", [scaled, Node("Sub", [anyAsLong, _ctx.AddInitializer(1L, "one")], Temp("MinusOneIfUnknown"))], Temp("HeadIndex"));
    }

    /// <summary>The logits of each row's own head: every head's logits, weighted by a one-hot mask of the row's head.</summary>
    private string SelectedHeadLogits(string features, string head)
    {
        int heads = _state.Network.Shape.HeadCount;
        string? trunk = SharesOneTrunk ? Trunk(features) : null;
        string oneHot = Cast(Node("Equal", [head, _ctx.AddInitializer(Enumerable.Range(0, heads).Select(h => (long)h), [1, heads], "Heads")], Temp("IsRowHead")),
            Temp("RowHead"), typeof(float));
        string? sum = null;
        for (int h = 0; h < heads; h++)
        {
            string logits = HeadLogits(features, h, trunk);
            string weight = Node("Slice", [oneHot, _ctx.AddInitializer(new long[] { h }, [1], "Start"), _ctx.AddInitializer(new long[] { h + 1 }, [1], "End"),
                _ctx.AddInitializer(new long[] { 1 }, [1], "Axis")], Temp($"IsHead{h}"));
            string weighted = Node("Mul", [logits, weight], Temp($"Head{h}Weighted"));
            sum = sum is null ? weighted : Node("Add", [sum, weighted], Temp("HeadsSum"));
        }
        return sum!;
    }

    private bool SharesOneTrunk => _state.Network.Shape.Columns == NetworkColumns.Shared && _state.Network.TrunkWeightView is null;

    private string? _trunk;

    /// <summary>The shared trunk's output (written once).</summary>
    private string Trunk(string features) =>
        _trunk ??= _state.Network.IsPerceptron
            ? Chain(features, _state.Network.DenseChain(0).SkipLast(1).ToList(), "Trunk", activateLast: true)
            : BackboneTrunk(features, 0);

    /// <summary>Head <paramref name="head"/>'s logits: its whole chain, or only its output layer on the shared trunk's output.</summary>
    private string HeadLogits(string features, int head, string? trunkOutput)
    {
        if (_state.Network.Shape.Columns == NetworkColumns.Progressive) return ProgressiveLogits(features, head);
        if (!_state.Network.IsPerceptron)
        {
            var (weight, bias) = _state.Network.HeadLayer(head);
            string embedded = _state.Network.Shape.SeparateTrunks ? BackboneTrunk(features, head) : trunkOutput ?? Trunk(features);
            return Gemm(embedded, weight, bias, $"Head{head}Layer0");
        }
        var chain = _state.Network.DenseChain(head);
        return trunkOutput is null
            ? Chain(features, chain.ToList(), $"Head{head}", activateLast: false)
            : Chain(trunkOutput, [chain[^1]], $"Head{head}", activateLast: false);
    }

    private string[][]? _progressiveColumns; // progressive: each column's activations after each hidden layer

    /// <summary>Progressive networks (Rusu et al. 2016): h_i^(k) = f(W_i^(k) h_{i-1}^(k) + b_i^(k) + Σ_{j&lt;k} U_i^(k:j) h_{i-1}^(j)),
    /// as <c>ContinualNetwork.ProgressiveOutput</c>; every column is written once (a column does not depend on the head
    /// that reads it), then head k adds its laterals from the earlier columns' last activations.</summary>
    private string ProgressiveLogits(string features, int head)
    {
        var network = _state.Network;
        int depth = network.Shape.HiddenSizes.Length, heads = network.Shape.HeadCount;
        if (_progressiveColumns is null)
        {
            _progressiveColumns = new string[heads][];
            for (int column = 0; column < heads; column++)
            {
                _progressiveColumns[column] = new string[depth];
                for (int i = 0; i < depth; i++)
                {
                    string input = i == 0 ? features : _progressiveColumns[column][i - 1];
                    var (weight, bias) = network.ColumnLayer(column, i);
                    string z = Gemm(input, weight, bias, $"Column{column}Layer{i}");
                    if (i > 0)
                        for (int source = 0; source < column; source++)
                            z = Node("Add", [z, Gemm(_progressiveColumns[source][i - 1], network.LateralWeight(column, source, i), null, $"Column{column}From{source}Layer{i}")], Temp($"Column{column}Layer{i}Sum"));
                    _progressiveColumns[column][i] = Activate(z, $"Column{column}Layer{i}");
                }
            }
        }
        var (headWeight, headBias) = network.HeadLayer(head);
        string last = depth == 0 ? features : _progressiveColumns[head][depth - 1];
        string output = Gemm(last, headWeight, headBias, $"Head{head}Layer0");
        if (depth > 0)
            for (int source = 0; source < head; source++)
                output = Node("Add", [output, Gemm(_progressiveColumns[source][depth - 1], network.LateralWeight(head, source, depth), null, $"Head{head}From{source}")], Temp($"Head{head}Sum"));
        return output;
    }

    /// <summary>What plugins do to the outputs at prediction time, in their order: BiC's correction, iCaRL's classifier.</summary>
    private string PluginOutputs(string features, string logits)
    {
        foreach (var plugin in _state.Plugins.Items)
        {
            if (plugin is BicPlugin { Correction: { } correction }) logits = BiasCorrected(logits, correction);
            if (plugin is IcarlPlugin { ClassMeans: { } means }) logits = NearestMeanScores(features, means.Means, means.HasMean);
        }
        return logits;
    }

    /// <summary>BiC (Wu et al. 2019, eq. 3): α·o + β on the last task's new classes, the other logits as they are.</summary>
    private string BiasCorrected(string logits, (bool[] Classes, float Alpha, float Beta) correction)
    {
        bool[] mask = correction.Classes.Concat(new bool[Math.Max(0, _state.OutputSize - correction.Classes.Length)]).Take(_state.OutputSize).ToArray();
        string scaled = Node("Add", [Node("Mul", [logits, _ctx.AddInitializer(correction.Alpha, "BicAlpha")], Temp("BicScaled")), _ctx.AddInitializer(correction.Beta, "BicBeta")], Temp("BicShifted"));
        return Node("Where", [_ctx.AddInitializer(mask, [1, mask.Length], "BicNewClasses"), scaled, logits], Temp("BicCorrected"));
    }

    /// <summary>iCaRL (Rebuffi et al. 2017, nearest-mean-of-exemplars): −‖φ(x)/‖φ(x)‖ − μ_y‖² for the classes with exemplars,
    /// −∞ for the others, φ the shared trunk's output.</summary>
    private string NearestMeanScores(string features, Tensor means, Tensor hasMean)
    {
        int classes = (int)means.shape[0], width = (int)means.shape[1];
        string phi = Trunk(features);
        // torch's normalize: x / max(‖x‖₂, 1e-12)
        string norm = Node("ReduceL2", [phi], Temp("EmbeddingNorm"), ("axes", new long[] { 1 }), ("keepdims", 1L));
        string unit = Node("Div", [phi, Node("Max", [norm, _ctx.AddInitializer(1e-12f, "NormEpsilon")], Temp("ClampedNorm"))], Temp("UnitEmbedding"));
        string meanValues = _ctx.AddInitializer(means.contiguous().cpu().data<float>().ToArray(), [1, classes, width], "ClassMeans");
        string difference = Node("Sub", [Node("Unsqueeze", [unit], Temp("UnitEmbedding3d"), ("axes", new long[] { 1 })), meanValues], Temp("FromMeans"));
        string distances = Node("ReduceSum", [Node("Mul", [difference, difference], Temp("SquaredFromMeans"))], Temp("Distances"), ("axes", new long[] { 2 }), ("keepdims", 0L));
        bool[] known = hasMean.cpu().data<bool>().ToArray().Concat(new bool[Math.Max(0, _state.OutputSize - classes)]).Take(_state.OutputSize).ToArray();
        string scores = Node("Neg", [distances], Temp("NearestMeanScores"));
        if (classes < _state.OutputSize)
            scores = Node("Pad", [scores, _ctx.AddInitializer(new long[] { 0, 0, 0, _state.OutputSize - classes }, [4], "MeanPads")], Temp("PaddedScores"));
        return Node("Where", [_ctx.AddInitializer(known, [1, known.Length], "ClassesWithExemplars"), scores, _ctx.AddInitializer(float.NegativeInfinity, "NegativeInfinity")], Temp("NearestMeanOutputs"));
    }

    private string BackboneTrunk(string features, int trunk) =>
        _state.Network.TrunkModule(trunk) is TabularBackbone.Module tabular ? TabularTrunk(features, tabular, trunk) : ConvTrunk(features, trunk);

    /// <summary><see cref="TabularBackbone"/>'s module as its forward computes it: periodic embeddings of the numeric
    /// slots (sin and cos of 2π·f·x, a per-column dense layer, ReLU), the indicators as they are, each categorical column's
    /// bits read as its bucket (all ones, ML.NET's missing key, is bucket 0) and looked up in its embedding table; then
    /// the dense layers with ReLU.</summary>
    private string TabularTrunk(string features, TabularBackbone.Module module, int trunk)
    {
        var (n, indicators, m, bits, buckets, d, k) = module.Layout;
        string name = $"Trunk{trunk}";
        var parts = new List<string>();
        if (n > 0)
        {
            string values = SliceColumns(features, 0, n, name + "Numeric");
            string angles = Node("Mul", [Node("Mul", [Node("Unsqueeze", [values], Temp(name + "Numeric3d"), ("axes", new long[] { 2 })),
                Initializer(module.FrequencyWeights, [1, n, k], name + "Frequencies")], Temp(name + "Scaled")), _ctx.AddInitializer((float)(2 * Math.PI), "TwoPi")], Temp(name + "Angles"));
            string periodic = Node("Concat", [Node("Sin", [angles], Temp(name + "Sin")), Node("Cos", [angles], Temp(name + "Cos"))], Temp(name + "Periodic"), ("axis", 2L));
            // einsum bnk,nkd->bnd as a batched product over the columns: [n, b, 2k] x [n, 2k, d]
            string byColumn = Node("Transpose", [periodic], Temp(name + "ByColumn"), ("perm", new long[] { 1, 0, 2 }));
            string product = Node("MatMul", [byColumn, Initializer(module.NumericWeight, [n, 2 * k, d], name + "NumericWeight")], Temp(name + "NumericProduct"));
            string byRow = Node("Transpose", [product], Temp(name + "ByRow"), ("perm", new long[] { 1, 0, 2 }));
            string embedded = Node("Relu", [Node("Add", [byRow, Initializer(module.NumericBias, [n, d], name + "NumericBias")], Temp(name + "NumericSum"))], Temp(name + "NumericEmbedded"));
            parts.Add(Node("Flatten", [embedded], Temp(name + "NumericFlat"), ("axis", 1L)));
        }
        if (indicators > 0) parts.Add(SliceColumns(features, n, indicators, name + "Indicators"));
        if (m > 0)
        {
            string slots = SliceColumns(features, n + indicators, m * bits, name + "Bits");
            string grouped = Node("Round", [Node("Reshape", [slots, _ctx.AddInitializer(new long[] { 0, m, bits }, [3], "BitsShape")], Temp(name + "BitsByColumn"))], Temp(name + "RoundedBits"));
            float[] powers = Enumerable.Range(0, bits).Select(i => MathF.Pow(2f, bits - 1 - i)).ToArray(); // most significant bit first
            string index = Node("ReduceSum", [Node("Mul", [grouped, _ctx.AddInitializer(powers, [bits], "BitValues")], Temp(name + "BitValues"))], Temp(name + "BucketIndex"),
                ("axes", new long[] { 2 }), ("keepdims", 0L));
            string missing = Node("Not", [Node("Less", [index, _ctx.AddInitializer((float)((1L << bits) - 1), "MissingKey")], Temp(name + "Present"))], Temp(name + "Missing"));
            string shifted = Node("Add", [index, _ctx.AddInitializer(1f, "oneFloat")], Temp(name + "Bucket"));
            string masked = Node("Where", [missing, _ctx.AddInitializer(0f, "zero"), shifted], Temp(name + "BucketOrMissing"));
            string clipped = Node("Clip", [masked, _ctx.AddInitializer(0f, "zero"), _ctx.AddInitializer((float)buckets, "Buckets")], Temp(name + "ClippedBucket"));
            string ids = Cast(clipped, Temp(name + "BucketId"), typeof(long));
            string rows = Node("Add", [ids, _ctx.AddInitializer(Enumerable.Range(0, m).Select(c => c * (buckets + 1L)), [1, m], "TableOffsets")], Temp(name + "EmbeddingRows"));
            string looked = Node("Gather", [Initializer(module.Embeddings, module.Embeddings.shape, name + "Embeddings"), rows], Temp(name + "CategoricalEmbedded"), ("axis", 0L));
            parts.Add(Node("Flatten", [looked], Temp(name + "CategoricalFlat"), ("axis", 1L)));
        }
        string x = parts.Count == 1 ? parts[0] : Node("Concat", parts.ToArray(), Temp(name + "Embedded"), ("axis", 1L));
        foreach (var (step, layer) in module.Mlp.named_children())
            x = layer switch
            {
                TorchSharp.Modules.Linear linear => Gemm(x, linear.weight!, linear.bias, $"{name}{step}"),
                TorchSharp.Modules.ReLU => Node("Relu", [x], Temp($"{name}{step}")),
                _ => x, // dropout: off at prediction
            };
        return x;
    }

    private string Initializer(Tensor values, long[] shape, string name) =>
        _ctx.AddInitializer(values.contiguous().cpu().data<float>().ToArray(), shape, name);

    /// <summary><see cref="ConvBackbone"/>'s module, step by step: the rows as images, then per block a 3×3 convolution
    /// (padding 1), ReLU and 2×2 max pooling, then flattened and its dense layers with ReLU (dropout is off at prediction).</summary>
    private string ConvTrunk(string features, int trunk)
    {
        var settings = (ConvBackbone)_state.Network.Shape.Backbone!;
        string x = features;
        foreach (var (name, module) in _state.Network.TrunkModule(trunk).named_children())
        {
            string step = $"Trunk{trunk}{char.ToUpperInvariant(name[0])}{name[1..]}";
            x = module switch
            {
                TorchSharp.Modules.Unflatten => Node("Reshape", [x, _ctx.AddInitializer(new long[] { -1 }.Concat(settings.InputShape.Select(d => (long)d)), [4], "ImageShape")], Temp(step)),
                TorchSharp.Modules.Conv2d conv => ConvolutionStep(x, conv, step),
                TorchSharp.Modules.MaxPool2d => Node("MaxPool", [x], Temp(step), ("kernel_shape", new long[] { 2, 2 }), ("strides", new long[] { 2, 2 })),
                TorchSharp.Modules.Flatten => Node("Flatten", [x], Temp(step), ("axis", 1L)),
                TorchSharp.Modules.Linear linear => Gemm(x, linear.weight!, linear.bias, step),
                TorchSharp.Modules.ReLU => Node("Relu", [x], Temp(step)),
                _ when name.StartsWith("dropout", StringComparison.Ordinal) => x,
                _ => throw new NotSupportedException($"ONNX export: the convolutional backbone has a step '{name}' ({module.GetType().Name}) it does not know."),
            };
        }
        return x;
    }

    private string ConvolutionStep(string x, TorchSharp.Modules.Conv2d conv, string name)
    {
        string w = _ctx.AddInitializer(conv.weight!.contiguous().cpu().data<float>().ToArray(), conv.weight!.shape, $"{name}Weight");
        string b = _ctx.AddInitializer(conv.bias!.contiguous().cpu().data<float>().ToArray(), conv.bias!.shape, $"{name}Bias");
        return Node("Conv", [x, w, b], Temp(name), ("kernel_shape", new long[] { 3, 3 }), ("pads", new long[] { 1, 1, 1, 1 }), ("strides", new long[] { 1, 1 }));
    }

    private string Gemm(string input, Tensor weight, Tensor? bias, string name)
    {
        string w = _ctx.AddInitializer(weight.contiguous().cpu().data<float>().ToArray(), weight.shape, $"{name}Weight");
        string[] inputs = bias is null ? [input, w] : [input, w, _ctx.AddInitializer(bias.contiguous().cpu().data<float>().ToArray(), bias.shape, $"{name}Bias")];
        return Node("Gemm", inputs, Temp(name), ("transB", 1L));
    }

    /// <summary>Gemm (x · Wᵀ + b) per layer, the activation after each but (unless <paramref name="activateLast"/>) the last.</summary>
    private string Chain(string input, IReadOnlyList<(Tensor Weight, Tensor Bias)> layers, string name, bool activateLast)
    {
        string x = input;
        for (int i = 0; i < layers.Count; i++)
        {
            var (weight, bias) = layers[i];
            x = Gemm(x, weight, bias, $"{name}Layer{i}");
            if (i < layers.Count - 1 || activateLast) x = Activate(x, $"{name}Layer{i}");
        }
        return x;
    }

    private string Activate(string x, string name) => _state.Network.Shape.Activation switch
    {
        ContinualActivation.Tanh => Node("Tanh", [x], Temp(name + "Tanh")),
        ContinualActivation.Sigmoid => Node("Sigmoid", [x], Temp(name + "Sigmoid")),
        ContinualActivation.Gelu => Gelu(x, name),
        _ => Node("Relu", [x], Temp(name + "Relu")),
    };

    /// <summary>GELU as libtorch computes it by default: x · ½ · (1 + erf(x / √2)).</summary>
    private string Gelu(string x, string name)
    {
        string erf = Node("Erf", [Node("Div", [x, _ctx.AddInitializer(MathF.Sqrt(2f), "SquareRootOfTwo")], Temp(name + "Scaled"))], Temp(name + "Erf"));
        string onePlus = Node("Add", [erf, _ctx.AddInitializer(1f, "oneFloat")], Temp(name + "OnePlusErf"));
        return Node("Mul", [Node("Mul", [x, _ctx.AddInitializer(0.5f, "half")], Temp(name + "Half")), onePlus], Temp(name + "Gelu"));
    }

    /// <summary>NaN for the rows whose task id the model never saw (head -1); the values as they are otherwise.</summary>
    private string UnknownTaskIsNaN(string values, string? head)
    {
        if (head is null) return values;
        string unknown = Node("Less", [head, _ctx.AddInitializer(0L, "zeroLong")], Temp("UnknownTask"));
        return Node("Where", [unknown, _ctx.AddInitializer(float.NaN, "NaN"), values], Temp("KnownTaskValues"));
    }
}
