// See README.md in this folder: ML.NET's OnnxContext is internal to Microsoft.ML.Data.
using Microsoft.ML.Continual.Trees;
using Microsoft.ML.Model.OnnxConverter;

namespace Microsoft.ML.Continual;

/// <summary>
/// Writes a boosted-trees continual model (<see cref="ContinualLightGbmTransformer"/>) as ONNX: the model's feature
/// encoding (<see cref="TreeFeatureLayout"/>: the leading slots as numbers, each binary-coded group as its bucket), one
/// ai.onnx.ml <c>TreeEnsembleRegressor</c> summing every tree's leaf, then <c>Score</c> (the raw margin),
/// <c>Probability</c> and <c>PredictedLabel</c> as <c>Transform</c> gives them.
/// </summary>
/// <remarks>
/// The ensemble decides as LightGBM does (<see cref="LightGbmTree"/>), with operators of ai.onnx.ml 2, which has no
/// set-membership branch:
/// <list type="bullet">
/// <item>A numerical split x ≤ t (t a double) becomes x ≤ t' with t' the largest float not above t: for a float x the two
/// are the same test. NaN follows the side LightGBM sends it (the default side when the split's missing type is NaN, the
/// side of 0 when it is none) through <c>nodes_missing_value_tracks_true</c>. Splits that treat zeros as missing, which
/// LightGBM makes only with <c>zero_as_missing</c> (never set here), are refused.</item>
/// <item>A categorical split (the bucket in a set) reads a column of its own: a lookup of the row's bucket in a table
/// that holds 0 for the set's buckets and 1 otherwise, one table per categorical group with a column per split; the
/// node then tests that column ≤ ½.</item>
/// </list>
/// The ensemble reads its columns as doubles, so ONNX Runtime compares and sums in double as LightGBM does; only the leaf
/// values are floats (ai.onnx.ml 2 has no double attributes), so the scores agree to that rounding (the tests hold them
/// within 1e-6). A row with
/// NaN features, which <c>Transform</c> refuses, is scored as LightGBM would score it.
/// </remarks>
internal sealed class TreesOnnxGraph : OnnxNodes
{
    private readonly BoostedTreesState _state;
    private readonly OutputColumns _columns;

    public TreesOnnxGraph(OnnxContext ctx, BoostedTreesState state, OutputColumns columns) : base(ctx)
    {
        _state = state;
        _columns = columns;
    }

    /// <summary>A categorical split's place among the columns the ensemble reads.</summary>
    private readonly record struct CategoricalSplit(int Tree, int Node, int Column);

    public void Write()
    {
        var layout = _state.Layout;
        var trees = LightGbmModelText.Trees(_state.ModelText, layout.Width, _state.Kind);
        CheckDecisions(trees, layout);
        string features = _ctx.GetVariableName(_columns.FeatureColumn.Name);
        var (inputs, splits) = EnsembleInputs(features, layout, trees);
        string margin = Ensemble(inputs, trees, splits);
        WriteScoreColumns(_state.Kind, margin);
    }

    /// <summary>Refuses what the graph cannot express or what this library's trees never hold: zeros as missing values,
    /// and a split whose kind does not match its feature's (categorical splits on the bucket columns, numerical ones on
    /// the numbers), which a checked file could still have.</summary>
    private static void CheckDecisions(IReadOnlyList<LightGbmTree> trees, TreeFeatureLayout layout)
    {
        for (int t = 0; t < trees.Count; t++)
            for (int n = 0; n < trees[t].Nodes; n++)
            {
                int decision = trees[t].DecisionType[n];
                bool categorical = LightGbmTree.IsCategorical(decision), onBucket = trees[t].SplitFeature[n] >= layout.Numbers;
                if (!categorical && LightGbmTree.MissingType(decision) == 1)
                    throw new NotSupportedException($"ONNX export: tree {t} treats zeros as missing values (LightGBM's zero_as_missing), which the ONNX tree ensemble cannot express.");
                if (categorical != onBucket)
                    throw new ContinualModelFormatException($"The trees (Trees.txt) have a {(categorical ? "categorical" : "numerical")} split on feature {trees[t].SplitFeature[n]} in tree {t}, which is {(onBucket ? "a binary-coded category" : "a number")} in this model.");
            }
    }

    /// <summary>The columns the ensemble reads: the numbers as they are, then one column per categorical split (0 when
    /// the row's bucket is in the split's set). Also says which column each categorical split reads.</summary>
    private (string Inputs, Dictionary<(int Tree, int Node), int> Splits) EnsembleInputs(string features, TreeFeatureLayout layout, IReadOnlyList<LightGbmTree> trees)
    {
        var parts = new List<string>();
        if (layout.Numbers > 0) parts.Add(SliceColumns(features, 0, layout.Numbers, "TreeNumbers"));
        var splits = new Dictionary<(int Tree, int Node), int>();
        int column = layout.Numbers;
        string? buckets = layout.Categoricals > 0 ? Buckets(features, layout) : null;
        for (int group = 0; group < layout.Categoricals; group++)
        {
            var groupSplits = new List<CategoricalSplit>();
            for (int t = 0; t < trees.Count; t++)
                for (int n = 0; n < trees[t].Nodes; n++)
                    if (LightGbmTree.IsCategorical(trees[t].DecisionType[n]) && trees[t].SplitFeature[n] == layout.Numbers + group)
                        groupSplits.Add(new CategoricalSplit(t, n, column++));
            if (groupSplits.Count == 0) continue;
            parts.Add(NotInSets(buckets!, group, layout.Bits, trees, groupSplits));
            foreach (var split in groupSplits) splits[(split.Tree, split.Node)] = split.Column;
        }
        // Trees without a split read no column; the ensemble still needs an input.
        string inputs = parts.Count switch { 0 => features, 1 => parts[0], _ => Node("Concat", parts.ToArray(), Temp("TreeInputs"), ("axis", 1L)) };
        return (inputs, splits);
    }

    /// <summary>Each binary-coded group's bucket as a float [N, groups]: its bits (a slot above ½ is 1), most significant
    /// first, as <see cref="TreeFeatureLayout.Encode"/>.</summary>
    private string Buckets(string features, TreeFeatureLayout layout)
    {
        string slots = SliceColumns(features, layout.Numbers, layout.Categoricals * layout.Bits, "TreeBitSlots");
        string grouped = Node("Reshape", [slots, _ctx.AddInitializer(new long[] { 0, layout.Categoricals, layout.Bits }, [3], "TreeBitsShape")], Temp("TreeBitsByGroup"));
        string bits = Cast(Node("Greater", [grouped, _ctx.AddInitializer(0.5f, "half")], Temp("TreeBitIsSet")), Temp("TreeBits"), typeof(float));
        float[] powers = Enumerable.Range(0, layout.Bits).Select(i => MathF.Pow(2f, layout.Bits - 1 - i)).ToArray();
        return Node("ReduceSum", [Node("Mul", [bits, _ctx.AddInitializer(powers, [layout.Bits], "TreeBitValues")], Temp("TreeBitWeights"))], Temp("TreeBuckets"),
            ("axes", new long[] { 2 }), ("keepdims", 0L));
    }

    /// <summary>[N, splits]: 0 where the row's bucket of <paramref name="group"/> is in the split's set, else 1. The table
    /// has a row per bucket up to the largest any set can hold, and one more (1s) that larger buckets are clipped to.</summary>
    private string NotInSets(string buckets, int group, int bits, IReadOnlyList<LightGbmTree> trees, List<CategoricalSplit> splits)
    {
        int largest = (int)Math.Min((1L << bits) - 1, splits.Max(s => (long)trees[s.Tree].LargestCategory(s.Node)));
        int rows = largest + 2;
        var table = new float[(long)rows * splits.Count];
        for (int bucket = 0; bucket < rows; bucket++)
            for (int s = 0; s < splits.Count; s++)
                table[(long)bucket * splits.Count + s] = bucket <= largest && trees[splits[s].Tree].GoesLeft(splits[s].Node, bucket) ? 0f : 1f;
        string name = $"TreeGroup{group}";
        string bucket0 = Node("Slice", [buckets, _ctx.AddInitializer(new long[] { group }, [1], "Start"), _ctx.AddInitializer(new long[] { group + 1 }, [1], "End"),
            _ctx.AddInitializer(new long[] { 1 }, [1], "Axis")], Temp(name + "Bucket"));
        string clipped = Node("Clip", [bucket0, _ctx.AddInitializer(0f, "zero"), _ctx.AddInitializer((float)(largest + 1), name + "Largest")], Temp(name + "ClippedBucket"));
        string index = Node("Reshape", [Cast(clipped, Temp(name + "BucketIndex"), typeof(long)), _ctx.AddInitializer(new long[] { -1 }, [1], "Rows")], Temp(name + "BucketRow"));
        return Node("Gather", [_ctx.AddInitializer(table, [rows, splits.Count], name + "NotInSet"), index], Temp(name + "NotInSets"), ("axis", 0L));
    }

    /// <summary>The trees as one TreeEnsembleRegressor: [N, 1], the sum of each tree's leaf.</summary>
    private string Ensemble(string inputs, IReadOnlyList<LightGbmTree> trees, Dictionary<(int Tree, int Node), int> splits)
    {
        var treeIds = new List<long>();
        var nodeIds = new List<long>();
        var featureIds = new List<long>();
        var values = new List<float>();
        var modes = new List<string>();
        var trueIds = new List<long>();
        var falseIds = new List<long>();
        var missingTrue = new List<long>();
        var targetTrees = new List<long>();
        var targetNodes = new List<long>();
        var weights = new List<float>();
        for (int t = 0; t < trees.Count; t++)
        {
            var tree = trees[t];
            int nodes = tree.Nodes;
            long Id(int child) => child >= 0 ? child : nodes + ~child; // leaves are numbered after the nodes
            for (int n = 0; n < nodes; n++)
            {
                int decision = tree.DecisionType[n];
                bool categorical = LightGbmTree.IsCategorical(decision);
                double threshold = tree.Threshold[n];
                treeIds.Add(t);
                nodeIds.Add(n);
                featureIds.Add(categorical ? splits[(t, n)] : tree.SplitFeature[n]);
                values.Add(categorical ? 0.5f : FloatAtMost(threshold));
                modes.Add("BRANCH_LEQ");
                trueIds.Add(Id(tree.LeftChild[n]));
                falseIds.Add(Id(tree.RightChild[n]));
                // NaN: categorical goes right (its column is never NaN); numerical to the default side when the missing type
                // is NaN, else where 0 goes.
                missingTrue.Add(!categorical && (LightGbmTree.MissingType(decision) == 2 ? LightGbmTree.DefaultLeft(decision) : 0 <= threshold) ? 1 : 0);
            }
            for (int leaf = 0; leaf < tree.LeafValue.Length; leaf++)
            {
                treeIds.Add(t);
                nodeIds.Add(nodes + leaf);
                featureIds.Add(0);
                values.Add(0f);
                modes.Add("LEAF");
                trueIds.Add(0);
                falseIds.Add(0);
                missingTrue.Add(0);
                targetTrees.Add(t);
                targetNodes.Add(nodes + leaf);
                weights.Add((float)tree.LeafValue[leaf]);
            }
        }
        string margin = Temp("TreeMargin");
        // Double inputs make ONNX Runtime sum the leaves in double, as LightGBM does.
        inputs = Cast(inputs, Temp("TreeInputsAsDouble"), typeof(double));
        var node = _ctx.CreateNode("TreeEnsembleRegressor", inputs, margin, _ctx.GetNodeName("TreeEnsembleRegressor"));
        node.AddAttribute("nodes_treeids", treeIds);
        node.AddAttribute("nodes_nodeids", nodeIds);
        node.AddAttribute("nodes_featureids", featureIds);
        node.AddAttribute("nodes_values", values);
        node.AddAttribute("nodes_modes", modes);
        node.AddAttribute("nodes_truenodeids", trueIds);
        node.AddAttribute("nodes_falsenodeids", falseIds);
        node.AddAttribute("nodes_missing_value_tracks_true", missingTrue);
        node.AddAttribute("target_treeids", targetTrees);
        node.AddAttribute("target_nodeids", targetNodes);
        node.AddAttribute("target_ids", targetTrees.Select(_ => 0L));
        node.AddAttribute("target_weights", weights);
        node.AddAttribute("n_targets", 1L);
        node.AddAttribute("aggregate_function", "SUM");
        node.AddAttribute("post_transform", "NONE");
        return margin;
    }

    /// <summary>The largest float not above <paramref name="threshold"/>: for every float x, x ≤ it exactly when x ≤ the double.</summary>
    internal static float FloatAtMost(double threshold)
    {
        float rounded = (float)threshold;
        return (double)rounded > threshold ? MathF.BitDecrement(rounded) : rounded;
    }
}
