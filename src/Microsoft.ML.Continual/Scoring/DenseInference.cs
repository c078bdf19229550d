using System.Buffers;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// A managed, read-only copy of a perceptron network for scoring a few rows at a time (prediction engines): each head's
/// chain of dense layers with its weights transposed to [inputs, outputs], evaluated as a sum of weight rows scaled by
/// the inputs that are not zero. A row then costs the network's arithmetic and nothing else: no native calls, no
/// tensors, no lock, so any number of threads score at once.
/// </summary>
/// <remarks>
/// <para>Why not libtorch for one row: every TorchSharp call crosses into native code and allocates a tensor (about
/// 5 µs each); a 784-256-256-10 network's forward with its softmax and copies takes about 15 of them (≈ 80 µs), while
/// its ≈ 270,000 multiply-adds take a few microseconds. Skipping the zero inputs (most pixels of an image, about half
/// the units after a ReLU) does not change the sum: a zero input adds exactly 0 (weights are finite: a model with a
/// non-finite weight is refused when it is trained or loaded).</para>
/// <para>The sums run in another order than libtorch's kernels, so a row scored here and the same row scored in a block
/// by <see cref="Scorer"/> may differ in the last bits (within 1e-6 on probabilities, tested); each path is
/// bit-reproducible on its own on one machine.</para>
/// <para>Made only for what it computes exactly as the network does: the default perceptron trunk (shared, one per
/// task, or seen through PackNet's or CPG's per-head weights), ReLU, tanh or sigmoid, and no plugin that changes the
/// outputs at prediction time (iCaRL, BiC). Anything else (other backbones, progressive columns, GELU) is scored by
/// libtorch.</para>
/// </remarks>
internal sealed class DenseInference
{
    /// <summary>One dense layer: outputs = activation(inputs · WeightT + Bias).</summary>
    private sealed record Layer(float[] WeightT, float[] Bias, int Inputs, int Outputs, bool Activated);

    private readonly Layer[][] _heads; // each head's chain, trunk layers then the head
    private readonly ContinualActivation _activation;
    private readonly bool[]?[] _allowed; // multiclass multi-head: the outputs each head may predict
    private readonly bool _softmax;
    private readonly int _widest;

    private DenseInference(Layer[][] heads, ContinualActivation activation, bool[]?[] allowed, bool softmax)
    {
        _heads = heads;
        _activation = activation;
        _allowed = allowed;
        _softmax = softmax;
        _widest = heads.SelectMany(h => h).Max(l => Math.Max(l.Inputs, l.Outputs));
    }

    public int OutputSize => _heads[0][^1].Outputs;

    /// <summary>The managed copy of <paramref name="state"/>'s network, or null when it has parts this class does not compute.</summary>
    public static DenseInference? TryCreate(ContinualModelState state)
    {
        var network = state.Network;
        var shape = network.Shape;
        if (!network.IsPerceptron || shape.Columns == NetworkColumns.Progressive
            || shape.Activation is not (ContinualActivation.ReLU or ContinualActivation.Tanh or ContinualActivation.Sigmoid)
            || state.Plugins.Items.Any(ChangesScoringOutputs)
            || network.parameters().Any(p => p.device_type != TorchSharp.DeviceType.CPU))
            return null;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var heads = new Layer[shape.HeadCount][];
        for (int head = 0; head < shape.HeadCount; head++)
        {
            var chain = network.DenseChain(head);
            heads[head] = chain.Select((l, i) => ToLayer(l.Weight, l.Bias, activated: i < chain.Count - 1)).ToArray();
        }
        var allowed = new bool[]?[shape.HeadCount];
        if (state.Kind == ContinualPredictionKind.Multiclass && state.MultiHead)
            for (int head = 0; head < shape.HeadCount && head < state.HeadClasses.Count; head++)
                allowed[head] = Enumerable.Range(0, state.OutputSize).Select(c => c < state.HeadClasses[head].Length && state.HeadClasses[head][c]).ToArray();
        return new DenseInference(heads, shape.Activation, allowed, state.Kind == ContinualPredictionKind.Multiclass);
    }

    internal static bool ChangesScoringOutputs(ContinualPlugin plugin) =>
        plugin.GetType().GetMethod(nameof(ContinualPlugin.ScoringOutputs))!.DeclaringType != typeof(ContinualPlugin);

    private static Layer ToLayer(Tensor weight, Tensor bias, bool activated)
    {
        int outputs = (int)weight.shape[0], inputs = (int)weight.shape[1];
        float[] transposed = weight.t().contiguous().cpu().data<float>().ToArray();
        return new Layer(transposed, bias.contiguous().cpu().data<float>().ToArray(), inputs, outputs, activated);
    }

    /// <summary>Scores one row: the class probabilities (0 where the row's head may not predict), the logit or the value.</summary>
    public void Score(ReadOnlySpan<float> features, int head, Span<float> outputs)
    {
        float[] a = ArrayPool<float>.Shared.Rent(_widest), b = ArrayPool<float>.Shared.Rent(_widest);
        try
        {
            ReadOnlySpan<float> input = features;
            float[] target = a;
            foreach (var layer in _heads[head])
            {
                var result = target.AsSpan(0, layer.Outputs);
                Dense(layer, input, result);
                if (layer.Activated) Activate(result);
                input = result;
                target = target == a ? b : a;
            }
            input.CopyTo(outputs);
            if (_softmax) Softmax(outputs, _allowed[head]);
        }
        finally
        {
            ArrayPool<float>.Shared.Return(a);
            ArrayPool<float>.Shared.Return(b);
        }
    }

    /// <summary>result = bias + Σ_i input[i] · WeightT[i, :], over the inputs that are not zero.</summary>
    private static void Dense(Layer layer, ReadOnlySpan<float> input, Span<float> result)
    {
        layer.Bias.CopyTo(result);
        var weights = layer.WeightT.AsSpan();
        int width = layer.Outputs;
        for (int i = 0; i < layer.Inputs; i++)
        {
            float x = input[i];
            if (x == 0) continue;
            TensorPrimitives.MultiplyAdd(weights.Slice(i * width, width), x, result, result);
        }
    }

    private void Activate(Span<float> values)
    {
        switch (_activation)
        {
            case ContinualActivation.Tanh: TensorPrimitives.Tanh(values, values); break;
            case ContinualActivation.Sigmoid: TensorPrimitives.Sigmoid(values, values); break;
            default: TensorPrimitives.Max(values, 0f, values); break;
        }
    }

    /// <summary>Softmax over the outputs the head may predict (the others are 0, as softmax of -inf gives).</summary>
    private static void Softmax(Span<float> logits, bool[]? allowed)
    {
        float max = float.NegativeInfinity;
        for (int i = 0; i < logits.Length; i++) if ((allowed is null || allowed[i]) && logits[i] > max) max = logits[i];
        float sum = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            logits[i] = allowed is null || allowed[i] ? MathF.Exp(logits[i] - max) : 0f;
            sum += logits[i];
        }
        for (int i = 0; i < logits.Length; i++) logits[i] /= sum;
    }
}
