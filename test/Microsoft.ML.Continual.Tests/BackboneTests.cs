using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual.Tests;

/// <summary>A user's own TorchSharp module as a backbone: one linear layer and a tanh, registered by name.</summary>
public sealed class TinyTanhBackbone : ContinualBackbone
{
    public const string RegisteredName = "Tests.TinyTanh";

    static TinyTanhBackbone() => ContinualBackbones.Register<TinyTanhBackbone>(RegisteredName);

    public static void EnsureRegistered() { }

    public int Width { get; set; } = 12;

    public override int OutputSize(int inputSize) => Width;

    public override nn.Module<Tensor, Tensor> CreateModule(ContinualBackboneContext context)
    {
        var module = nn.Sequential(("linear", nn.Linear(context.InputSize, Width)), ("tanh", nn.Tanh()), ("dropout", context.Dropout(0.1)));
        if (context.Random is not null) InitializeLikePyTorch(module, context.Random);
        return module;
    }
}

public class BackboneTests
{
    static BackboneTests() => TinyTanhBackbone.EnsureRegistered();

    [Fact]
    public void ConvBackbone_LearnsSplitMnist_WithEwc_AndContinuesAfterSaveAndLoad()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var stream = ml.Continual().Benchmarks.SplitMnist(ContinualScenario.TaskIncremental, numberOfTasks: 2, trainSamplesPerTask: 1000, testSamplesPerTask: 300);
        var trainer = ml.Continual().Trainers.Ewc(new EwcTrainer.Options
        {
            TaskIdColumnName = "TaskId", NumberOfEpochs = 2, Seed = 2, FisherSamples = 100,
            Backbone = new ConvBackbone { InputShape = [1, 28, 28], Channels = [8, 16], HiddenLayerSizes = [32] },
        });
        var result = ml.Continual().Run(trainer, stream, new ContinualRunOptions { EvaluateBeforeTraining = false });
        // Two classes per task, task ids given: far above chance (0.5) on both tasks after both.
        Assert.All(result.Metrics.AccuracyMatrix[^1], a => Assert.True(a > 0.9, $"{a:F4}"));
        var model = (ContinualTransformer)result.Models[^1];
        Assert.IsType<ConvBackbone>(model.Backbone);
        // conv 1→8 (72 + 8), conv 8→16 (1,152 + 16), dense 16·7·7→32 (25,088 + 32), two heads 32→10 (the label's ten keys; 2 × 330)
        Assert.Equal(72 + 8 + 1152 + 16 + 25088 + 32 + 2 * 330, model.ParameterCount);
        ml.Model.Save(model, stream[0].Train.Schema, temp.File("conv.zip"));
        var loaded = (ContinualTransformer)ml.Continual().LoadModel(temp.File("conv.zip"), out _);
        Assert.Equal(TestData.Bytes(TestData.Scores(model, stream[1].Test)), TestData.Bytes(TestData.Scores(loaded, stream[1].Test)));
        Assert.Equal([8, 16], ((ConvBackbone)loaded.Backbone!).Channels);
        var next = (ContinualTransformer)ml.Continual().Refit(loaded, stream[0].Train);
        Assert.Equal(3, next.TasksSeen);
    }

    [Fact]
    public void AUsersModule_IsABackbone_ItsParametersTravelInTheZip_AndTheSameSeedGivesTheSameModel()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var data = TestData.View(ml, 0, [0, 1, 2], 120, 1);
        FineTuneTrainer Trainer() => ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options { NumberOfEpochs = 2, BatchSize = 32, Seed = 4, Backbone = new TinyTanhBackbone { Width = 10 } });
        var model = Trainer().Fit(data);
        var again = Trainer().Fit(data);
        Assert.Equal(TestData.Bytes(TestData.Scores(model, data)), TestData.Bytes(TestData.Scores(again, data))); // dropout and init from the fit's generator
        Assert.Equal(6 * 10 + 10 + 10 * 3 + 3, model.ParameterCount);
        ml.Model.Save(model, data.Schema, temp.File("tiny.zip"));
        var loaded = (ContinualTransformer)ml.Continual().LoadModel(temp.File("tiny.zip"), out _);
        Assert.Equal(10, ((TinyTanhBackbone)loaded.Backbone!).Width);
        Assert.Equal(TestData.Bytes(TestData.Scores(model, data)), TestData.Bytes(TestData.Scores(loaded, data)));
        // A fresh process that has not registered the type names it.
        string message = Program.RunFreshForOutput("load-only", temp.File("tiny.zip"));
        Assert.True(message.Contains("backbone 'Tests.TinyTanh', which is not registered"), message);
    }

    [Fact]
    public void TheArchitectureFamily_RefusesAnotherBackbone_AndABadInputShapeIsNamed()
    {
        var ml = new MLContext(seed: 1);
        var data = TestData.View(ml, 0, [0, 1], 60, 1);
        var packNet = ml.Continual().Trainers.PackNet(new PackNetTrainer.Options { TaskIdColumnName = "Task", Backbone = new TinyTanhBackbone() });
        var refused = Assert.Throws<NotSupportedException>(() => packNet.Fit(data));
        Assert.Contains("does not support backbone 'Tests.TinyTanh'", refused.Message);
        var conv = ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options { Backbone = new ConvBackbone { InputShape = [1, 2, 2] } });
        var shape = Assert.Throws<ArgumentOutOfRangeException>(() => conv.Fit(data));
        Assert.Contains("holds 4 values; the rows have 6 features", shape.Message);
    }
}
