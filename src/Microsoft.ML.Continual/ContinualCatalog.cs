using Microsoft.ML.Data;

namespace Microsoft.ML.Continual;

/// <summary>Entry point: <c>mlContext.Continual()</c>.</summary>
public static class MLContextContinualExtensions
{
    /// <summary>The continual-learning catalog of <paramref name="mlContext"/>: trainers, refit and (as they land) evaluation and sweeps.</summary>
    public static ContinualCatalog Continual(this MLContext mlContext)
    {
        ArgumentNullException.ThrowIfNull(mlContext);
        return new ContinualCatalog(mlContext);
    }
}

/// <summary>The continual-learning catalog, like <c>mlContext.Auto()</c>: <see cref="Trainers"/> and <see cref="Refit(ITransformer, IDataView, CancellationToken)"/>.</summary>
public sealed class ContinualCatalog
{
    private readonly MLContext _mlContext;

    internal ContinualCatalog(MLContext mlContext)
    {
        _mlContext = mlContext;
        Trainers = new ContinualTrainers(mlContext);
    }

    /// <summary>The continual trainers.</summary>
    public ContinualTrainers Trainers { get; }

    /// <summary>Starts a sweep over a trainer's options (λ, memory size, learning rate, ...), shaped like ML.NET AutoML:
    /// <c>CreateSweep().SetTrainer(...).SetTaskStream(...).SetObjective(...).SetMaxTrials(...).SetTuner(...).RunAsync()</c>.</summary>
    /// <example><code source="../../src/Samples/SweepSample.cs" /></example>
    public ContinualSweepBuilder CreateSweep() => new(_mlContext);

    /// <summary>
    /// Infers each column's role in <paramref name="data"/> (number, category, Boolean, date, free text, identifier to
    /// ignore) and builds the featurizing pipeline and <see cref="TabularBackbone"/> for a table; see <see cref="ContinualFeaturizer"/>.
    /// </summary>
    /// <example><code source="../../src/Samples/TabularSample.cs" /></example>
    public ContinualFeaturization Featurize(IDataView data, ContinualFeaturizerOptions options) => ContinualFeaturizer.Infer(_mlContext, data, options);


    /// <summary>
    /// Trains <paramref name="trainer"/> through <paramref name="stream"/>: fit on the first task, refit on each next one,
    /// evaluating every task's test set after each (and, by default, before the first). The result holds the metrics
    /// (R, ACC, BWT, FWT, forgetting), the model after each task and per-task time, throughput and peak memory.
    /// Progress goes to <c>mlContext.Log</c> and to <see cref="ContinualRunOptions.Progress"/>.
    /// </summary>
    /// <example><code source="../../src/Samples/EvaluationSample.cs" /></example>
    public ContinualExperimentResult Run(IEstimator<ITransformer> trainer, TaskStream stream, ContinualRunOptions? options = null, CancellationToken cancellationToken = default) =>
        ContinualExperiment.Run(_mlContext, trainer, stream, options ?? new ContinualRunOptions(), cancellationToken);

    /// <summary>
    /// The metrics of models a user trained: <paramref name="modelsAfterEachTask"/>[i] is the model after task i+1 of
    /// <paramref name="stream"/>. Row 0 of R comes from <paramref name="untrainedModel"/> when given, else it is NaN (and so is FWT).
    /// </summary>
    public ContinualMetrics Evaluate(IReadOnlyList<ITransformer> modelsAfterEachTask, TaskStream stream, ContinualScore score = ContinualScore.Accuracy, ITransformer? untrainedModel = null)
    {
        ArgumentNullException.ThrowIfNull(modelsAfterEachTask);
        ArgumentNullException.ThrowIfNull(stream);
        return ContinualExperiment.Evaluate(_mlContext, modelsAfterEachTask, stream, score, untrainedModel);
    }

    /// <summary>One model's score on one data set, as an entry of R is computed (accuracy by default); NaN when the model cannot
    /// score it (e.g. a task-incremental model without a head for the data's task id).</summary>
    public double Score(ITransformer model, IDataView data, string labelColumnName = "Label", ContinualScore score = ContinualScore.Accuracy)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        return ContinualEvaluator.Score(_mlContext, model, data, labelColumnName, score);
    }

    /// <summary>
    /// Loads a model saved with <c>mlContext.Model.Save</c> that ends in a continual model, as <c>mlContext.Model.Load</c>
    /// does, but safely for a file from elsewhere: before ML.NET reads anything, the zip's entry names, declared and actual
    /// sizes (against a budget: <see cref="ContinualLoadOptions"/>), every loader assembly and loader signature (ML.NET's
    /// and this library's only) and the schema entry are checked, so a hostile or damaged file can neither make the process
    /// load another assembly or create another class, nor fill the disk or memory, nor hang the loader. Every way a file can
    /// be bad is a <see cref="ContinualModelFormatException"/> naming the file and what was wrong; a missing file is a
    /// <see cref="FileNotFoundException"/>. Plain <c>mlContext.Model.Load</c> does none of these checks.
    /// </summary>
    public ITransformer LoadModel(string path, out DataViewSchema inputSchema) => LoadModel(path, out inputSchema, new ContinualLoadOptions());

    /// <summary>As <see cref="LoadModel(string, out DataViewSchema)"/>, with the given limits and allowlist.</summary>
    public ITransformer LoadModel(string path, out DataViewSchema inputSchema, ContinualLoadOptions options)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        ArgumentNullException.ThrowIfNull(options);
        if (!File.Exists(path)) throw new FileNotFoundException($"Model file '{path}' does not exist.", path);
        using var stream = File.OpenRead(path);
        return LoadModel(stream, out inputSchema, path, options);
    }

    /// <summary>As <see cref="LoadModel(string, out DataViewSchema)"/>, from a stream (one that cannot seek is first read into
    /// memory, at most <see cref="ContinualLoadOptions.MaxUncompressedBytes"/>, so that the same checks run).</summary>
    public ITransformer LoadModel(Stream stream, out DataViewSchema inputSchema) => LoadModel(stream, out inputSchema, "the stream", new ContinualLoadOptions());

    /// <summary>As <see cref="LoadModel(Stream, out DataViewSchema)"/>, with the given limits and allowlist.</summary>
    public ITransformer LoadModel(Stream stream, out DataViewSchema inputSchema, ContinualLoadOptions options) => LoadModel(stream, out inputSchema, "the stream", options);

    private ITransformer LoadModel(Stream stream, out DataViewSchema inputSchema, string what, ContinualLoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        using var copy = stream.CanSeek ? null : CopyBounded(stream, options.MaxUncompressedBytes, what);
        Stream source = copy ?? stream;
        Internal.ModelFileCheck.Check(source, what, _mlContext, options);
        _mlContext.ComponentCatalog.RegisterAssembly(typeof(DatePartsFactory).Assembly); // the featurizer's date-parts mapping
        ITransformer model;
        try
        {
            model = _mlContext.Model.Load(source, out inputSchema);
        }
        catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException)
        {
            // ML.NET calls the loader through reflection: the reason is inside TargetInvocationException (and its own wrappers).
            Exception cause = e;
            while (cause is not ContinualModelFormatException && cause.InnerException is { } inner) cause = inner;
            if (cause is ContinualModelFormatException format) throw new ContinualModelFormatException($"{what}: {format.Message}", format);
            throw new ContinualModelFormatException($"{what} is not a readable ML.NET model zip ({cause.GetType().Name}: {cause.Message}).", e);
        }
        if (FindContinuable(model) is null)
            throw new ContinualModelFormatException($"{what} holds an ML.NET model ({model.GetType().Name}) that does not end in a continual model.");
        // A damaged entry of one of ML.NET's own transforms (a column name in a featurizer, say) can load and fail only when
        // the model is first used: the chain must apply to the input columns it was saved with.
        try { model.GetOutputSchema(inputSchema); }
        catch (Exception e) when (e is not OperationCanceledException and not OutOfMemoryException and not ContinualModelFormatException)
        {
            throw new ContinualModelFormatException($"{what} holds a model whose transforms do not apply to its own input columns ({e.GetType().Name}: {e.Message}).", e);
        }
        return model;
    }

    private static MemoryStream CopyBounded(Stream stream, long limit, string what)
    {
        var copy = new MemoryStream();
        var buffer = new byte[81920];
        int read;
        while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
        {
            if (copy.Length + read > limit) throw new ContinualModelFormatException($"{what} is longer than the {limit:N0} bytes allowed (ContinualLoadOptions.MaxUncompressedBytes).");
            copy.Write(buffer, 0, read);
        }
        copy.Position = 0;
        return copy;
    }

    /// <summary>The continual model at the end of <paramref name="model"/> (itself, or the last of a possibly nested chain), or null.</summary>
    public static ContinualTransformer? FindContinual(ITransformer model) => model switch
    {
        ContinualTransformer c => c,
        IEnumerable<ITransformer> chain when chain.LastOrDefault() is { } last => FindContinual(last),
        _ => null,
    };

    /// <summary>The continual model (a network or boosted trees) at the end of <paramref name="model"/>, or null.</summary>
    public static IContinualModel? FindContinualModel(ITransformer model) => FindContinuable(model);

    internal static IContinuableModel? FindContinuable(ITransformer model) => model switch
    {
        IContinuableModel c => c,
        IEnumerable<ITransformer> chain when chain.LastOrDefault() is { } last => FindContinuable(last),
        _ => null,
    };

    /// <summary>
    /// Whether the features of <paramref name="data"/> come from another distribution than the rows <paramref name="model"/>
    /// was last fitted on: the rows run through the model's earlier transformers (e.g. its featurizer) and are compared, as
    /// the network sees them, with the sample of its latest fit the model keeps (<see cref="ContinualTrainerOptions.ShiftReferenceRows"/>,
    /// stored in its zip). Two tests decide, each with a permutation p-value valid at any sample size: MMD on the features,
    /// and, for a classifier, a test on the model's predicted classes for both samples (their shares), which
    /// finds a change of the classes' prior that barely moves the features; the smaller p-value, doubled (Bonferroni),
    /// is the decision's. A per-feature Kolmogorov–Smirnov test with Holm's correction says where (<see cref="ShiftReport"/>).
    /// The label is not needed. Use it to decide whether a refit job should run, or to be warned that a model is scoring
    /// data unlike its training data.
    /// </summary>
    /// <remarks>Two-sample MMD test: Gretton et al. (2012), "A Kernel Two-Sample Test", JMLR 13, eq. 5 (see <c>ShiftTest</c>);
    /// the outputs' test is black-box shift detection (Lipton et al. 2018; Rabanser et al. 2019, see <see cref="PredictionShift"/>).
    /// A model that predicts per task (a task-id column) is tested on its features only (its reference rows keep no task
    /// ids), and so is a regression model (its predictions fit the training targets it kept the rows of).</remarks>
    /// <exception cref="InvalidOperationException">The model keeps no reference sample (fitted with <c>ShiftReferenceRows</c> 0, or saved before it existed: refit it once).</exception>
    /// <example><code source="../../src/Samples/DriftSample.cs" /></example>
    public ShiftReport DetectShift(ITransformer model, IDataView data, ShiftDetectionOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(data);
        options ??= new ShiftDetectionOptions();
        var source = InputOfContinual(model, ref data);
        if (source is not var (kept, column, featureSize, outputs))
            throw FindContinuable(model) is { } other
                ? new NotSupportedException($"Shift detection compares with the rows a network or boosted-trees model keeps; this model ({other.GetType().Name}) keeps none. Compare two data views with DetectShift(reference, data) instead.")
                : new ArgumentException($"The model ({model.GetType().Name}) does not end in a continual model.", nameof(model));
        options.Validate(withModel: outputs is not null); // a classifier's decision doubles the smaller p-value
        var reference = kept ?? throw new InvalidOperationException(
            "The model keeps no sample of its training rows to compare with: it was fitted with ShiftReferenceRows 0, or saved by a version without shift detection (refit it once to keep one).");
        var current = FeatureSampler.Read(data, column, featureSize, options.MaxRows, options.Seed);
        return Compare(reference, current, FeatureSampler.FeatureNames(data.Schema[column], featureSize), options, outputs);
    }

    /// <summary>
    /// As <see cref="DetectShift(ITransformer, IDataView, ShiftDetectionOptions?)"/>, comparing two data views' feature
    /// columns (<see cref="ShiftDetectionOptions.FeatureColumnName"/>) directly: e.g. last month's rows with this month's.
    /// Each view is sampled to at most <see cref="ShiftDetectionOptions.MaxRows"/> rows.
    /// </summary>
    public ShiftReport DetectShift(IDataView reference, IDataView data, ShiftDetectionOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(reference);
        ArgumentNullException.ThrowIfNull(data);
        options ??= new ShiftDetectionOptions();
        options.Validate();
        string column = options.FeatureColumnName;
        var before = FeatureSampler.Read(reference, column, null, options.MaxRows, unchecked(options.Seed + 1));
        var current = FeatureSampler.Read(data, column, before.FeatureSize, options.MaxRows, options.Seed);
        return Compare(before, current, FeatureSampler.FeatureNames(data.Schema[column], before.FeatureSize), options);
    }

    /// <summary>The feature test, and with a model's outputs the test on them too, in one report.</summary>
    internal static ShiftReport Compare(ShiftReference reference, ShiftReference current, string[] names, ShiftDetectionOptions options, ModelOutputs? outputs = null)
    {
        var result = ShiftTest.Run(reference, current, names, options);
        var predictions = outputs is var (scorer, kind, classes)
            ? PredictionShiftTest.Run(scorer, kind, classes, reference, current, options.Permutations, unchecked(options.Seed * 1_000_003 + 11))
            : null;
        return new ShiftReport(result.PValue, predictions, options.Alpha, result.Mmd, reference.Count, current.Count,
            options.Permutations, result.FeaturesCompared, result.ShiftedFeatures.Count, result.ShiftedFeatures.Take(options.MaxFeaturesReported).ToList());
    }

    /// <summary>What the test on a model's outputs needs: its scorer, what it predicts, its classes' names.</summary>
    internal readonly record struct ModelOutputs(IBlockScorer Scorer, ContinualPredictionKind Kind, IReadOnlyList<string> Classes);

    /// <summary>The shift reference, feature column and width of the continual model (network or boosted trees) at the end of
    /// <paramref name="model"/>, with <paramref name="data"/> run through the transformers before it, and its outputs (null
    /// for a model that predicts per task, whose reference keeps no task ids, and for regression); null when it ends in none.</summary>
    private static (ShiftReference? Reference, string FeatureColumn, int FeatureSize, ModelOutputs? Outputs)? InputOfContinual(ITransformer model, ref IDataView data)
    {
        if (model is ContinualTransformer continual)
            return (continual.State.ShiftReference, continual.State.Options.FeatureColumnName, continual.FeatureSize,
                continual.TaskIdColumnName is null && continual.PredictionKind != ContinualPredictionKind.Regression
                    ? new ModelOutputs(continual.Scorer, continual.PredictionKind, continual.Classes) : null);
        if (model is Trees.ContinualLightGbmTransformer trees)
            return (trees.State.ShiftReference, trees.State.Options.FeatureColumnName, trees.FeatureSize,
                trees.PredictionKind != ContinualPredictionKind.Regression ? new ModelOutputs(trees.Scorer, trees.PredictionKind, []) : null);
        if (model is not IEnumerable<ITransformer> chain) return null;
        var parts = chain.ToList();
        if (parts.Count == 0) return null;
        for (int i = 0; i < parts.Count - 1; i++) data = parts[i].Transform(data);
        return InputOfContinual(parts[^1], ref data);
    }

    /// <summary>
    /// Continues a model on the next task with the options and strategy state stored in it. <paramref name="model"/>
    /// is a <see cref="ContinualTransformer"/> or a chain ending in one (e.g. what <c>ml.Model.Load</c> returns):
    /// the task runs through the chain's earlier transformers (as fitted before, e.g. a normaliser keeps its first
    /// task's ranges), the continual model trains on the result, and a new chain with the same earlier transformers
    /// and the new continual model is returned. <paramref name="model"/> and its file are never changed; if training
    /// fails or is cancelled, it stays as it was.
    /// </summary>
    public ITransformer Refit(ITransformer model, IDataView task, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(task);
        return RefitCore(model, task, null, cancellationToken)
            ?? throw new ArgumentException($"The model ({model.GetType().Name}) does not end in a continual model; Refit continues models made by mlContext.Continual().Trainers.", nameof(model));
    }

    /// <summary>As <see cref="Refit(ITransformer, IDataView, CancellationToken)"/>, with checkpoints within the task and progress
    /// reports as <paramref name="fitOptions"/> says.</summary>
    public ITransformer Refit(ITransformer model, IDataView task, ContinualFitOptions fitOptions, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(task);
        ArgumentNullException.ThrowIfNull(fitOptions);
        return RefitCore(model, task, fitOptions, cancellationToken)
            ?? throw new ArgumentException($"The model ({model.GetType().Name}) does not end in a continual model; Refit continues models made by mlContext.Continual().Trainers.", nameof(model));
    }

    private static ITransformer? RefitCore(ITransformer model, IDataView task, ContinualFitOptions? fitOptions, CancellationToken cancellation)
    {
        if (model is IContinuableModel continual) return continual.Continue(task, fitOptions, cancellation);
        if (model is not IEnumerable<ITransformer> chain) return null;
        var parts = chain.ToList();
        if (parts.Count == 0) return null;
        IDataView data = task;
        for (int i = 0; i < parts.Count - 1; i++) data = parts[i].Transform(data);
        ITransformer? last = RefitCore(parts[^1], data, fitOptions, cancellation);
        if (last is null) return null;
        var result = new TransformerChain<ITransformer>();
        foreach (var part in parts.Take(parts.Count - 1)) result = result.Append(part);
        return result.Append(last);
    }
}

/// <summary>The continual trainers: <c>mlContext.Continual().Trainers</c>.</summary>
public sealed class ContinualTrainers
{
    private readonly MLContext _mlContext;

    internal ContinualTrainers(MLContext mlContext) => _mlContext = mlContext;

    /// <summary>Fine-tuning: plain training on each new task, the baseline every method is compared with.</summary>
    /// <example><code source="../../src/Samples/FineTuneSample.cs" /></example>
    public FineTuneTrainer FineTune(FineTuneTrainer.Options? options = null) => new(_mlContext, options ?? new FineTuneTrainer.Options());

    /// <summary>The joint (multi-task) upper bound: retrains from scratch on every task seen so far.</summary>
    public JointTrainer Joint(JointTrainer.Options? options = null) => new(_mlContext, options ?? new JointTrainer.Options());

    /// <summary>One model per task, routed by the task id: no forgetting, no transfer.</summary>
    public IndependentTrainer Independent(IndependentTrainer.Options? options = null) => new(_mlContext, options ?? new IndependentTrainer.Options());

    /// <summary>L2 regularization towards the previous task's parameters (b = 1).</summary>
    public L2Trainer L2(L2Trainer.Options? options = null) => new(_mlContext, options ?? new L2Trainer.Options());

    /// <summary>Elastic weight consolidation, separate or online (Kirkpatrick et al. 2017; Schwarz et al. 2018).</summary>
    /// <example><code source="../../src/Samples/RegularizationSample.cs" /></example>
    public EwcTrainer Ewc(EwcTrainer.Options? options = null) => new(_mlContext, options ?? new EwcTrainer.Options());

    /// <summary>Synaptic intelligence (Zenke et al. 2017).</summary>
    public SiTrainer Si(SiTrainer.Options? options = null) => new(_mlContext, options ?? new SiTrainer.Options());

    /// <summary>Memory aware synapses (Aljundi et al. 2018).</summary>
    public MasTrainer Mas(MasTrainer.Options? options = null) => new(_mlContext, options ?? new MasTrainer.Options());

    /// <summary>Riemannian walk (Chaudhry et al. 2018).</summary>
    public RWalkTrainer RWalk(RWalkTrainer.Options? options = null) => new(_mlContext, options ?? new RWalkTrainer.Options());

    /// <summary>Sliced Cramér preservation (Kolouri et al. 2020).</summary>
    public ScpTrainer Scp(ScpTrainer.Options? options = null) => new(_mlContext, options ?? new ScpTrainer.Options());

    /// <summary>PackNet (Mallya and Lazebnik 2018): each task prunes and keeps a share of the trunk's weights; task-incremental, BWT = 0.</summary>
    /// <example><code source="../../src/Samples/ArchitectureSample.cs" /></example>
    public PackNetTrainer PackNet(PackNetTrainer.Options? options = null) => new(_mlContext, options ?? new PackNetTrainer.Options());

    /// <summary>CPG (Hung et al. 2019): picks earlier tasks' weights, grows the layers when needed, compacts each task; task-incremental, BWT = 0.</summary>
    /// <example><code source="../../src/Samples/ArchitectureSample.cs" /></example>
    public CpgTrainer Cpg(CpgTrainer.Options? options = null) => new(_mlContext, options ?? new CpgTrainer.Options());

    /// <summary>Progressive neural networks (Rusu et al. 2016): a new column per task with lateral connections; task-incremental, BWT = 0.</summary>
    /// <example><code source="../../src/Samples/ArchitectureSample.cs" /></example>
    public ProgressiveNetworksTrainer ProgressiveNetworks(ProgressiveNetworksTrainer.Options? options = null) => new(_mlContext, options ?? new ProgressiveNetworksTrainer.Options());

    /// <summary>Gradient episodic memory (Lopez-Paz and Ranzato 2017): no step may increase any past task's memory loss.</summary>
    /// <example><code source="../../src/Samples/GemSample.cs" /></example>
    public GemTrainer Gem(GemTrainer.Options? options = null) => new(_mlContext, options ?? new GemTrainer.Options());

    /// <summary>Averaged GEM (Chaudhry et al. 2019): one constraint on a reference gradient from the memory.</summary>
    /// <example><code source="../../src/Samples/GemSample.cs" /></example>
    public AGemTrainer AGem(AGemTrainer.Options? options = null) => new(_mlContext, options ?? new AGemTrainer.Options());

    /// <summary>Experience replay with a fixed-budget memory (reservoir, class- or task-balanced; random or herding), optionally with a regularizer.</summary>
    /// <example><code source="../../src/Samples/ReplaySample.cs" /></example>
    public ReplayTrainer Replay(ReplayTrainer.Options? options = null) => new(_mlContext, options ?? new ReplayTrainer.Options());

    /// <summary>Generative replay (Shin et al. 2017; van de Ven and Tolias): a VAE regenerates earlier tasks' inputs, so no rows are kept.</summary>
    /// <example><code source="../../src/Samples/ReplaySample.cs" /></example>
    public GenerativeReplayTrainer GenerativeReplay(GenerativeReplayTrainer.Options? options = null) => new(_mlContext, options ?? new GenerativeReplayTrainer.Options());

    /// <summary>DER, dark experience replay (Buzzega et al. 2020): a reservoir of inputs and the logits they got, matched again at every step.</summary>
    /// <example><code source="../../src/Samples/OnlineReplaySample.cs" /></example>
    public DerTrainer Der(DerTrainer.Options? options = null) => new(_mlContext, options ?? new DerTrainer.Options());

    /// <summary>DER++ (Buzzega et al. 2020): DER plus a cross-entropy on stored labels.</summary>
    /// <example><code source="../../src/Samples/OnlineReplaySample.cs" /></example>
    public DerPlusPlusTrainer DerPlusPlus(DerPlusPlusTrainer.Options? options = null) => new(_mlContext, options ?? new DerPlusPlusTrainer.Options());

    /// <summary>ER: experience replay with a reservoir memory updated at every step (<see cref="ErTrainer"/>), for streams without task boundaries.</summary>
    /// <example><code source="../../src/Samples/TaskFreeSample.cs" /></example>
    public ErTrainer Er(ErTrainer.Options? options = null) => new(_mlContext, options ?? new ErTrainer.Options());

    /// <summary>ER-ACE (Caccia et al. 2022): replay with an asymmetric cross-entropy on the incoming batch.</summary>
    /// <example><code source="../../src/Samples/OnlineReplaySample.cs" /></example>
    public ErAceTrainer ErAce(ErAceTrainer.Options? options = null) => new(_mlContext, options ?? new ErAceTrainer.Options());

    /// <summary>MIR (Aljundi et al. 2019): replays the memories a virtual step would hurt most.</summary>
    /// <example><code source="../../src/Samples/OnlineReplaySample.cs" /></example>
    public MirTrainer Mir(MirTrainer.Options? options = null) => new(_mlContext, options ?? new MirTrainer.Options());

    /// <summary>GDumb (Prabhu et al. 2020): a class-balanced memory and a network trained from scratch on it at each task.</summary>
    /// <example><code source="../../src/Samples/OnlineReplaySample.cs" /></example>
    public GDumbTrainer GDumb(GDumbTrainer.Options? options = null) => new(_mlContext, options ?? new GDumbTrainer.Options());

    /// <summary>Learning without forgetting (Li and Hoiem 2017): the previous model's outputs distilled on the new rows; no rows kept.</summary>
    /// <example><code source="../../src/Samples/DistillationSample.cs" /></example>
    public LwfTrainer Lwf(LwfTrainer.Options? options = null) => new(_mlContext, options ?? new LwfTrainer.Options());

    /// <summary>iCaRL (Rebuffi et al. 2017): herding exemplars, distillation and nearest-mean-of-exemplars prediction; class-incremental.</summary>
    /// <example><code source="../../src/Samples/DistillationSample.cs" /></example>
    public IcarlTrainer Icarl(IcarlTrainer.Options? options = null) => new(_mlContext, options ?? new IcarlTrainer.Options());

    /// <summary>BiC (Wu et al. 2019): replay and distillation, then a bias correction of the new classes' logits; class-incremental.</summary>
    /// <example><code source="../../src/Samples/DistillationSample.cs" /></example>
    public BicTrainer Bic(BicTrainer.Options? options = null) => new(_mlContext, options ?? new BicTrainer.Options());

    /// <summary>Gradient-boosted trees that continue: each task adds rounds to the earlier trees, fitted on the task with a
    /// replayed sample of the earlier ones (binary classification and regression; see <see cref="Trees.ContinualLightGbmTrainer"/>).</summary>
    public Trees.ContinualLightGbmTrainer LightGbm(Trees.ContinualLightGbmTrainer.Options? options = null) => new(_mlContext, options ?? new Trees.ContinualLightGbmTrainer.Options());

    /// <summary>The boosted-trees trainer from options as name/value text (as the <c>continual</c> tool's <c>--set</c> gives them),
    /// over the defaults, or over what <paramref name="featurization"/> sets when one is given. An unknown name or a bad
    /// value is an <see cref="ArgumentException"/> naming it.</summary>
    public Trees.ContinualLightGbmTrainer LightGbm(IEnumerable<KeyValuePair<string, string>> options, ContinualFeaturization? featurization = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var parsed = new Trees.ContinualLightGbmTrainer.Options();
        if (featurization is not null) featurization.Configure(parsed);
        Settings.FromUserPairs(parsed, options, "the LightGbm trainer"); // as Create does for the network trainers
        return new(_mlContext, parsed);
    }

    /// <summary>The names of every trainer, for <see cref="Create(string, IEnumerable{KeyValuePair{string, string}})"/> (e.g. "FineTune", "Ewc", "Replay").</summary>
    public static IReadOnlyList<string> Names => TrainerRegistry.Names;

    /// <summary>
    /// A trainer chosen by name (any case) with options given as name=value text, e.g. from a command line or a
    /// configuration file: <c>Create("ewc", new Dictionary&lt;string, string&gt; { ["Lambda"] = "1000", ["HiddenLayerSizes"] = "100,100" })</c>.
    /// An unknown trainer or option name, or a value of the wrong type or out of range, is an <see cref="ArgumentException"/> saying what is valid.
    /// </summary>
    /// <example><code source="../../src/Samples/ProductionSample.cs" /></example>
    public ContinualTrainer Create(string trainerName, IEnumerable<KeyValuePair<string, string>>? options = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(trainerName);
        var entry = TrainerRegistry.Find(trainerName.Replace("-", "").Replace("_", ""))
            ?? throw new ArgumentException($"Unknown trainer '{trainerName}'. Trainers: {string.Join(", ", TrainerRegistry.Names)}.", nameof(trainerName));
        return entry.CreateTrainer(_mlContext, entry.ParseUserOptions(options ?? []));
    }

    /// <summary>
    /// A trainer chosen by name for a table featurized by <see cref="ContinualCatalog.Featurize"/>: the trainer's defaults, then
    /// <paramref name="featurization"/>'s (<see cref="ContinualFeaturization.Configure{TOptions}(TOptions)"/>: label, features,
    /// <see cref="TabularBackbone"/>, tabular learning rate, batch, epochs, early stopping), then <paramref name="options"/> on
    /// top, so that what a user sets always wins. The command-line tool's <c>train</c> builds its trainer this way.
    /// </summary>
    /// <example><code source="../../src/Samples/TabularSample.cs" /></example>
    public ContinualTrainer Create(string trainerName, IEnumerable<KeyValuePair<string, string>>? options, ContinualFeaturization featurization)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(trainerName);
        ArgumentNullException.ThrowIfNull(featurization);
        var entry = TrainerRegistry.Find(trainerName.Replace("-", "").Replace("_", ""))
            ?? throw new ArgumentException($"Unknown trainer '{trainerName}'. Trainers: {string.Join(", ", TrainerRegistry.Names)}.", nameof(trainerName));
        var configured = featurization.Configure(entry.CreateDefaultOptions());
        Settings.FromUserPairs(configured, options ?? [], "this trainer");
        configured.Validate();
        return entry.CreateTrainer(_mlContext, configured);
    }

    /// <summary>
    /// A trainer of the shared <paramref name="options"/> and the ordered <paramref name="plugins"/>, e.g.
    /// <c>Compose(options, new ReplayPlugin { MemorySize = 500 }, new EwcPlugin { Mode = EwcMode.Online }, new MyDistillation())</c>:
    /// any combination runs on the one training loop, each hook in list order, and each plugin's settings and state are saved
    /// in the model under its registered name. Only the plugins' settings are taken (each fit gets fresh instances); a plugin
    /// type of your own must be registered first (<see cref="ContinualPlugins.Register{TPlugin}(string)"/>). At most one
    /// plugin of the architecture family may be in the list.
    /// </summary>
    /// <example><code source="../../src/Samples/DistillationPluginSample.cs" /></example>
    public ComposedTrainer Compose(ComposedTrainer.Options? options, params ContinualPlugin[] plugins)
    {
        ArgumentNullException.ThrowIfNull(plugins);
        return new(_mlContext, options ?? new ComposedTrainer.Options(), plugins);
    }

    /// <summary>Fine-tuning with the common options given directly.</summary>
    public FineTuneTrainer FineTune(string labelColumnName, string featureColumnName = "Features", int numberOfEpochs = 5) =>
        FineTune(new FineTuneTrainer.Options { LabelColumnName = labelColumnName, FeatureColumnName = featureColumnName, NumberOfEpochs = numberOfEpochs });
}
