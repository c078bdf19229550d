namespace Microsoft.ML.Continual;

/// <summary>
/// The one place that maps a trainer's name to its options type and its plugins: trainers make their plugins here, and a
/// saved model finds its options type again by the name stored in the zip. Every built-in trainer is a preset: its options
/// make an ordered list of plugins. Only these known types are ever created for a trainer name read from a file; nothing
/// named in a file is instantiated by reflection beyond this registry and the plugin and backbone registries.
/// </summary>
internal static class TrainerRegistry
{
    internal sealed record Entry(
        string Name,
        Func<IEnumerable<KeyValuePair<string, string>>, ContinualTrainerOptions> ReadOptions,
        Func<ContinualTrainerOptions, IReadOnlyList<ContinualPlugin>> CreatePlugins,
        Func<IEnumerable<KeyValuePair<string, string>>, ContinualTrainerOptions> ParseUserOptions,
        Func<MLContext, ContinualTrainerOptions, ContinualTrainer> CreateTrainer,
        Func<ContinualTrainerOptions> CreateDefaultOptions);

    private static Entry Make<TOptions>(string name, Func<TOptions, IReadOnlyList<ContinualPlugin>> plugins, Func<MLContext, TOptions, ContinualTrainer> trainer)
        where TOptions : ContinualTrainerOptions, new() =>
        new(name, pairs => ContinualTrainerOptions.FromPairs<TOptions>(pairs), options => options.WithSharedPlugins(plugins((TOptions)options)),
            pairs => ContinualTrainerOptions.FromUserPairs<TOptions>(pairs), (ml, options) => trainer(ml, (TOptions)options), () => new TOptions());

    /// <summary>A plugin with the settings of <paramref name="options"/> that it shares by name (e.g. EWC's Lambda, Mode, Gamma).</summary>
    private static T With<T>(ContinualTrainerOptions options) where T : ContinualPlugin, new()
    {
        var plugin = new T();
        Settings.CopyMatching(options, plugin);
        return plugin;
    }

    /// <summary>The names of every trainer, as stored in models.</summary>
    public static IReadOnlyList<string> Names => Entries.Keys.Order(StringComparer.Ordinal).ToList();

    /// <summary>The entry of a trainer named <paramref name="name"/> (any case), or null.</summary>
    public static Entry? Find(string name) => Entries.Values.FirstOrDefault(e => string.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase));

    private static readonly Dictionary<string, Entry> Entries = new(StringComparer.Ordinal)
    {
        [L2Trainer.RegisteredName] = Make<L2Trainer.Options>(L2Trainer.RegisteredName, o => [With<L2Plugin>(o)], (ml, o) => new L2Trainer(ml, o)),
        [EwcTrainer.RegisteredName] = Make<EwcTrainer.Options>(EwcTrainer.RegisteredName, o => [With<EwcPlugin>(o)], (ml, o) => new EwcTrainer(ml, o)),
        [SiTrainer.RegisteredName] = Make<SiTrainer.Options>(SiTrainer.RegisteredName, o => [With<SiPlugin>(o)], (ml, o) => new SiTrainer(ml, o)),
        [MasTrainer.RegisteredName] = Make<MasTrainer.Options>(MasTrainer.RegisteredName, o => [With<MasPlugin>(o)], (ml, o) => new MasTrainer(ml, o)),
        [RWalkTrainer.RegisteredName] = Make<RWalkTrainer.Options>(RWalkTrainer.RegisteredName, o => [With<RWalkPlugin>(o)], (ml, o) => new RWalkTrainer(ml, o)),
        [ScpTrainer.RegisteredName] = Make<ScpTrainer.Options>(ScpTrainer.RegisteredName, o => [With<ScpPlugin>(o)], (ml, o) => new ScpTrainer(ml, o)),
        [GemTrainer.RegisteredName] = Make<GemTrainer.Options>(GemTrainer.RegisteredName, o => [With<GemPlugin>(o)], (ml, o) => new GemTrainer(ml, o)),
        [AGemTrainer.RegisteredName] = Make<AGemTrainer.Options>(AGemTrainer.RegisteredName, o => [With<AGemPlugin>(o)], (ml, o) => new AGemTrainer(ml, o)),
        [ReplayTrainer.RegisteredName] = Make<ReplayTrainer.Options>(ReplayTrainer.RegisteredName, ReplayTrainer.CreatePlugins, (ml, o) => new ReplayTrainer(ml, o)),
        [GenerativeReplayTrainer.RegisteredName] = Make<GenerativeReplayTrainer.Options>(GenerativeReplayTrainer.RegisteredName, o => [With<GenerativeReplayPlugin>(o)], (ml, o) => new GenerativeReplayTrainer(ml, o)),
        [PackNetTrainer.RegisteredName] = Make<PackNetTrainer.Options>(PackNetTrainer.RegisteredName, o => [With<PackNetPlugin>(o)], (ml, o) => new PackNetTrainer(ml, o)),
        [CpgTrainer.RegisteredName] = Make<CpgTrainer.Options>(CpgTrainer.RegisteredName, o => [With<CpgPlugin>(o)], (ml, o) => new CpgTrainer(ml, o)),
        [ProgressiveNetworksTrainer.RegisteredName] = Make<ProgressiveNetworksTrainer.Options>(ProgressiveNetworksTrainer.RegisteredName, _ => [new ProgressivePlugin()], (ml, o) => new ProgressiveNetworksTrainer(ml, o)),
        [FineTuneTrainer.RegisteredName] = Make<FineTuneTrainer.Options>(FineTuneTrainer.RegisteredName, _ => [], (ml, o) => new FineTuneTrainer(ml, o)),
        [JointTrainer.RegisteredName] = Make<JointTrainer.Options>(JointTrainer.RegisteredName, _ => [new JointPlugin()], (ml, o) => new JointTrainer(ml, o)),
        [IndependentTrainer.RegisteredName] = Make<IndependentTrainer.Options>(IndependentTrainer.RegisteredName, _ => [new IndependentPlugin()], (ml, o) => new IndependentTrainer(ml, o)),
        [DerTrainer.RegisteredName] = Make<DerTrainer.Options>(DerTrainer.RegisteredName, o => [With<DarkExperiencePlugin>(o)], (ml, o) => new DerTrainer(ml, o)),
        [DerPlusPlusTrainer.RegisteredName] = Make<DerPlusPlusTrainer.Options>(DerPlusPlusTrainer.RegisteredName, o => [With<DarkExperiencePlugin>(o)], (ml, o) => new DerPlusPlusTrainer(ml, o)),
        [ErTrainer.RegisteredName] = Make<ErTrainer.Options>(ErTrainer.RegisteredName, o => [With<ErPlugin>(o)], (ml, o) => new ErTrainer(ml, o)),
        [ErAceTrainer.RegisteredName] = Make<ErAceTrainer.Options>(ErAceTrainer.RegisteredName, o => [With<ErAcePlugin>(o)], (ml, o) => new ErAceTrainer(ml, o)),
        [MirTrainer.RegisteredName] = Make<MirTrainer.Options>(MirTrainer.RegisteredName, o => [With<MirPlugin>(o)], (ml, o) => new MirTrainer(ml, o)),
        [GDumbTrainer.RegisteredName] = Make<GDumbTrainer.Options>(GDumbTrainer.RegisteredName, o => [With<GDumbPlugin>(o)], (ml, o) => new GDumbTrainer(ml, o)),
        [LwfTrainer.RegisteredName] = Make<LwfTrainer.Options>(LwfTrainer.RegisteredName, o => [With<LwfPlugin>(o)], (ml, o) => new LwfTrainer(ml, o)),
        [IcarlTrainer.RegisteredName] = Make<IcarlTrainer.Options>(IcarlTrainer.RegisteredName, o => [With<IcarlPlugin>(o)], (ml, o) => new IcarlTrainer(ml, o)),
        [BicTrainer.RegisteredName] = Make<BicTrainer.Options>(BicTrainer.RegisteredName, o => [With<BicPlugin>(o)], (ml, o) => new BicTrainer(ml, o)),
        [ComposedTrainer.RegisteredName] = Make<ComposedTrainer.Options>(ComposedTrainer.RegisteredName, _ => [], (ml, o) => new ComposedTrainer(ml, o, [])),
    };

    public static Entry Get(string name) =>
        Entries.TryGetValue(name, out var entry) ? entry
            : throw new ContinualModelFormatException($"The model was made by trainer '{name}', which this version of Microsoft.ML.Continual does not know (known: {string.Join(", ", Entries.Keys)}).");
}

/// <summary>
/// A trainer made of the shared options and any ordered list of plugins (<see cref="ContinualTrainers.Compose"/>): e.g.
/// replay, online EWC and a distillation term of your own on the one loop. Each plugin's settings and state are saved in
/// the model under the plugin's registered name; <see cref="ContinualCatalog.Refit(ITransformer, IDataView, CancellationToken)"/>
/// continues with them.
/// </summary>
/// <example><code source="../../src/Samples/DistillationPluginSample.cs" /></example>
public sealed class ComposedTrainer : ContinualTrainerBase<ComposedTrainer.Options>
{
    internal const string RegisteredName = "Composed";

    private readonly IReadOnlyList<(string Name, List<KeyValuePair<string, string>> Settings)>? _plugins; // null while the base constructor runs

    /// <summary>The shared options (<see cref="ContinualTrainerOptions"/>); the method is in the plugins.</summary>
    public sealed class Options : ContinualTrainerOptions
    {
    }

    internal ComposedTrainer(MLContext mlContext, Options options, IReadOnlyList<ContinualPlugin> plugins) : base(mlContext, options)
    {
        ArgumentNullException.ThrowIfNull(plugins);
        foreach (var plugin in plugins)
        {
            ArgumentNullException.ThrowIfNull(plugin, nameof(plugins));
            plugin.Validate();
        }
        _plugins = plugins.Select(p => (p.Name, Settings.ToPairs(p))).ToList(); // settings only: each fit gets fresh instances
        _ = new PluginList(CreatePlugins(options)); // fail now on a list that cannot run together
    }

    /// <inheritdoc/>
    public override string TrainerName => RegisteredName;

    private protected override IReadOnlyList<ContinualPlugin> CreatePlugins(ContinualTrainerOptions options) =>
        options.WithSharedPlugins(_plugins?.Select(p => ContinualPlugins.Create(p.Name, p.Settings)).ToList() ?? []);
}
