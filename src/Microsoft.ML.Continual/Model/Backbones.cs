using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// The part of a continual network under the heads the library manages (one head per task, heads that grow with new
/// classes): it maps a row's feature vector to the hidden features the heads read. The default
/// (<see cref="ContinualTrainerOptions.Backbone"/> null) is a multilayer perceptron of
/// <see cref="ContinualTrainerOptions.HiddenLayerSizes"/>; <see cref="ConvBackbone"/> is a small convolutional network for
/// image-shaped rows; a user's own TorchSharp module is a subclass registered with
/// <see cref="ContinualBackbones.Register{TBackbone}(string)"/>.
/// </summary>
/// <remarks>
/// Settings are the backbone's public properties of simple types (as for plugins): they are saved in the model, and a
/// backbone is made again from them and its registered name when the model is loaded; its parameters travel in the
/// model zip with the heads'. The module must be a deterministic function of its settings and the generator it is given,
/// so that the same seed gives the same model.
/// </remarks>
/// <example><code source="../../src/Samples/BackboneSample.cs" /></example>
public abstract class ContinualBackbone
{
    /// <summary>The name the backbone type is registered under (stored in models).</summary>
    public string Name => ContinualBackbones.NameOf(GetType());

    /// <summary>The width of the features the backbone gives the heads, for rows of <paramref name="inputSize"/> features.</summary>
    public abstract int OutputSize(int inputSize);

    /// <summary>A new module mapping [rows, inputSize] to [rows, <see cref="OutputSize"/>].</summary>
    /// <param name="context">The input size, the generator to draw the initial parameters from and a dropout that draws from the fit's generator.</param>
    public abstract nn.Module<Tensor, Tensor> CreateModule(ContinualBackboneContext context);

    /// <summary>Checks the settings for rows of <paramref name="inputSize"/> features; throws <see cref="ArgumentOutOfRangeException"/> naming what is wrong.</summary>
    public virtual void Validate(int inputSize) { }

    /// <summary>The module's parameter count for rows of <paramref name="inputSize"/> features, when it is known without making
    /// the module (a model file's weights entry is checked against it before anything is allocated); null when unknown.</summary>
    public virtual long? ParameterCount(int inputSize) => null;

    /// <summary>Draws every parameter of the <c>Linear</c> and <c>Conv1d/2d</c> layers of <paramref name="module"/> again,
    /// as PyTorch initialises them (weights U(±√(1/fan_in)) by Kaiming's rule with a = √5, biases U(±1/√fan_in)), from
    /// <paramref name="random"/>: a user's module made with TorchSharp's layers becomes a deterministic function of the seed.</summary>
    protected static void InitializeLikePyTorch(nn.Module module, Generator random)
    {
        ArgumentNullException.ThrowIfNull(module);
        foreach (var (_, child) in module.named_modules())
            switch (child)
            {
                case Linear linear: Initializer.Reset(linear.weight!, linear.bias, random); break;
                case Conv2d conv: Initializer.Reset(conv.weight!, conv.bias, random); break;
                case Conv1d conv: Initializer.Reset(conv.weight!, conv.bias, random); break;
            }
    }
}

/// <summary>What <see cref="ContinualBackbone.CreateModule"/> is given.</summary>
public sealed class ContinualBackboneContext
{
    private readonly RandomSource _source;

    internal ContinualBackboneContext(int inputSize, Generator? random, RandomSource source)
    {
        InputSize = inputSize;
        Random = random;
        _source = source;
    }

    /// <summary>Features per row.</summary>
    public int InputSize { get; }

    /// <summary>The generator to draw the initial parameters from (null when the module's parameters will be read from a file).</summary>
    public Generator? Random { get; }

    /// <summary>A dropout layer whose masks are drawn from the fit's own generator (not the process-wide one), so that
    /// concurrent fits stay reproducible: <c>x · Bernoulli(1 − p) / (1 − p)</c> in training, the identity otherwise.</summary>
    public nn.Module<Tensor, Tensor> Dropout(double probability) => new SeededDropout(probability, _source);
}

/// <summary>
/// A small convolutional network for rows that are images flattened to vectors (<see cref="InputShape"/> C×H×W, as
/// <c>Features</c> of MNIST-like streams are): blocks of 3×3 convolution (padding 1), ReLU and 2×2 max pooling, then
/// dense layers with ReLU. The default, two blocks of 32 and 64 channels and a dense layer of 128, is the small
/// convolutional net continual-learning papers use on MNIST-like data (e.g. the "CNN" of Zenke et al. 2017's split
/// CIFAR, reduced for 28×28 inputs). Works with every method except those that mask or widen a perceptron's layers
/// (PackNet, CPG, progressive networks), which refuse it with a clear error.
/// </summary>
public sealed class ConvBackbone : ContinualBackbone
{
    /// <summary>The shape of each row as channels, height and width, e.g. <c>[1, 28, 28]</c>; C·H·W must be the feature count. Required.</summary>
    public int[] InputShape { get; set; } = [];

    /// <summary>Output channels of each convolution block. Default <c>[32, 64]</c>.</summary>
    public int[] Channels { get; set; } = [32, 64];

    /// <summary>Units of each dense layer after the convolutions. Default <c>[128]</c>.</summary>
    public int[] HiddenLayerSizes { get; set; } = [128];

    /// <summary>Dropout after each dense layer, in [0, 1). Default 0.</summary>
    public float Dropout { get; set; }

    /// <inheritdoc/>
    public override int OutputSize(int inputSize) => HiddenLayerSizes.Length > 0 ? HiddenLayerSizes[^1] : FlattenedSize();

    private int FlattenedSize()
    {
        int h = InputShape[1], w = InputShape[2];
        foreach (var _ in Channels) { h /= 2; w /= 2; }
        return Channels[^1] * h * w;
    }

    /// <inheritdoc/>
    public override long? ParameterCount(int inputSize)
    {
        checked
        {
            long count = 0;
            long channels = InputShape[0];
            foreach (int c in Channels) { count += channels * c * 9 + c; channels = c; }
            long width = FlattenedSize();
            foreach (int h in HiddenLayerSizes) { count += width * h + h; width = h; }
            return count;
        }
    }

    /// <inheritdoc/>
    public override void Validate(int inputSize)
    {
        if (InputShape is not { Length: 3 } || InputShape.Any(d => d <= 0))
            throw new ArgumentOutOfRangeException(nameof(InputShape), "ConvBackbone.InputShape must be three positive sizes: channels, height, width (e.g. [1, 28, 28]).");
        if ((long)InputShape[0] * InputShape[1] * InputShape[2] != inputSize)
            throw new ArgumentOutOfRangeException(nameof(InputShape), $"ConvBackbone.InputShape [{string.Join(", ", InputShape)}] holds {(long)InputShape[0] * InputShape[1] * InputShape[2]} values; the rows have {inputSize} features.");
        if (Channels is not { Length: > 0 } || Channels.Any(c => c <= 0 || c > 4096))
            throw new ArgumentOutOfRangeException(nameof(Channels), "ConvBackbone.Channels must be one or more channel counts in [1, 4096].");
        if (InputShape[1] >> Channels.Length == 0 || InputShape[2] >> Channels.Length == 0)
            throw new ArgumentOutOfRangeException(nameof(Channels), $"ConvBackbone: {Channels.Length} blocks of 2×2 pooling leave nothing of a {InputShape[1]}×{InputShape[2]} image.");
        if (HiddenLayerSizes is null || HiddenLayerSizes.Any(s => s <= 0 || s > 1 << 16))
            throw new ArgumentOutOfRangeException(nameof(HiddenLayerSizes), "ConvBackbone.HiddenLayerSizes must be sizes in [1, 65,536].");
        if (!(Dropout >= 0 && Dropout < 1)) throw new ArgumentOutOfRangeException(nameof(Dropout), "ConvBackbone.Dropout must be in [0, 1).");
    }

    /// <inheritdoc/>
    public override nn.Module<Tensor, Tensor> CreateModule(ContinualBackboneContext context)
    {
        Validate(context.InputSize);
        var layers = new List<(string, nn.Module<Tensor, Tensor>)> { ("image", nn.Unflatten(1, InputShape.Select(d => (long)d).ToArray())) };
        int channels = InputShape[0];
        for (int i = 0; i < Channels.Length; i++)
        {
            var conv = nn.Conv2d(channels, Channels[i], 3, padding: 1);
            if (context.Random is not null) Initializer.Reset(conv.weight!, conv.bias, context.Random);
            layers.Add(($"conv{i}", conv));
            layers.Add(($"relu{i}", nn.ReLU()));
            layers.Add(($"pool{i}", nn.MaxPool2d(2)));
            channels = Channels[i];
        }
        layers.Add(("flatten", nn.Flatten()));
        int width = FlattenedSize();
        for (int i = 0; i < HiddenLayerSizes.Length; i++)
        {
            var linear = nn.Linear(width, HiddenLayerSizes[i]);
            if (context.Random is not null) Initializer.Reset(linear.weight!, linear.bias, context.Random);
            layers.Add(($"linear{i}", linear));
            layers.Add(($"activation{i}", nn.ReLU()));
            if (Dropout > 0) layers.Add(($"dropout{i}", context.Dropout(Dropout)));
            width = HiddenLayerSizes[i];
        }
        return nn.Sequential(layers);
    }
}

/// <summary>The registry of backbone types by name (process-wide), as <see cref="ContinualPlugins"/> is for plugins.</summary>
public static partial class ContinualBackbones
{
    private static readonly ConcurrentDictionary<string, (Type Type, Func<ContinualBackbone> Create)> ByName = new(StringComparer.Ordinal);
    private static readonly ConcurrentDictionary<Type, string> ByType = new();

    static ContinualBackbones()
    {
        Register<ConvBackbone>("Conv");
        Register<TabularBackbone>("Tabular");
    }

    /// <summary>Registers <typeparamref name="TBackbone"/> under <paramref name="name"/> (1 to 64 letters, digits, '.', '_' or '-'); see <see cref="ContinualPlugins.Register{TPlugin}(string)"/>.</summary>
    public static void Register<TBackbone>(string name) where TBackbone : ContinualBackbone, new()
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!NamePattern().IsMatch(name)) throw new ArgumentException($"Backbone name '{name}' must be 1 to 64 letters, digits, '.', '_' or '-'.", nameof(name));
        Settings.CheckStorable(typeof(TBackbone));
        lock (ByName)
        {
            if (ByName.TryGetValue(name, out var existing))
            {
                if (existing.Type == typeof(TBackbone)) return;
                throw new ArgumentException($"Backbone name '{name}' is taken by {existing.Type.FullName}.", nameof(name));
            }
            if (ByType.TryGetValue(typeof(TBackbone), out var other)) throw new ArgumentException($"{typeof(TBackbone).FullName} is registered as '{other}' already.", nameof(name));
            ByName[name] = (typeof(TBackbone), () => new TBackbone());
            ByType[typeof(TBackbone)] = name;
        }
    }

    /// <summary>The registered names, in order.</summary>
    public static IReadOnlyList<string> Names => ByName.Keys.Order(StringComparer.Ordinal).ToList();

    internal static string NameOf(Type type) =>
        ByType.TryGetValue(type, out var name) ? name
            : throw new InvalidOperationException($"Backbone type {type.FullName} is not registered: call ContinualBackbones.Register<{type.Name}>(\"a-name\") before fitting or loading a model that uses it.");

    internal static ContinualBackbone Create(string name, IEnumerable<KeyValuePair<string, string>> settings)
    {
        var entry = ByName.TryGetValue(name, out var found) ? found
            : ByName.FirstOrDefault(kv => string.Equals(kv.Key, name, StringComparison.OrdinalIgnoreCase)).Value;
        if (entry.Create is null)
            throw new ContinualModelFormatException($"The model uses backbone '{name}', which is not registered in this process (registered: {string.Join(", ", Names)}). "
                + "Register its type with ContinualBackbones.Register<T>(\"" + name + "\") before loading the model.");
        var backbone = entry.Create();
        Settings.FromStoredPairs(backbone, settings);
        return backbone;
    }

    [GeneratedRegex("^[A-Za-z0-9._-]{1,64}$")]
    private static partial Regex NamePattern();
}

/// <summary>Draws parameters as PyTorch's default initialisation does, from a given generator (bit for bit the values
/// TorchSharp's layers draw from the process-wide generator when it is seeded alike).</summary>
internal static class Initializer
{
    // PyTorch's kaiming_uniform_(w, a = √5): gain √(2 / (1 + a²)), std = gain / √fan_in, bound √3·std (libtorch's own arithmetic).
    private static readonly double Gain = Math.Sqrt(2.0 / (1 + Math.Pow(Math.Sqrt(5), 2)));

    public static void Reset(Tensor weight, Tensor? bias, Generator random)
    {
        using var _ = no_grad();
        long fanIn = weight.numel() / Math.Max(weight.shape[0], 1);
        double std = Gain / Math.Sqrt(fanIn);
        double bound = Math.Sqrt(3.0) * std;
        weight.uniform_(-bound, bound, random);
        if (bias is null) return;
        double biasBound = fanIn > 0 ? 1 / Math.Sqrt(fanIn) : 0;
        bias.uniform_(-biasBound, biasBound, random);
    }
}

/// <summary>Where a network's dropout layers draw their masks: the fit's generator while it trains (set by the loop), else torch's.</summary>
internal sealed class RandomSource
{
    public Generator? Generator { get; set; }
}

/// <summary>
/// Dropout drawing its mask from a <see cref="RandomSource"/>: the same arithmetic as ATen's CPU dropout
/// (noise = bernoulli(1 − p), noise /= 1 − p, x · noise), so a seeded generator gives the masks torch's seeded
/// process-wide generator would.
/// </summary>
internal sealed class SeededDropout : nn.Module<Tensor, Tensor>
{
    private readonly double _p;
    private readonly RandomSource _source;

    public SeededDropout(double p, RandomSource source) : base(nameof(SeededDropout))
    {
        _p = p;
        _source = source;
    }

    // Sequential disposes each layer's input once the next layer has run, so the identity must be a new handle (an alias).
    public override Tensor forward(Tensor input) => _p == 0 || !training || input.numel() == 0 ? input.alias() : Apply(input, _p, training, _source);

    public static Tensor Apply(Tensor input, double p, bool training, RandomSource source)
    {
        if (p == 0 || !training || input.numel() == 0) return input;
        if (source.Generator is null) return nn.functional.dropout(input, p, training);
        using var noise = empty_like(input).bernoulli_(1 - p, source.Generator);
        noise.div_(1 - p);
        return input * noise;
    }
}
