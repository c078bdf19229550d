using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>The learning-rate schedule within a task (<see cref="ContinualTrainerOptions.LearningRateSchedule"/>).</summary>
public enum LearningRateSchedule
{
    /// <summary>The options' learning rate at every epoch.</summary>
    Constant,
    /// <summary>Cosine decay over the task's epochs: lr_e = lr · ½ (1 + cos(π e / E)), e = 0 … E − 1 (Loshchilov and Hutter 2017, without restarts).</summary>
    Cosine,
}

/// <summary>
/// Early stopping on a validation slice of each task: before the task, <see cref="ValidationFraction"/> of its rows
/// (drawn with the task's seed) are held out; after each epoch their loss is computed, the best epoch's weights are
/// kept, and training stops when <see cref="Patience"/> epochs in a row did not improve it; the best weights are restored
/// before the other plugins consolidate (so place it first in a list). Added to every trainer by
/// <see cref="ContinualTrainerOptions.ValidationFraction"/> and <see cref="ContinualTrainerOptions.EarlyStoppingPatience"/>.
/// </summary>
public sealed class EarlyStoppingPlugin : ContinualPlugin
{
    /// <summary>Supported: it works per fit (its epochs), whatever happens at boundaries inside it.</summary>
    public override string? WhyNotBoundariesInsideFit => null;

    /// <summary>Not supported: it acts at each epoch's end, and a fit that continues a stream's pass is not an epoch of its own.</summary>
    public override string? WhyNotContinuesAcrossFits => "it acts at each epoch's end, and a fit that continues a stream's one pass has no epochs of its own (ValidationFraction = 0 turns it off; the tool sets it unless told)";

    /// <summary>Nothing to do at a boundary inside a fit.</summary>
    public override void AtBoundary(ContinualTrainingContext context) { }

    private ContinualTaskData? _validation;
    private List<Tensor>? _best;
    private double _bestLoss;
    private int _sinceBest;

    /// <summary>The share of each task's rows held out for validation, in (0, 0.5]. Default 0.1.</summary>
    public double ValidationFraction { get; set; } = 0.1;

    /// <summary>Epochs without improvement before training stops. Default 2.</summary>
    public int Patience { get; set; } = 2;

    /// <summary>The best epoch's validation loss in the last task (NaN before any).</summary>
    internal double BestLoss => _bestLoss;

    /// <inheritdoc/>
    public override void Validate()
    {
        if (!(ValidationFraction > 0 && ValidationFraction <= 0.5)) throw new ArgumentOutOfRangeException(nameof(ValidationFraction), "Option ValidationFraction must be in (0, 0.5].");
        if (Patience is < 1 or > 1000) throw new ArgumentOutOfRangeException(nameof(Patience), "Option EarlyStoppingPatience must be in [1, 1,000].");
    }

    /// <summary>Holds out the validation rows: the task trains on the rest.</summary>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        _bestLoss = double.NaN;
        _sinceBest = 0;
        _best = null;
        long count = context.Task.Count;
        long held = (long)Math.Round(count * ValidationFraction);
        if (context.IsStreaming || held < 1 || count - held < 1) { _validation = null; return; }
        using var generator = new Generator((ulong)(context.TaskSeed ^ 0x4553_5450), CPU);
        using var order = randperm(count, generator: generator, device: CPU).to(context.Device);
        using Tensor validationRows = order.narrow(0, 0, held), trainingRows = order.narrow(0, held, count - held).sort().Values;
        var task = context.Task;
        var validation = task.Select(validationRows);
        _validation = new ContinualTaskData(validation.Features.DetachFromDisposeScope(), validation.Targets.DetachFromDisposeScope(), validation.Heads?.DetachFromDisposeScope());
        var training = task.Select(trainingRows);
        context.Task = new ContinualTaskData(training.Features.DetachFromDisposeScope(), training.Targets.DetachFromDisposeScope(), training.Heads?.DetachFromDisposeScope());
    }

    /// <summary>The validation loss; keeps the weights of the best epoch and stops after <see cref="Patience"/> epochs without improvement.</summary>
    public override void AfterEpoch(ContinualTrainingContext context, double meanTaskLoss)
    {
        if (_validation is null) return;
        double loss = ValidationLoss(context, _validation);
        if (double.IsNaN(_bestLoss) || loss < _bestLoss)
        {
            _bestLoss = loss;
            _sinceBest = 0;
            DisposeBest();
            using var _ = no_grad();
            _best = context.Network.OrderedParameters().Select(p => p.Value.detach().clone().DetachFromDisposeScope()).ToList();
        }
        else if (++_sinceBest >= Patience)
        {
            context.Info($"Early stopping after epoch {context.Epoch + 1}: validation loss {loss:F4}, best {_bestLoss:F4}.");
            context.StopAfterThisEpoch();
        }
    }

    /// <summary>Restores the best epoch's weights.</summary>
    public override void AfterTask(ContinualTrainingContext context)
    {
        if (_best is not null)
        {
            using var _ = no_grad();
            var parameters = context.Network.OrderedParameters();
            if (parameters.Count == _best.Count)
                for (int i = 0; i < parameters.Count; i++)
                    if (parameters[i].Value.shape.SequenceEqual(_best[i].shape)) parameters[i].Value.copy_(_best[i]);
        }
        DisposeBest();
        _validation?.Dispose();
        _validation = null;
    }

    private static double ValidationLoss(ContinualTrainingContext context, ContinualTaskData validation)
    {
        var network = context.Network;
        network.eval();
        double sum = 0;
        using (no_grad())
            for (long start = 0; start < validation.Count; start += 4096)
            {
                using var scope = NewDisposeScope();
                long n = Math.Min(4096, validation.Count - start);
                var rows = new ContinualBatch(validation.Features.narrow(0, start, n), validation.Targets.narrow(0, start, n), validation.Heads?.narrow(0, start, n));
                sum += context.Loss(rows).item<float>() * n;
            }
        network.train();
        return sum / validation.Count;
    }

    private void DisposeBest()
    {
        if (_best is null) return;
        foreach (var t in _best) t.Dispose();
        _best = null;
    }

    /// <summary>The best epoch so far (its loss, its weights) and the epochs since: a resumed task stops where the
    /// uninterrupted one would and restores the same weights. The validation rows are drawn again from the task seed.</summary>
    public override void SaveTaskProgress(ContinualState state)
    {
        state.Set("best loss", _bestLoss);
        state.Set("epochs since best", (long)_sinceBest);
        state.Set("best weights", (long)(_best?.Count ?? 0));
        for (int i = 0; i < (_best?.Count ?? 0); i++) state.Set($"best/{i}", _best![i]);
    }

    /// <inheritdoc/>
    public override void LoadTaskProgress(ContinualState state)
    {
        _bestLoss = state.GetDouble("best loss");
        _sinceBest = state.GetInt32("epochs since best", 0, Patience);
        int count = state.GetInt32("best weights", 0, 1 << 16);
        DisposeBest();
        if (count == 0) return;
        _best = Enumerable.Range(0, count).Select(i => state.GetTensor($"best/{i}").DetachFromDisposeScope()).ToList();
    }
}

/// <summary>A learning-rate schedule within each task, set before every epoch on the optimizer's parameter groups.
/// Added to every trainer by <see cref="ContinualTrainerOptions.LearningRateSchedule"/>.</summary>
public sealed class LearningRateSchedulePlugin : ContinualPlugin
{
    /// <summary>Supported: it works per fit (its epochs), whatever happens at boundaries inside it.</summary>
    public override string? WhyNotBoundariesInsideFit => null;

    /// <summary>Supported: a pass continued across fits has one epoch (<see cref="ContinualTrainerOptions.ContinueAcrossFits"/>
    /// requires it), whose rate is the base rate at every fit, as in the one pass.</summary>
    public override string? WhyNotContinuesAcrossFits => null;

    /// <summary>Nothing to do at a boundary inside a fit.</summary>
    public override void AtBoundary(ContinualTrainingContext context) { }

    /// <summary>The schedule. Default <see cref="LearningRateSchedule.Cosine"/>.</summary>
    public LearningRateSchedule Schedule { get; set; } = LearningRateSchedule.Cosine;

    /// <inheritdoc/>
    public override void BeforeEpoch(ContinualTrainingContext context)
    {
        if (context.Optimizer is null || Schedule == LearningRateSchedule.Constant) return;
        int epochs = Math.Max(context.Options.NumberOfEpochs, 1);
        double rate = context.Options.LearningRate * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(context.Epoch, epochs) / epochs));
        foreach (var group in context.Optimizer.ParamGroups) group.LearningRate = rate;
    }
}
