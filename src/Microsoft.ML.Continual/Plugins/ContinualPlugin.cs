using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// One continual-learning method, or one part of one: a small class that overrides some of the hooks of the one training
/// loop every trainer runs, and owns its state. A trainer is the shared options plus an ordered list of plugins
/// (<see cref="ContinualTrainers.Compose"/>); every built-in trainer is such a list (<see cref="EwcTrainer"/> is
/// <c>[EwcPlugin]</c>, <see cref="ReplayTrainer"/> with a regularizer is <c>[ReplayPlugin, EwcPlugin]</c>,
/// <see cref="FineTuneTrainer"/> is the empty list). Each hook runs over the plugins in list order.
/// </summary>
/// <remarks>
/// <para>Writing one (docs/plugins.md walks through <c>src/Samples/DistillationPluginSample.cs</c>):</para>
/// <list type="bullet">
/// <item><description>Settings are the plugin's public properties with a getter and a setter, of type <see cref="bool"/>, <see cref="int"/>,
/// <see cref="long"/>, <see cref="float"/>, <see cref="double"/>, <see cref="string"/>, an enum, <c>int[]</c> or a nullable of
/// these. They are saved in the model by name and set again on the instance the registry makes when the model is loaded
/// or refit, so a plugin needs a public parameterless constructor.</description></item>
/// <item><description>State (anchors, importances, memories) goes through <see cref="SaveState"/> and <see cref="LoadState"/>, a
/// store of named tensors and scalars that the model zip keeps under the plugin's name. The loop always trains a copy made
/// through that store, so a failed or cancelled fit leaves the previous model's plugins untouched.</description></item>
/// <item><description>A plugin type is registered under a name (<see cref="ContinualPlugins.Register{TPlugin}(string)"/>) before
/// a model using it is fitted or loaded; loading a model that names an unregistered plugin fails with a
/// <see cref="ContinualModelFormatException"/> naming it.</description></item>
/// </list>
/// <para>The hooks, in the order they run for one task (see docs/architecture.md): <see cref="AttachTo"/>, <see cref="BeforeTask"/>,
/// then per epoch <see cref="EpochCount"/>, <see cref="BeforeEpoch"/>, per minibatch <see cref="ExtraBatches"/>,
/// <see cref="BeforeBackward"/>, <see cref="AfterBackward"/>, <see cref="AfterStep"/>, then <see cref="AfterEpoch"/>; after the
/// last epoch <see cref="AfterTask"/>. With boundaries inside a fit, <see cref="AtBoundary"/> every so many steps. At
/// prediction time, <see cref="ScoringOutputs"/>.</para>
/// </remarks>
public abstract class ContinualPlugin
{
    /// <summary>The name the plugin is registered under (stored in models), e.g. <c>"Ewc"</c>.</summary>
    public string Name => ContinualPlugins.NameOf(GetType());

    /// <summary>Called whenever the network this plugin trains is made: grown for a task (before <see cref="BeforeTask"/>),
    /// loaded from a file (after <see cref="LoadState"/>) or replaced during a task
    /// (<see cref="ContinualTrainingContext.ReplaceNetwork"/>). A plugin whose state changes the forward pass attaches it here.</summary>
    /// <param name="network">The network.</param>
    public virtual void AttachTo(ContinualNetwork network) { }

    /// <summary>Called once per task, after the network has grown for the task's classes and task ids and before the
    /// optimizer is made: snapshot anchors, allocate buffers; may replace <see cref="ContinualTrainingContext.Task"/>.</summary>
    /// <param name="context">The fit.</param>
    public virtual void BeforeTask(ContinualTrainingContext context) { }

    /// <summary>How many epochs the task runs; the largest answer of all plugins wins. Default: the options'
    /// <see cref="ContinualTrainerOptions.NumberOfEpochs"/>. Read before every epoch, so a method may add phases.</summary>
    /// <param name="context">The fit.</param>
    public virtual int EpochCount(ContinualTrainingContext context) => context.Options.NumberOfEpochs;

    /// <summary>Called before each epoch (<see cref="ContinualTrainingContext.Epoch"/> is set).</summary>
    /// <param name="context">The fit.</param>
    public virtual void BeforeEpoch(ContinualTrainingContext context) { }

    /// <summary>Parameters outside the network that the optimizer trains too (e.g. learned masks). Read whenever the optimizer is made.</summary>
    /// <param name="context">The fit.</param>
    public virtual IEnumerable<Parameter> ExtraParameters(ContinualTrainingContext context) => [];

    /// <summary>Extra batches to train on with the task's minibatch (replay). The loop computes each one's outputs (see
    /// <see cref="ContinualStep.ExtraBatches"/>) and, unless its <see cref="ContinualBatch.Weight"/> is 0, adds its loss times the weight.</summary>
    /// <param name="context">The fit.</param>
    /// <param name="taskBatch">The task's minibatch of this step.</param>
    public virtual IEnumerable<ContinualBatch> ExtraBatches(ContinualTrainingContext context, ContinualBatch taskBatch) => [];

    /// <summary>Called after the forward passes and before backward: the step's outputs for the task batch and every extra
    /// batch, and its loss, which the plugin may add terms to or whose task term it may replace (<see cref="ContinualStep"/>).</summary>
    /// <param name="context">The fit.</param>
    /// <param name="step">The step's batches, outputs and loss terms.</param>
    public virtual void BeforeBackward(ContinualTrainingContext context, ContinualStep step) { }

    /// <summary>After backward (and, when several processes train, after their gradients are summed), before the optimizer
    /// step: the gradients may be read or changed (projections, masks, analytic penalty gradients).</summary>
    /// <param name="context">The fit.</param>
    public virtual void AfterBackward(ContinualTrainingContext context) { }

    /// <summary>After the optimizer step: the parameters' change may be read or undone (path integrals, frozen weights).</summary>
    /// <param name="context">The fit.</param>
    public virtual void AfterStep(ContinualTrainingContext context) { }

    /// <summary>After each epoch, with its mean task loss.</summary>
    /// <param name="context">The fit.</param>
    /// <param name="meanTaskLoss">The epoch's mean task loss over its rows.</param>
    public virtual void AfterEpoch(ContinualTrainingContext context, double meanTaskLoss) { }

    /// <summary>After the last epoch, with the network in evaluation mode: consolidation (importances, memories, pruning).</summary>
    /// <param name="context">The fit.</param>
    public virtual void AfterTask(ContinualTrainingContext context) { }

    /// <summary>Null when the plugin can consolidate at boundaries the loop places inside a fit
    /// (<see cref="ContinualTrainerOptions.Boundaries"/> = <see cref="ContinualBoundaries.EverySteps"/>,
    /// <see cref="ContinualBoundaries.OnLossPlateau"/> or <see cref="ContinualBoundaries.OnInputShift"/>), with state that
    /// does not grow with their number; otherwise why not, for the error that refuses such a fit. Default: not supported.</summary>
    public virtual string? WhyNotBoundariesInsideFit => "it consolidates once per fit (one fit is one task), and has no form for boundaries inside a fit";

    /// <summary>Null when the plugin can go on across fits as one pass over a stream
    /// (<see cref="ContinualTrainerOptions.ContinueAcrossFits"/>): everything it changes during a task besides its
    /// <see cref="SaveState"/> is written by <see cref="SaveTaskProgress"/> and read back by <see cref="LoadTaskProgress"/>
    /// after <see cref="BeforeTask"/> at the next fit, and a fit's end is not a consolidation to it. Otherwise why not, for
    /// the error that refuses such a fit. Default: supported exactly when <see cref="SupportsCheckpoints"/> is true.</summary>
    public virtual string? WhyNotContinuesAcrossFits => SupportsCheckpoints ? null
        : "it changes state during a task that SaveTaskProgress does not capture (SupportsCheckpoints is false)";

    /// <summary>At a boundary inside a fit (<see cref="ContinualBoundaries.EverySteps"/>, <see cref="ContinualBoundaries.OnLossPlateau"/>,
    /// <see cref="ContinualBoundaries.OnInputShift"/>; only for plugins whose
    /// <see cref="WhyNotBoundariesInsideFit"/> is null): the network is in evaluation mode and
    /// <see cref="ContinualTrainingContext.Task"/> holds a uniform sample of the rows trained on since the previous
    /// boundary. Default: <see cref="AfterTask"/> then <see cref="BeforeTask"/>, consolidating as at the end of a task and
    /// starting to track anew. The fit's optimizer and its state continue across the boundary (unless
    /// <see cref="ContinualTrainerOptions.BoundaryResetsOptimizer"/>). It runs in a dispose scope of its own, so every
    /// tensor the plugin keeps past it must be detached (<c>DetachFromDisposeScope</c>): its consolidated state, and also
    /// what <see cref="BeforeTask"/> allocates for the task (which a fit's start would otherwise keep alive until the fit
    /// ends); dispose what a consolidation replaces, since there is one per boundary.</summary>
    /// <param name="context">The fit.</param>
    public virtual void AtBoundary(ContinualTrainingContext context)
    {
        AfterTask(context);
        BeforeTask(context);
    }

    /// <summary>The outputs the model scores with (the transformer's <c>Score</c> and <c>PredictedLabel</c> come from them),
    /// given the network's logits for a block of rows: e.g. a nearest-mean-of-exemplars classifier (iCaRL) or a bias correction
    /// of the newest classes (BiC). Runs without gradients, in evaluation mode, for each plugin in order. Default: the logits.</summary>
    /// <param name="network">The model's network.</param>
    /// <param name="features">The rows' features.</param>
    /// <param name="heads">The rows' heads, or null.</param>
    /// <param name="logits">The network's logits (or the previous plugin's outputs).</param>
    public virtual Tensor ScoringOutputs(ContinualNetwork network, Tensor features, Tensor? heads, Tensor logits) => logits;

    /// <summary>Writes everything the plugin must carry to the next refit into <paramref name="state"/> (its own
    /// <see cref="ContinualState.Version"/> tells later versions how to read it).</summary>
    /// <param name="state">An empty store.</param>
    public virtual void SaveState(ContinualState state) { }

    /// <summary>Reads what <see cref="SaveState"/> wrote (possibly by an older version of the plugin: check <see cref="ContinualState.Version"/>).</summary>
    /// <param name="state">The store.</param>
    public virtual void LoadState(ContinualState state) { }

    /// <summary>False when the plugin accumulates state during a task that <see cref="SaveTaskProgress"/> does not capture;
    /// fits with <see cref="ContinualFitOptions.CheckpointPath"/> are then refused with a clear error. Default true.</summary>
    public virtual bool SupportsCheckpoints => true;

    /// <summary>Writes what changes during a task besides the network and the optimizer (e.g. a sampling generator's state), for a checkpoint.</summary>
    /// <param name="state">An empty store.</param>
    public virtual void SaveTaskProgress(ContinualState state) { }

    /// <summary>Reads what <see cref="SaveTaskProgress"/> wrote, after <see cref="BeforeTask"/> ran again on resume.</summary>
    /// <param name="state">The store.</param>
    public virtual void LoadTaskProgress(ContinualState state) { }

    /// <summary>At the end of a fit that continues a pass across fits (no <see cref="AfterTask"/>: the task goes on in the
    /// next fit), after its progress was saved: frees what the plugin allocated for the task (teachers, device batches),
    /// which the next fit makes again from its state and progress.</summary>
    internal virtual void ReleaseTaskResources() { }

    /// <summary>Human-readable sizes of the state, for inspection (e.g. <c>"memory rows" = 500</c>).</summary>
    public virtual IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>();

    /// <summary>Checks the settings; throws <see cref="ArgumentOutOfRangeException"/> naming the first one out of range.</summary>
    public virtual void Validate() { }

    // ---- for the built-in methods only ----

    /// <summary>How the network's trunks relate to its heads (the independent baseline: one trunk per head; progressive networks: columns).</summary>
    internal virtual NetworkColumns Columns => NetworkColumns.Shared;

    /// <summary>True for the architecture family: the network is divided among the tasks by state only this plugin
    /// understands, so a model made with it is continued only by the same plugin list.</summary>
    internal virtual bool AllocatesPerTask => false;

    /// <summary>True when the method widens the hidden layers itself (CPG).</summary>
    internal virtual bool GrowsHiddenLayers => false;

    /// <summary>How the capacity is divided among the tasks (architecture family), or null.</summary>
    internal virtual ContinualCapacity? Capacity(ContinualModelState state) => null;

    /// <summary>Takes a copy of <paramref name="previous"/>'s state (same plugin type) for a new fit; by default through the store.
    /// A plugin whose state is immutable once made may share it.</summary>
    internal virtual void CopyStateFrom(ContinualPlugin previous)
    {
        using var state = new ContinualState();
        previous.SaveState(state);
        LoadState(state);
    }

    /// <summary>Reads the state a model of the first format version (0x00010001) stored in its <c>Strategy.bin</c> entry.</summary>
    internal virtual void LoadLegacyState(BinaryReader reader, int formatVersion) { }
}
