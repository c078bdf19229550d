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
        Func<ContinualTrainerOptions, ContinualStrategy> CreateStrategy);

    private static Entry Make<TOptions>(string name, Func<TOptions, ContinualStrategy> create) where TOptions : ContinualTrainerOptions, new() =>
        new(name, pairs => ContinualTrainerOptions.FromPairs<TOptions>(pairs), options => create((TOptions)options));

    private static readonly Dictionary<string, Entry> Entries = new(StringComparer.Ordinal)
    {
        [L2Trainer.TrainerName] = Make<L2Trainer.Options>(L2Trainer.TrainerName, o => new L2Strategy(o.Lambda)),
        [EwcTrainer.TrainerName] = Make<EwcTrainer.Options>(EwcTrainer.TrainerName, o => new EwcStrategy(o)),
        [SiTrainer.TrainerName] = Make<SiTrainer.Options>(SiTrainer.TrainerName, o => new SiStrategy(o)),
        [MasTrainer.TrainerName] = Make<MasTrainer.Options>(MasTrainer.TrainerName, o => new MasStrategy(o)),
        [RWalkTrainer.TrainerName] = Make<RWalkTrainer.Options>(RWalkTrainer.TrainerName, o => new RWalkStrategy(o)),
        [ScpTrainer.TrainerName] = Make<ScpTrainer.Options>(ScpTrainer.TrainerName, o => new ScpStrategy(o)),
        [GemTrainer.TrainerName] = Make<GemTrainer.Options>(GemTrainer.TrainerName, o => new GemStrategy(o)),
        [AGemTrainer.TrainerName] = Make<AGemTrainer.Options>(AGemTrainer.TrainerName, o => new AGemStrategy(o)),
        [ReplayTrainer.TrainerName] = Make<ReplayTrainer.Options>(ReplayTrainer.TrainerName, ReplayTrainer.CreateStrategy),
        [GenerativeReplayTrainer.TrainerName] = Make<GenerativeReplayTrainer.Options>(GenerativeReplayTrainer.TrainerName, o => new GenerativeReplayStrategy(o)),
        [FineTuneTrainer.TrainerName] = Make<FineTuneTrainer.Options>(FineTuneTrainer.TrainerName, _ => new FineTuneStrategy()),
        [JointTrainer.TrainerName] = Make<JointTrainer.Options>(JointTrainer.TrainerName, _ => new JointStrategy()),
        [IndependentTrainer.TrainerName] = Make<IndependentTrainer.Options>(IndependentTrainer.TrainerName, _ => new IndependentStrategy()),
    };

    public static Entry Get(string name) =>
        Entries.TryGetValue(name, out var entry) ? entry
            : throw new ContinualModelFormatException($"The model was made by trainer '{name}', which this version of Microsoft.ML.Continual does not know (known: {string.Join(", ", Entries.Keys)}).");
}
