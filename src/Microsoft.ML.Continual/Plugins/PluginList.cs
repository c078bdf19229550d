using static TorchSharp.torch;
using TorchSharp.Modules;

namespace Microsoft.ML.Continual;

/// <summary>
/// A model's ordered plugins: every hook runs each plugin in order; what the loop asks of the whole method (columns,
/// epochs, checkpoint support) is combined from the parts. The empty list is fine-tuning.
/// </summary>
internal sealed class PluginList
{
    public PluginList(IReadOnlyList<ContinualPlugin> plugins)
    {
        var names = plugins.Select(p => p.Name).ToList();
        var duplicate = names.GroupBy(n => n, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
            throw new ArgumentException($"Plugin '{duplicate.Key}' appears twice in the list; each plugin may appear once.", nameof(plugins));
        var columns = plugins.Select(p => p.Columns).Where(c => c != NetworkColumns.Shared).Distinct().ToList();
        if (columns.Count > 1)
            throw new ArgumentException($"The plugins ask for different network layouts ({string.Join(", ", columns)}); at most one plugin may choose the layout.", nameof(plugins));
        if (plugins.Count(p => p.AllocatesPerTask) > 1)
            throw new ArgumentException("At most one plugin of the architecture family (PackNet, CPG, progressive networks) may be in the list: each divides the network among the tasks its own way.", nameof(plugins));
        Items = plugins;
    }

    public static readonly PluginList Empty = new([]);

    public IReadOnlyList<ContinualPlugin> Items { get; }

    public IEnumerable<string> Names => Items.Select(p => p.Name);

    public NetworkColumns Columns => Items.Select(p => p.Columns).FirstOrDefault(c => c != NetworkColumns.Shared);
    public bool SupportsCheckpoints => Items.All(p => p.SupportsCheckpoints);
    public bool AllocatesPerTask => Items.Any(p => p.AllocatesPerTask);
    public bool GrowsHiddenLayers => Items.Any(p => p.GrowsHiddenLayers);

    public T? Find<T>() where T : ContinualPlugin => Items.OfType<T>().FirstOrDefault();

    public void AttachTo(ContinualNetwork network) { foreach (var p in Items) p.AttachTo(network); }
    public void BeforeTask(ContinualTrainingContext context) { foreach (var p in Items) p.BeforeTask(context); }

    /// <summary>The largest epoch count any plugin asks for (the options' when there is none).</summary>
    public int EpochCount(ContinualTrainingContext context)
    {
        int epochs = context.Options.NumberOfEpochs;
        for (int i = 0; i < Items.Count; i++)
            epochs = i == 0 ? Items[i].EpochCount(context) : Math.Max(epochs, Items[i].EpochCount(context));
        return epochs;
    }

    public void BeforeEpoch(ContinualTrainingContext context) { foreach (var p in Items) p.BeforeEpoch(context); }
    public IEnumerable<Parameter> ExtraParameters(ContinualTrainingContext context) => Items.SelectMany(p => p.ExtraParameters(context));
    public void BeforeBackward(ContinualTrainingContext context, ContinualStep step) { foreach (var p in Items) p.BeforeBackward(context, step); }
    public void AfterBackward(ContinualTrainingContext context) { foreach (var p in Items) p.AfterBackward(context); }
    public void AfterStep(ContinualTrainingContext context) { foreach (var p in Items) p.AfterStep(context); }
    public void AfterEpoch(ContinualTrainingContext context, double meanTaskLoss) { foreach (var p in Items) p.AfterEpoch(context, meanTaskLoss); }
    public void AfterTask(ContinualTrainingContext context) { foreach (var p in Items) p.AfterTask(context); }
    public void AtBoundary(ContinualTrainingContext context) { foreach (var p in Items) p.AtBoundary(context); }

    /// <summary>The first plugin that cannot consolidate inside a fit, with its reason; null when all can.</summary>
    public (string Plugin, string Reason)? WhyNotContinuesAcrossFits() =>
        Items.Select(p => (p.Name, p.WhyNotContinuesAcrossFits)).Where(x => x.WhyNotContinuesAcrossFits is not null)
            .Select(x => ((string, string)?)(x.Name, x.WhyNotContinuesAcrossFits!)).FirstOrDefault();

    public (string Plugin, string Reason)? WhyNotBoundariesInsideFit() =>
        Items.Select(p => (p.Name, p.WhyNotBoundariesInsideFit)).Where(x => x.WhyNotBoundariesInsideFit is not null)
            .Select(x => ((string, string)?)(x.Name, x.WhyNotBoundariesInsideFit!)).FirstOrDefault();
    public Tensor ScoringOutputs(ContinualNetwork network, Tensor features, Tensor? heads, Tensor logits)
    {
        foreach (var p in Items) logits = p.ScoringOutputs(network, features, heads, logits);
        return logits;
    }

    public ContinualCapacity? Capacity(ContinualModelState state) => Items.Select(p => p.Capacity(state)).FirstOrDefault(c => c is not null);

    public IReadOnlyDictionary<string, long> StateSizes() =>
        Items.SelectMany(p => p.StateSizes()).GroupBy(kv => kv.Key).ToDictionary(g => g.Key, g => g.Sum(kv => kv.Value));

    /// <summary>
    /// The plugins a fit continuing a model made with <paramref name="previous"/> trains with, given the trainer's own list
    /// <paramref name="wanted"/> (fresh instances with the trainer's settings): a plugin in both lists takes a copy of the
    /// previous one's state; one only in <paramref name="wanted"/> starts anew; one only in <paramref name="previous"/> is
    /// dropped. Continuing is refused when the architecture family is in either list and the lists differ.
    /// </summary>
    public static PluginList Continuing(PluginList previous, IReadOnlyList<ContinualPlugin> wanted, string previousTrainer, string trainer)
    {
        if (!previous.Names.SequenceEqual(wanted.Select(p => p.Name)) && (previous.AllocatesPerTask || wanted.Any(p => p.AllocatesPerTask)))
        {
            string family = previous.AllocatesPerTask ? previousTrainer : trainer;
            throw new ArgumentException(
                $"A model made by {previousTrainer} [{string.Join(", ", previous.Names)}] cannot be continued by {trainer} [{string.Join(", ", wanted.Select(p => p.Name))}]: "
                + $"{family} divides the network among its tasks, and the other plugins would change or misread what the earlier tasks use. "
                + "Continue it with its own trainer (ml.Continual().Refit), or start a new model.", "previousModel");
        }
        foreach (var plugin in wanted)
            if (previous.Items.FirstOrDefault(p => p.Name == plugin.Name) is { } old) plugin.CopyStateFrom(old);
        return new PluginList(wanted);
    }

    /// <summary>Fresh copies carrying this list's state (for a refit with the stored plugins).</summary>
    public PluginList Copy()
    {
        var copies = new List<ContinualPlugin>();
        foreach (var plugin in Items)
        {
            var copy = ContinualPlugins.Fresh(plugin);
            copy.CopyStateFrom(plugin);
            copies.Add(copy);
        }
        return new PluginList(copies);
    }
}
