using Microsoft.ML;
using Microsoft.ML.Continual;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Samples;

/// <summary>
/// A network of your own under the heads the library manages: a residual perceptron (one wide layer, then blocks
/// h ← h + relu(W h)). Its settings are properties (saved in the model by name); its parameters travel in the zip.
/// </summary>
public sealed class ResidualMlpBackbone : ContinualBackbone
{
    /// <summary>Width of the hidden features.</summary>
    public int Width { get; set; } = 128;

    /// <summary>Residual blocks after the first layer.</summary>
    public int Blocks { get; set; } = 2;

    public override int OutputSize(int inputSize) => Width;

    public override void Validate(int inputSize)
    {
        if (Width < 1 || Blocks < 0) throw new ArgumentOutOfRangeException(nameof(Width), "Width must be positive and Blocks non-negative.");
    }

    public override nn.Module<Tensor, Tensor> CreateModule(ContinualBackboneContext context)
    {
        var module = new ResidualMlp(context.InputSize, Width, Blocks);
        // Parameters drawn from the fit's own generator: the same seed gives the same model, also in concurrent fits.
        if (context.Random is not null) InitializeLikePyTorch(module, context.Random);
        return module;
    }

    private sealed class ResidualMlp : nn.Module<Tensor, Tensor>
    {
        private readonly Linear input;
        private readonly ModuleList<Linear> blocks;

        public ResidualMlp(int inputSize, int width, int blockCount) : base(nameof(ResidualMlp))
        {
            input = nn.Linear(inputSize, width);
            blocks = nn.ModuleList(Enumerable.Range(0, blockCount).Select(_ => nn.Linear(width, width)).ToArray());
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            Tensor h = nn.functional.relu(input.call(x));
            foreach (var block in blocks) h = h + nn.functional.relu(block.call(h));
            return h.MoveToOuterDisposeScope();
        }
    }
}

/// <summary>The backbone sample: the built-in convolutional backbone and a registered one of your own, beside the default perceptron.</summary>
public static class BackboneSample
{
    public static void Run(string workFolder)
    {
        ContinualBackbones.Register<ResidualMlpBackbone>("ResidualMlp"); // once per process, before fitting or loading

        var ml = new MLContext(seed: 1);
        TaskStream stream = ml.Continual().Benchmarks.SplitMnist(ContinualScenario.TaskIncremental, trainSamplesPerTask: 2000, testSamplesPerTask: 500);
        EwcTrainer.Options Options(ContinualBackbone? backbone) => new()
        {
            TaskIdColumnName = "TaskId", NumberOfEpochs = 2, HiddenLayerSizes = [100, 100], Backbone = backbone,
        };
        var runs = new[]
        {
            ml.Continual().Run(ml.Continual().Trainers.Ewc(Options(null)), stream, new ContinualRunOptions { Name = "EWC, perceptron 100-100" }),
            ml.Continual().Run(ml.Continual().Trainers.Ewc(Options(new ConvBackbone { InputShape = [1, 28, 28] })), stream, new ContinualRunOptions { Name = "EWC, ConvBackbone" }),
            ml.Continual().Run(ml.Continual().Trainers.Ewc(Options(new ResidualMlpBackbone())), stream, new ContinualRunOptions { Name = "EWC, ResidualMlp (user's)" }),
        };
        Console.WriteLine(ContinualExperimentResult.ComparisonTable(runs));

        string path = Path.Combine(workFolder, "conv.zip");
        ml.Model.Save(runs[1].Models[^1], stream[0].Train.Schema, path);
        var loaded = ContinualCatalog.FindContinual(ml.Continual().LoadModel(path, out _))!;
        Console.WriteLine($"Loaded: backbone {loaded.Backbone?.Name}, {loaded.ParameterCount:N0} parameters, {loaded.TasksSeen} tasks.");
    }
}
