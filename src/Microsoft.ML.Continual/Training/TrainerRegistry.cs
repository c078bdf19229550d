namespace Microsoft.ML.Continual;

/// <summary>
/// The one place that maps a trainer's name to its options type and its strategy: trainers make their strategies
/// here, and a saved model finds its trainer again by the name stored in the zip. Only these known types are ever created when a model is loaded; nothing named in
/// a file is instantiated by reflection.
/// </summary>
internal static class TrainerRegistry
{
    internal sealed record Entry(
        string Name,
        Func<IEnumerable<KeyValuePair<string, string>>, ContinualTrainerOptions> ReadOptions,
        Func<ContinualTrainerOptions, ContinualStrategy> CreateStrategy,
        Func<IEnumerable<KeyValuePair<string, string>>, ContinualTrainerOptions> ParseUserOptions,
        Func<MLContext, ContinualTrainerOptions, IEstimator<ContinualTransformer>> CreateTrainer);

    private static Entry Make<TOptions>(string name, Func<TOptions, ContinualStrategy> create, Func<MLContext, TOptions, IEstimator<ContinualTransformer>> trainer)
        where TOptions : ContinualTrainerOptions, new() =>
        new(name, pairs => ContinualTrainerOptions.FromPairs<TOptions>(pairs), options => create((TOptions)options),
            pairs => ContinualTrainerOptions.FromUserPairs<TOptions>(pairs), (ml, options) => trainer(ml, (TOptions)options));

    /// <summary>The names of every trainer, as stored in models.</summary>
    public static IReadOnlyList<string> Names => Entries.Keys.Order(StringComparer.Ordinal).ToList();

    /// <summary>The entry of a trainer named <paramref name="name"/> (any case), or null.</summary>
    public static Entry? Find(string name) => Entries.Values.FirstOrDefault(e => string.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase));

    private static readonly Dictionary<string, Entry> Entries = new(StringComparer.Ordinal)
    {
        [L2Trainer.TrainerName] = Make<L2Trainer.Options>(L2Trainer.TrainerName, o => new L2Strategy(o.Lambda), (ml, o) => new L2Trainer(ml, o)),
        [EwcTrainer.TrainerName] = Make<EwcTrainer.Options>(EwcTrainer.TrainerName, o => new EwcStrategy(o), (ml, o) => new EwcTrainer(ml, o)),
        [SiTrainer.TrainerName] = Make<SiTrainer.Options>(SiTrainer.TrainerName, o => new SiStrategy(o), (ml, o) => new SiTrainer(ml, o)),
        [MasTrainer.TrainerName] = Make<MasTrainer.Options>(MasTrainer.TrainerName, o => new MasStrategy(o), (ml, o) => new MasTrainer(ml, o)),
        [RWalkTrainer.TrainerName] = Make<RWalkTrainer.Options>(RWalkTrainer.TrainerName, o => new RWalkStrategy(o), (ml, o) => new RWalkTrainer(ml, o)),
        [ScpTrainer.TrainerName] = Make<ScpTrainer.Options>(ScpTrainer.TrainerName, o => new ScpStrategy(o), (ml, o) => new ScpTrainer(ml, o)),
        [GemTrainer.TrainerName] = Make<GemTrainer.Options>(GemTrainer.TrainerName, o => new GemStrategy(o), (ml, o) => new GemTrainer(ml, o)),
        [AGemTrainer.TrainerName] = Make<AGemTrainer.Options>(AGemTrainer.TrainerName, o => new AGemStrategy(o), (ml, o) => new AGemTrainer(ml, o)),
        [ReplayTrainer.TrainerName] = Make<ReplayTrainer.Options>(ReplayTrainer.TrainerName, ReplayTrainer.CreateStrategy, (ml, o) => new ReplayTrainer(ml, o)),
        [GenerativeReplayTrainer.TrainerName] = Make<GenerativeReplayTrainer.Options>(GenerativeReplayTrainer.TrainerName, o => new GenerativeReplayStrategy(o), (ml, o) => new GenerativeReplayTrainer(ml, o)),
        [PackNetTrainer.TrainerName] = Make<PackNetTrainer.Options>(PackNetTrainer.TrainerName, o => new PackNetStrategy(o), (ml, o) => new PackNetTrainer(ml, o)),
        [CpgTrainer.TrainerName] = Make<CpgTrainer.Options>(CpgTrainer.TrainerName, o => new CpgStrategy(o), (ml, o) => new CpgTrainer(ml, o)),
        [ProgressiveNetworksTrainer.TrainerName] = Make<ProgressiveNetworksTrainer.Options>(ProgressiveNetworksTrainer.TrainerName, _ => new ProgressiveStrategy(), (ml, o) => new ProgressiveNetworksTrainer(ml, o)),
        [FineTuneTrainer.TrainerName] = Make<FineTuneTrainer.Options>(FineTuneTrainer.TrainerName, _ => new FineTuneStrategy(), (ml, o) => new FineTuneTrainer(ml, o)),
        [JointTrainer.TrainerName] = Make<JointTrainer.Options>(JointTrainer.TrainerName, _ => new JointStrategy(), (ml, o) => new JointTrainer(ml, o)),
        [IndependentTrainer.TrainerName] = Make<IndependentTrainer.Options>(IndependentTrainer.TrainerName, _ => new IndependentStrategy(), (ml, o) => new IndependentTrainer(ml, o)),
    };

    public static Entry Get(string name) =>
        Entries.TryGetValue(name, out var entry) ? entry
            : throw new ContinualModelFormatException($"The model was made by trainer '{name}', which this version of Microsoft.ML.Continual does not know (known: {string.Join(", ", Entries.Keys)}).");
}
