using Microsoft.ML;
using Microsoft.ML.Continual;
using TorchSharp;
using static TorchSharp.torch;

namespace Samples;

/// <summary>
/// A method of your own, in one file: before each task the plugin keeps a frozen copy of the network (the teacher); at
/// every step it adds α · mean squared difference between the network's logits and the teacher's on the classes the
/// teacher knew, for the task's own rows. That is the core of "learning without forgetting" with logit matching, written
/// on the public plugin API: <see cref="ContinualPlugin.BeforeTask"/> to snapshot, <see cref="ContinualPlugin.BeforeBackward"/>
/// to read the step's outputs and add a loss term, settings as properties and a little state through the store.
/// </summary>
public sealed class LogitDistillationPlugin : ContinualPlugin
{
    private ContinualNetwork? _teacher;
    private int _teacherOutputs;
    private double _lossSum;
    private long _steps;

    /// <summary>α, the weight of the distillation term (a setting: saved in the model by name).</summary>
    public double Alpha { get; set; } = 1.0;

    /// <summary>Tasks this plugin distilled into (state: saved in the model through the store).</summary>
    public long TasksDistilled { get; private set; }

    /// <summary>The last task's mean distillation loss (state).</summary>
    public double LastMeanLoss { get; private set; }

    public override void Validate()
    {
        if (!(Alpha >= 0) || double.IsInfinity(Alpha)) throw new ArgumentOutOfRangeException(nameof(Alpha), "Alpha must be non-negative and finite.");
    }

    public override void BeforeTask(ContinualTrainingContext context)
    {
        _lossSum = 0;
        _steps = 0;
        if (context.TaskIndex == 0) return; // nothing learned yet
        _teacher = context.Network.Copy(context.Random); // frozen, in evaluation mode
        _teacherOutputs = _teacher.OutputSize;
    }

    public override void BeforeBackward(ContinualTrainingContext context, ContinualStep step)
    {
        if (_teacher is null || step.TaskOutputs is not Tensor student) return;
        Tensor teacher;
        using (no_grad()) teacher = _teacher.Forward(step.TaskBatch.Features, step.TaskBatch.Heads);
        // The outputs the teacher had (a class-incremental head grows): old logits first.
        Tensor distillation = nn.functional.mse_loss(student.narrow(1, 0, _teacherOutputs), teacher) * Alpha;
        _lossSum += distillation.item<float>();
        _steps++;
        step.AddLoss("logit distillation", distillation); // a mean over the task batch's rows
    }

    public override void AfterTask(ContinualTrainingContext context)
    {
        _teacher?.Dispose();
        _teacher = null;
        if (_steps == 0) return;
        TasksDistilled++;
        LastMeanLoss = _lossSum / _steps;
    }

    public override void SaveState(ContinualState state)
    {
        state.Version = 1;
        state.Set("tasks distilled", TasksDistilled);
        state.Set("last mean loss", LastMeanLoss);
    }

    public override void LoadState(ContinualState state)
    {
        TasksDistilled = state.GetInt64("tasks distilled");
        LastMeanLoss = state.GetDouble("last mean loss");
    }

    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long> { ["tasks distilled"] = TasksDistilled };
}

/// <summary>The plugin sample: register the method, compose it with replay, fit, save, load in a "later process", refit.</summary>
public static class DistillationPluginSample
{
    public static void Run(string workFolder)
    {
        // Once per process, before fitting or loading a model that uses it.
        ContinualPlugins.Register<LogitDistillationPlugin>("LogitDistillation");

        var ml = new MLContext(seed: 1);
        TaskStream stream = ml.Continual().Benchmarks.SplitMnist(ContinualScenario.ClassIncremental, trainSamplesPerTask: 2000, testSamplesPerTask: 500);
        var options = new ComposedTrainer.Options { HiddenLayerSizes = [100, 100], NumberOfEpochs = 2 };
        ContinualTrainer trainer = ml.Continual().Trainers.Compose(options,
            new ReplayPlugin { MemorySize = 200 }, new LogitDistillationPlugin { Alpha = 1.0 });
        ContinualTrainer replayAlone = ml.Continual().Trainers.Compose(options, new ReplayPlugin { MemorySize = 200 });

        ContinualExperimentResult withDistillation = ml.Continual().Run(trainer, stream);
        ContinualExperimentResult withoutIt = ml.Continual().Run(replayAlone, stream);
        Console.WriteLine(ContinualExperimentResult.ComparisonTable([withDistillation, withoutIt]));

        // The plugins and their state travel in the model zip; a refit continues with them.
        string path = Path.Combine(workFolder, "composed.zip");
        ml.Model.Save(withDistillation.Models[^2], stream[0].Train.Schema, path);
        var loaded = ml.Continual().LoadModel(path, out _);
        var continual = ContinualCatalog.FindContinual(loaded)!;
        Console.WriteLine($"Loaded plugins: {string.Join(", ", continual.PluginNames)}; state: "
            + string.Join(", ", continual.StateSizes.Select(kv => $"{kv.Key} {kv.Value}")));
        var next = ContinualCatalog.FindContinual(ml.Continual().Refit(loaded, stream[^1].Train))!;
        Console.WriteLine($"Refitted: {next.TasksSeen} tasks seen, tasks distilled {next.StateSizes["tasks distilled"]}.");
    }
}
