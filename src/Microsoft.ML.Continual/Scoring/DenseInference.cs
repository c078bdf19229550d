using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
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
/// 5 µs each); a 784-256-256-10 network's one-row forward with its softmax and copies took 45–50 µs, while this copy
/// takes about 9 µs (the performance benchmark): at that size it is bound by reading the 1 MB of weights. Skipping the zero inputs (most pixels of an image, about half
/// the units after a ReLU) does not change the sum: a zero input adds exactly 0 (weights are finite: a model with a
/// non-finite weight is refused when it is trained or loaded).</para>
/// <para>The sums run in another order than libtorch's kernels, so a row scored here and the same row scored in a block
/// by <see cref="Scorer"/> may differ in the last bits (within 1e-6 on probabilities, tested); each path is
/// bit-reproducible on its own on one machine, and this one also across CPUs with and without AVX2 (its sums do not
/// depend on the vector width; tested). Its hot methods are compiled optimized at their first call
/// (<see cref="MethodImplOptions.AggressiveOptimization"/>): tiered compilation left the first few thousand rows of a
/// process at 55 µs each.</para>
/// <para>Made only for what it computes exactly as the network does: the default perceptron trunk (shared, one per
/// task, or seen through PackNet's or CPG's per-head weights), ReLU, tanh or sigmoid, and no plugin that changes the
/// outputs at prediction time (iCaRL, BiC). Anything else (other backbones, progressive columns, GELU) is scored by
/// libtorch.</para>
/// </remarks>
internal sealed class DenseInference
{
    /// <summary>One dense layer: outputs = activation(inputs · WeightT + Bias). WeightT is [Inputs, Stride] and Bias
    /// [Stride]: each row padded with zeros to a whole number of vectors, so the kernel has no scalar tail.</summary>
    private sealed record Layer(float[] WeightT, float[] Bias, int Inputs, int Outputs, int Stride, bool Activated);

    private readonly Layer[][] _heads; // each head's chain, trunk layers then the head
    private readonly ContinualActivation _activation;
    private readonly bool[]?[] _allowed; // multiclass multi-head: the outputs each head may predict
    private readonly bool _softmax;
    private readonly int _widest; // the widest padded layer, inputs or outputs
    private readonly bool _avx;

    private DenseInference(Layer[][] heads, ContinualActivation activation, bool[]?[] allowed, bool softmax, bool avx)
    {
        _avx = avx;
        _heads = heads;
        _activation = activation;
        _allowed = allowed;
        _softmax = softmax;
        _widest = heads.SelectMany(h => h).Max(l => Math.Max(l.Inputs, l.Stride));
    }

    public int OutputSize => _heads[0][^1].Outputs;

    /// <summary>The managed copy of <paramref name="state"/>'s network, or null when it has parts this class does not compute.</summary>
    /// <param name="state">The model.</param>
    /// <param name="portable">Use the portable kernel even where the CPU has AVX (tests compare the two).</param>
    public static DenseInference? TryCreate(ContinualModelState state, bool portable = false)
    {
        var network = state.Network;
        var shape = network.Shape;
        if (WhyNotADenseChain(state) is not null
            || shape.Activation is not (ContinualActivation.ReLU or ContinualActivation.Tanh or ContinualActivation.Sigmoid)
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
        if (state.AllowedMask() is { } mask)
            for (int head = 0; head < shape.HeadCount && head < state.HeadClasses.Count; head++)
                allowed[head] = mask.AsSpan(head * state.OutputSize, state.OutputSize).ToArray();
        return new DenseInference(heads, shape.Activation, allowed, state.Kind == ContinualPredictionKind.Multiclass, Avx.IsSupported && !portable);
    }

    /// <summary>Null when the model's outputs are its network's dense chain per head (<see cref="ContinualNetwork.DenseChain"/>)
    /// and nothing else; else why not. The one test for the managed kernel, lock-free block scoring and ONNX export.</summary>
    internal static string? WhyNotADenseChain(ContinualModelState state)
    {
        var network = state.Network;
        if (!network.IsPerceptron) return $"its network has a custom backbone ({network.Shape.Backbone!.GetType().Name})";
        if (network.Shape.Columns == NetworkColumns.Progressive) return "it is a progressive network (columns with lateral connections)";
        if (state.Plugins.Items.FirstOrDefault(ChangesScoringOutputs) is { } plugin)
            return $"its plugin {plugin.GetType().Name} changes the outputs at prediction time";
        return null;
    }

    internal static bool ChangesScoringOutputs(ContinualPlugin plugin) =>
        plugin.GetType().GetMethod(nameof(ContinualPlugin.ScoringOutputs))!.DeclaringType != typeof(ContinualPlugin);

    private static Layer ToLayer(Tensor weight, Tensor bias, bool activated)
    {
        int outputs = (int)weight.shape[0], inputs = (int)weight.shape[1];
        int stride = (outputs + PadTo - 1) / PadTo * PadTo;
        float[] transposed = weight.t().contiguous().cpu().data<float>().ToArray();
        var padded = new float[inputs * stride];
        for (int i = 0; i < inputs; i++) transposed.AsSpan(i * outputs, outputs).CopyTo(padded.AsSpan(i * stride));
        var paddedBias = new float[stride];
        bias.contiguous().cpu().data<float>().CopyTo(paddedBias);
        return new Layer(padded, paddedBias, inputs, outputs, stride, activated);
    }

    /// <summary>Scores one row: the class probabilities (0 where the row's head may not predict), the logit or the value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization), SkipLocalsInit]
    public void Score(ReadOnlySpan<float> features, int head, Span<float> outputs)
    {
        // On the stack: no allocation, nothing shared between threads (the widest layer of a dense network that this path
        // is for is a few thousand units; a wider one would be better scored in blocks by libtorch anyway).
        Span<float> a = _widest <= StackLimit ? stackalloc float[_widest] : new float[_widest];
        Span<float> b = _widest <= StackLimit ? stackalloc float[_widest] : new float[_widest];
        Span<int> nonZero = _widest <= StackLimit ? stackalloc int[_widest] : new int[_widest];
        scoped ReadOnlySpan<float> input = features;
        bool intoA = true;
        foreach (var layer in _heads[head])
        {
            var result = (intoA ? a : b)[..layer.Stride];
            Dense(layer, input, result, nonZero, _avx);
            if (layer.Activated) Activate(result[..layer.Outputs]);
            input = result[..layer.Outputs];
            intoA = !intoA;
        }
        input.CopyTo(outputs);
        if (_softmax) Softmax(outputs, _allowed[head]);
    }

    private const int StackLimit = 4096;

    /// <summary>Each layer's width is padded to a multiple of this (the widest vector either kernel uses).</summary>
    private static readonly int PadTo = Math.Max(Vector256<float>.Count, Vector<float>.Count);

    /// <summary>result = Bias + Σ_i input[i] · WeightT[i, :] over the inputs that are not zero, in the inputs' order.</summary>
    /// <remarks>Blocks of four vectors of outputs stay in registers while every input row of the block is added, so the
    /// weights are read once and the sums are written once. Each output's sum runs over the inputs in order with a
    /// multiply then an add (no fused multiply-add), so its value does not depend on the CPU's vector width: the AVX
    /// kernel (8 lanes, used whenever the CPU has AVX, with or without AVX2, where <see cref="Vector{T}"/> has only 4
    /// lanes) and the portable one give the same bits.</remarks>
    private static void Dense(Layer layer, ReadOnlySpan<float> input, Span<float> result, Span<int> nonZero, bool avx)
    {
        int count = 0;
        for (int i = 0; i < layer.Inputs; i++)
            if (input[i] != 0) nonZero[count++] = i;
        if (avx) DenseAvx(layer, input, result, nonZero[..count]);
        else DensePortable(layer, input, result, nonZero[..count]);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void DenseAvx(Layer layer, ReadOnlySpan<float> input, Span<float> result, ReadOnlySpan<int> nonZero)
    {
        int stride = layer.Stride;
        fixed (float* weights = layer.WeightT, bias = layer.Bias, target = result, x = input)
        fixed (int* rows = nonZero)
        {
            int o = 0, count = nonZero.Length;
            for (; o + 32 <= stride; o += 32)
            {
                var s0 = Avx.LoadVector256(bias + o);
                var s1 = Avx.LoadVector256(bias + o + 8);
                var s2 = Avx.LoadVector256(bias + o + 16);
                var s3 = Avx.LoadVector256(bias + o + 24);
                for (int k = 0; k < count; k++)
                {
                    int i = rows[k];
                    var v = Avx.BroadcastScalarToVector256(x + i);
                    float* row = weights + (long)i * stride + o;
                    s0 = Avx.Add(s0, Avx.Multiply(v, Avx.LoadVector256(row)));
                    s1 = Avx.Add(s1, Avx.Multiply(v, Avx.LoadVector256(row + 8)));
                    s2 = Avx.Add(s2, Avx.Multiply(v, Avx.LoadVector256(row + 16)));
                    s3 = Avx.Add(s3, Avx.Multiply(v, Avx.LoadVector256(row + 24)));
                }
                Avx.Store(target + o, s0);
                Avx.Store(target + o + 8, s1);
                Avx.Store(target + o + 16, s2);
                Avx.Store(target + o + 24, s3);
            }
            for (; o < stride; o += 8)
            {
                var sum = Avx.LoadVector256(bias + o);
                for (int k = 0; k < count; k++)
                {
                    int i = rows[k];
                    sum = Avx.Add(sum, Avx.Multiply(Avx.BroadcastScalarToVector256(x + i), Avx.LoadVector256(weights + (long)i * stride + o)));
                }
                Avx.Store(target + o, sum);
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DensePortable(Layer layer, ReadOnlySpan<float> input, Span<float> result, ReadOnlySpan<int> nonZero)
    {
        int stride = layer.Stride, lanes = Vector<float>.Count;
        ref float weights = ref MemoryMarshal.GetArrayDataReference(layer.WeightT);
        ref float bias = ref MemoryMarshal.GetArrayDataReference(layer.Bias);
        ref float target = ref MemoryMarshal.GetReference(result);
        for (int o = 0; o < stride; o += lanes)
        {
            var sum = Vector.LoadUnsafe(ref bias, (nuint)o);
            foreach (int i in nonZero)
                sum += new Vector<float>(input[i]) * Vector.LoadUnsafe(ref weights, (nuint)(i * stride + o));
            sum.StoreUnsafe(ref target, (nuint)o);
        }
    }

    private void Activate(Span<float> values)
    {
        switch (_activation)
        {
            case ContinualActivation.Tanh:
                foreach (ref float v in values) v = MathF.Tanh(v);
                break;
            case ContinualActivation.Sigmoid:
                foreach (ref float v in values) v = 1f / (1f + MathF.Exp(-v));
                break;
            default:
                foreach (ref float v in values) v = MathF.Max(v, 0f);
                break;
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
