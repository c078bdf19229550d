using System.Collections.Concurrent;
using System.Text.RegularExpressions;

namespace Microsoft.ML.Continual;

/// <summary>
/// The registry of plugin types by name (process-wide): the built-in methods are registered under their names
/// (<c>"Ewc"</c>, <c>"Replay"</c>, ...); a user registers a plugin of their own before a model using it is fitted or
/// loaded. A model stores each plugin's registered name and settings; loading creates plugins only through this registry,
/// so no type is ever looked up from a name in a file beyond the types registered here.
/// </summary>
/// <example><code source="../../src/Samples/DistillationPluginSample.cs" /></example>
public static partial class ContinualPlugins
{
    private static readonly ConcurrentDictionary<string, (Type Type, Func<ContinualPlugin> Create)> ByName = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<Type, string> ByType = new();

    static ContinualPlugins() => RegisterBuiltIns();

    /// <summary>
    /// Registers <typeparamref name="TPlugin"/> under <paramref name="name"/> (1 to 64 letters, digits, '.', '_' or '-').
    /// Registering the same type under the same name again does nothing; another type under a taken name, or one type
    /// under two names, is an <see cref="ArgumentException"/>.
    /// </summary>
    /// <typeparam name="TPlugin">The plugin type: public parameterless constructor; settings as public properties of simple types.</typeparam>
    /// <param name="name">The name stored in models.</param>
    public static void Register<TPlugin>(string name) where TPlugin : ContinualPlugin, new() => Register(name, typeof(TPlugin), () => new TPlugin());

    /// <summary>Whether a plugin is registered under <paramref name="name"/>.</summary>
    public static bool IsRegistered(string name) => ByName.ContainsKey(name);

    /// <summary>The registered names, in order.</summary>
    public static IReadOnlyList<string> Names => ByName.Keys.Order(StringComparer.Ordinal).ToList();

    private static void Register(string name, Type type, Func<ContinualPlugin> create)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!NamePattern().IsMatch(name))
            throw new ArgumentException($"Plugin name '{name}' must be 1 to 64 letters, digits, '.', '_' or '-'.", nameof(name));
        Settings.CheckStorable(type);
        lock (ByName)
        {
            if (ByName.TryGetValue(name, out var existing))
            {
                if (existing.Type == type) return;
                throw new ArgumentException($"Plugin name '{name}' is taken by {existing.Type.FullName}.", nameof(name));
            }
            if (ByType.TryGetValue(type, out var other))
                throw new ArgumentException($"{type.FullName} is registered as '{other}' already.", nameof(name));
            ByName[name] = (type, create);
            ByType[type] = name;
        }
    }

    /// <summary>The registered name of <paramref name="type"/>.</summary>
    internal static string NameOf(Type type) =>
        ByType.TryGetValue(type, out var name) ? name
            : throw new InvalidOperationException($"Plugin type {type.FullName} is not registered: call ContinualPlugins.Register<{type.Name}>(\"a-name\") before fitting or loading a model that uses it.");

    /// <summary>A new plugin of the type registered as <paramref name="name"/> with the stored settings.</summary>
    internal static ContinualPlugin Create(string name, IEnumerable<KeyValuePair<string, string>> settings)
    {
        if (!ByName.TryGetValue(name, out var entry))
            throw new ContinualModelFormatException($"The model uses plugin '{name}', which is not registered in this process (registered: {string.Join(", ", Names)}). "
                + "Register its type with ContinualPlugins.Register<T>(\"" + name + "\") before loading the model.");
        var plugin = entry.Create();
        Settings.FromStoredPairs(plugin, settings);
        plugin.Validate();
        return plugin;
    }

    /// <summary>A fresh instance of <paramref name="plugin"/>'s type with the same settings and no state.</summary>
    internal static ContinualPlugin Fresh(ContinualPlugin plugin) => Create(plugin.Name, Settings.ToPairs(plugin));

    [GeneratedRegex("^[A-Za-z0-9._-]{1,64}$")]
    private static partial Regex NamePattern();

    private static void RegisterBuiltIns()
    {
        Register<L2Plugin>(L2Trainer.RegisteredName);
        Register<EwcPlugin>(EwcTrainer.RegisteredName);
        Register<SiPlugin>(SiTrainer.RegisteredName);
        Register<MasPlugin>(MasTrainer.RegisteredName);
        Register<RWalkPlugin>(RWalkTrainer.RegisteredName);
        Register<ScpPlugin>(ScpTrainer.RegisteredName);
        Register<GemPlugin>(GemTrainer.RegisteredName);
        Register<AGemPlugin>(AGemTrainer.RegisteredName);
        Register<ReplayPlugin>(ReplayTrainer.RegisteredName);
        Register<GenerativeReplayPlugin>(GenerativeReplayTrainer.RegisteredName);
        Register<PackNetPlugin>(PackNetTrainer.RegisteredName);
        Register<CpgPlugin>(CpgTrainer.RegisteredName);
        Register<ProgressivePlugin>(ProgressiveNetworksTrainer.RegisteredName);
        Register<JointPlugin>(JointTrainer.RegisteredName);
        Register<IndependentPlugin>(IndependentTrainer.RegisteredName);
        Register<DarkExperiencePlugin>("DarkExperience");
        Register<ErPlugin>(ErTrainer.RegisteredName);
        Register<ErAcePlugin>(ErAceTrainer.RegisteredName);
        Register<MirPlugin>(MirTrainer.RegisteredName);
        Register<GDumbPlugin>(GDumbTrainer.RegisteredName);
        Register<LwfPlugin>(LwfTrainer.RegisteredName);
        Register<IcarlPlugin>(IcarlTrainer.RegisteredName);
        Register<BicPlugin>(BicTrainer.RegisteredName);
        Register<EarlyStoppingPlugin>("EarlyStopping");
        Register<LearningRateSchedulePlugin>("LearningRateSchedule");
    }
}
