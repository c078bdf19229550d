using System.Globalization;
using System.Text;

namespace Microsoft.ML.Continual.Trees;

/// <summary>
/// Checks a model file's trees before LightGBM sees them. LightGBM's parser is native code that trusts its input: a
/// damaged number or key aborted the whole process in the fuzz tests (an exception thrown inside its parallel parse), and
/// a child index out of range would be read out of bounds at prediction. So the text must be exactly what LightGBM 4.6
/// writes for a model of this library: the header's keys and values (one output, the model's feature count and objective),
/// each tree's arrays of the right lengths with finite numbers, child indices that make a tree (every node and leaf
/// reached once), features in range, categorical splits inside their bitsets, and <c>tree_sizes</c> equal to the blocks'
/// lengths. What follows <c>end of trees</c> (importances, parameters) is not needed to predict and is left out.
/// </summary>
internal static class LightGbmModelText
{
    private const string EndOfTrees = "end of trees";

    // A tree's keys in the order LightGBM 4.6 writes them (Tree::ToString); the categorical two only when num_cat > 0.
    private static readonly string[] NodeKeys = ["split_feature", "split_gain", "threshold", "decision_type", "left_child", "right_child"];
    private static readonly string[] LeafKeys = ["leaf_value", "leaf_weight", "leaf_count"];
    private static readonly string[] InternalKeys = ["internal_value", "internal_weight", "internal_count"];

    private static readonly System.Text.RegularExpressions.Regex Decimal = new(@"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$", System.Text.RegularExpressions.RegexOptions.CultureInvariant);
    private static readonly System.Text.RegularExpressions.Regex Integer = new(@"^-?(0|[1-9][0-9]{0,9})$", System.Text.RegularExpressions.RegexOptions.CultureInvariant);

    /// <summary>The text LightGBM may be given: the header and the checked trees, ending at <c>end of trees</c>.</summary>
    /// <exception cref="ContinualModelFormatException">Anything that is not such a model, saying what.</exception>
    public static string Checked(string text, int features, ContinualPredictionKind kind) => Read(text, features, kind).Text;

    /// <summary>The checked text's trees, in order, as arrays (what ONNX export writes).</summary>
    /// <exception cref="ContinualModelFormatException">Anything that is not such a model, saying what.</exception>
    public static IReadOnlyList<LightGbmTree> Trees(string text, int features, ContinualPredictionKind kind) => Read(text, features, kind).Trees;

    private static (string Text, List<LightGbmTree> Trees) Read(string text, int features, ContinualPredictionKind kind)
    {
        // LightGBM reads numbers up to a NUL and ends lines at '\r': only printable ASCII and '\n' may reach it.
        foreach (char c in text)
            if (c != '\n' && (c < 0x20 || c > 0x7E)) throw Fail($"holds the character U+{(int)c:X4}, which LightGBM's model text never has");
        int firstTree = text.IndexOf("\nTree=", StringComparison.Ordinal);
        int end = text.IndexOf("\n" + EndOfTrees + "\n", StringComparison.Ordinal);
        if (firstTree < 0 || end < firstTree) throw Fail("has no trees, or no 'end of trees'");
        string header = text[..(firstTree + 1)];
        long[] sizes = CheckHeader(header, features, kind);
        var canonical = new StringBuilder(text.Length);
        var trees = new List<LightGbmTree>(sizes.Length);
        canonical.Append(header);
        int at = firstTree + 1;
        for (int tree = 0; tree < sizes.Length; tree++)
        {
            int next = text.IndexOf("\nTree=", at, StringComparison.Ordinal);
            int blockEnd = next < 0 || next > end ? end + 1 : next + 1;
            if (blockEnd - at != sizes[tree]) throw Fail($"says tree {tree} is {sizes[tree]:N0} bytes long; it is {blockEnd - at:N0}");
            string block = text[at..blockEnd];
            trees.Add(CheckTree(block, tree, features));
            canonical.Append(block);
            at = blockEnd;
        }
        if (at != end + 1) throw Fail($"has more trees than its tree_sizes lists ({sizes.Length})");
        canonical.Append(EndOfTrees).Append('\n');
        return (canonical.ToString(), trees);
    }

    private static long[] CheckHeader(string header, int features, ContinualPredictionKind kind)
    {
        var lines = header.Split('\n');
        if (lines[0] != "tree") throw Fail("does not begin with 'tree'");
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in lines.Skip(1).Where(l => l.Length > 0))
        {
            int eq = line.IndexOf('=');
            if (eq <= 0 || !values.TryAdd(line[..eq], line[(eq + 1)..])) throw Fail($"has a header line '{Printable(line)}' that is not a single key=value");
        }
        string objective = kind == ContinualPredictionKind.Binary ? "binary sigmoid:1" : "regression";
        var expected = new Dictionary<string, string>
        {
            ["version"] = "v4", ["num_class"] = "1", ["num_tree_per_iteration"] = "1", ["label_index"] = "0",
            ["max_feature_idx"] = (features - 1).ToString(CultureInfo.InvariantCulture), ["objective"] = objective,
        };
        foreach (var (key, value) in expected)
            if (!values.TryGetValue(key, out string? given) || given != value) throw Fail($"has {key}={Printable(given ?? "(none)")} where {value} is expected");
        var names = values.GetValueOrDefault("feature_names", "").Split(' ');
        var infos = values.GetValueOrDefault("feature_infos", "").Split(' ');
        if (names.Length != features || names.Any(n => n.Length == 0 || !n.All(c => char.IsAsciiLetterOrDigit(c) || c == '_')))
            throw Fail($"does not name {features} features");
        if (infos.Length != features || !infos.All(ValidFeatureInfo)) throw Fail($"does not describe {features} features");
        if (values.Keys.Except([.. expected.Keys, "feature_names", "feature_infos", "tree_sizes"]).FirstOrDefault() is { } unknown)
            throw Fail($"has an unknown header key '{Printable(unknown)}'");
        var sizes = values.GetValueOrDefault("tree_sizes", "").Split(' ');
        if (sizes.Length == 0 || sizes.Length > 1_000_000) throw Fail("has no tree_sizes");
        return sizes.Select(s => Integer.IsMatch(s) && long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out long n) && n > 0 && n < int.MaxValue ? n : throw Fail("has a tree size that is not a positive number")).ToArray();
    }

    /// <summary>"none", "[min:max]" of two numbers, or categories "a:b:c" (integers).</summary>
    private static bool ValidFeatureInfo(string info)
    {
        if (info == "none") return true;
        if (info.StartsWith('[') && info.EndsWith(']'))
        {
            var range = info[1..^1].Split(':');
            return range.Length == 2 && range.All(r => Decimal.IsMatch(r) && double.TryParse(r, NumberStyles.Float, CultureInfo.InvariantCulture, out _));
        }
        return info.Split(':').All(c => Integer.IsMatch(c));
    }

    /// <summary>One tree's block exactly as LightGBM writes it: <c>Tree=i</c>, its keys in order, one per line, then a blank
    /// line and the separator (LightGBM reads a tree up to its first blank line, so nothing may be missing or extra).</summary>
    private static LightGbmTree CheckTree(string block, int tree, int features)
    {
        var lines = block.Split('\n');
        if (lines[0] != $"Tree={tree}") throw Fail($"has '{Printable(lines[0])}' where 'Tree={tree}' is expected");
        if (lines.Length < 4 || lines[^1] != "" || lines[^2] != "" || lines[^3] != "") throw Fail($"does not end tree {tree} with a blank line");
        var body = lines[1..^3];
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in body)
        {
            int eq = line.IndexOf('=');
            if (eq <= 0 || !values.TryAdd(line[..eq], line[(eq + 1)..])) throw Fail($"has a line '{Printable(line)}' in tree {tree} that is not a single key=value");
        }
        int leaves = Int(values, "num_leaves", tree);
        int categories = Int(values, "num_cat", tree);
        if (leaves < 1 || leaves > 131_072 || categories < 0 || categories > leaves - 1) throw Fail($"has {leaves} leaves and {categories} categorical splits in tree {tree}");
        string[] order = ["num_leaves", "num_cat", .. NodeKeys, .. LeafKeys, .. InternalKeys, .. (categories > 0 ? new[] { "cat_boundaries", "cat_threshold" } : []), "is_linear", "shrinkage"];
        if (!body.Select(l => l[..l.IndexOf('=')]).SequenceEqual(order)) throw Fail($"does not have tree {tree}'s keys in LightGBM's order");
        if (values["is_linear"] != "0") throw Fail($"has a linear tree ({tree})");
        Doubles(values, "shrinkage", 1, tree);
        var leafValues = Doubles(values, "leaf_value", leaves, tree);
        foreach (string key in LeafKeys.Skip(1)) Doubles(values, key, leaves, tree);
        int nodes = leaves - 1;
        if (nodes == 0)
        {
            // A one-leaf tree has its node arrays empty.
            if (NodeKeys.Concat(InternalKeys).Any(k => values[k].Length != 0) || categories != 0) throw Fail($"has node values in one-leaf tree {tree}");
            return new LightGbmTree([], [], [], [], [], leafValues, [], []);
        }
        var feature = Ints(values, "split_feature", nodes, tree);
        var decision = Ints(values, "decision_type", nodes, tree);
        var threshold = Doubles(values, "threshold", nodes, tree);
        var left = Ints(values, "left_child", nodes, tree);
        var right = Ints(values, "right_child", nodes, tree);
        Doubles(values, "split_gain", nodes, tree);
        foreach (string key in InternalKeys) Doubles(values, key, nodes, tree);
        int[] boundaries = [];
        uint[] bitsets = [];
        if (categories > 0)
        {
            boundaries = Ints(values, "cat_boundaries", categories + 1, tree);
            if (boundaries[0] != 0 || boundaries.Zip(boundaries.Skip(1)).Any(p => p.Second <= p.First))
                throw Fail($"has categorical bitset bounds out of order in tree {tree}");
            var words = values["cat_threshold"].Split(' ');
            if (words.Length != boundaries[^1] || !words.All(w => Integer.IsMatch(w) && uint.TryParse(w, NumberStyles.None, CultureInfo.InvariantCulture, out _)))
                throw Fail($"has a categorical bitset of the wrong size in tree {tree}");
            bitsets = words.Select(w => uint.Parse(w, NumberStyles.None, CultureInfo.InvariantCulture)).ToArray();
        }
        CheckNodes(tree, features, feature, decision, threshold, categories, left, right, leaves);
        return new LightGbmTree(feature, threshold, decision, left, right, leafValues, boundaries, bitsets);
    }

    /// <summary>Every internal node but the root, and every leaf, is some node's child exactly once, and the root reaches them all: a tree.</summary>
    private static void CheckNodes(int tree, int features, int[] feature, int[] decision, double[] threshold, int categories, int[] left, int[] right, int leaves)
    {
        int nodes = leaves - 1;
        var nodeSeen = new bool[nodes];
        var leafSeen = new bool[leaves];
        for (int n = 0; n < nodes; n++)
        {
            if (feature[n] < 0 || feature[n] >= features) throw Fail($"splits on feature {feature[n]} in tree {tree}, of {features}");
            if (decision[n] is < 0 or > 15) throw Fail($"has decision type {decision[n]} in tree {tree}");
            if ((decision[n] & 1) != 0 && (threshold[n] != Math.Floor(threshold[n]) || threshold[n] < 0 || threshold[n] >= categories))
                throw Fail($"has a categorical split whose bitset {threshold[n]} is not one of the tree's {categories} in tree {tree}");
            foreach (int child in new[] { left[n], right[n] })
            {
                if (child >= 0)
                {
                    if (child == 0 || child >= nodes || nodeSeen[child]) throw Fail($"has node {n} of tree {tree} pointing to node {child}, which is not a fresh node");
                    nodeSeen[child] = true;
                }
                else
                {
                    int leaf = ~child;
                    if (leaf >= leaves || leafSeen[leaf]) throw Fail($"has node {n} of tree {tree} pointing to leaf {leaf}, which is not a fresh leaf");
                    leafSeen[leaf] = true;
                }
            }
        }
        if (nodeSeen.Skip(1).Any(s => !s) || leafSeen.Any(s => !s)) throw Fail($"has nodes or leaves no node points to in tree {tree}");
        // Every reference once does not rule out a cycle apart from the root (a → b → a): everything must be reached from it.
        int reached = 0;
        var stack = new Stack<int>([0]);
        while (stack.Count > 0 && reached <= nodes)
        {
            int n = stack.Pop();
            reached++;
            if (left[n] > 0) stack.Push(left[n]);
            if (right[n] > 0) stack.Push(right[n]);
        }
        if (reached != nodes) throw Fail($"has nodes of tree {tree} that the root does not reach");
    }

    private static int Int(Dictionary<string, string> values, string key, int tree) =>
        values.TryGetValue(key, out string? v) && Integer.IsMatch(v) && int.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int n) ? n
            : throw Fail($"has no number {key} in tree {tree}");

    private static int[] Ints(Dictionary<string, string> values, string key, int count, int tree)
    {
        var parts = values.GetValueOrDefault(key, "").Split(' ');
        if (parts.Length != count) throw Fail($"has {parts.Length} values of {key} in tree {tree} where {count} are expected");
        return parts.Select(p => Integer.IsMatch(p) && int.TryParse(p, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int n) ? n : throw Fail($"has '{Printable(p)}' in {key} of tree {tree}")).ToArray();
    }

    private static double[] Doubles(Dictionary<string, string> values, string key, int count, int tree)
    {
        var parts = values.GetValueOrDefault(key, "").Split(' ');
        if (parts.Length != count) throw Fail($"has {parts.Length} values of {key} in tree {tree} where {count} are expected");
        return parts.Select(p => Decimal.IsMatch(p) && double.TryParse(p, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && double.IsFinite(d) ? d
            : throw Fail($"has '{Printable(p)}' in {key} of tree {tree}, not a finite number")).ToArray();
    }

    private static ContinualModelFormatException Fail(string why) => new($"The trees (Trees.txt) {why}.");

    private static string Printable(string text) => new(text.Take(60).Select(c => char.IsControl(c) || c > 0x7E ? '?' : c).ToArray());
}

/// <summary>
/// One tree as LightGBM 4.6 writes it (<c>Tree::ToString</c>): internal node n splits on <see cref="SplitFeature"/>[n]
/// and goes to <see cref="LeftChild"/>[n] or <see cref="RightChild"/>[n], a child c ≥ 0 being a node and c &lt; 0 the
/// leaf ~c; a one-leaf tree has no nodes.
/// </summary>
/// <remarks>
/// How LightGBM decides (<c>Tree::NumericalDecision</c> and <c>CategoricalDecision</c> in <c>tree.h</c>): for a numerical
/// split, bits 2–3 of <see cref="DecisionType"/> are the missing type (0 none, 1 zero, 2 NaN) and bit 1 is "missing goes
/// left"; NaN is read as 0 unless the type is NaN, a missing value goes to the default side, and otherwise x ≤ threshold
/// goes left (x and the threshold as doubles). For a categorical split (bit 0), the threshold is the index of a bitset in
/// <see cref="CategoryBits"/> (words <see cref="CategoryBoundaries"/>[i] to [i + 1]); the category (int) x goes left when
/// its bit is set, and NaN or a negative x goes right.
/// </remarks>
internal sealed record LightGbmTree(int[] SplitFeature, double[] Threshold, int[] DecisionType, int[] LeftChild, int[] RightChild,
    double[] LeafValue, int[] CategoryBoundaries, uint[] CategoryBits)
{
    public int Nodes => SplitFeature.Length;

    public static bool IsCategorical(int decisionType) => (decisionType & 1) != 0;

    public static bool DefaultLeft(int decisionType) => (decisionType & 2) != 0;

    /// <summary>0 none, 1 zero, 2 NaN.</summary>
    public static int MissingType(int decisionType) => (decisionType >> 2) & 3;

    /// <summary>Whether category <paramref name="category"/> goes left at categorical node <paramref name="node"/> (Common::FindInBitset).</summary>
    public bool GoesLeft(int node, int category)
    {
        int set = (int)Threshold[node], start = CategoryBoundaries[set], words = CategoryBoundaries[set + 1] - start;
        return category >= 0 && category / 32 < words && ((CategoryBits[start + category / 32] >> (category % 32)) & 1) != 0;
    }

    /// <summary>The largest category any of node <paramref name="node"/>'s bitset words can hold.</summary>
    public int LargestCategory(int node)
    {
        int set = (int)Threshold[node];
        return (CategoryBoundaries[set + 1] - CategoryBoundaries[set]) * 32 - 1;
    }
}
