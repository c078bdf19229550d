using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>Scores blocks of rows for <see cref="ScoredDataView"/> and <see cref="ContinualRowMapper"/>: a network, or boosted trees.</summary>
internal interface IBlockScorer
{
    int OutputSize { get; }

    /// <summary>Scores <paramref name="rows"/> rows of <paramref name="features"/> (each of the model's feature size) into
    /// <paramref name="outputs"/> (rows x OutputSize); <paramref name="heads"/> is each row's head for a multi-head model.</summary>
    void Score(float[] features, long[]? heads, int rows, float[] outputs);
}

/// <summary>
/// Scores blocks of rows with a trained network: no gradients, evaluation mode, one forward per block.
/// Outputs per row: multiclass, the class probabilities (0 for classes the row's head may not predict);
/// binary, the logit; regression, the value.
/// </summary>
internal sealed class Scorer : IBlockScorer
{
    private readonly ContinualModelState _state;
    private readonly object _lock = new(); // one forward at a time: cursors may be used from several threads
    private readonly Device _device;

    public Scorer(ContinualModelState state)
    {
        _state = state;
        _device = new Device(state.Options.Device);
    }

    public int OutputSize => _state.OutputSize;

    /// <summary>Scores <paramref name="rows"/> rows of <paramref name="features"/> into <paramref name="outputs"/> (rows x OutputSize).</summary>
    public void Score(float[] features, long[]? heads, int rows, float[] outputs)
    {
        if (rows == 0) return;
        lock (_lock)
        {
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            // Copied into torch memory: wrapping the managed array made results drift by 1 ulp between runs.
            Tensor x = tensor(features.AsSpan(0, rows * _state.FeatureSize).ToArray(), new long[] { rows, _state.FeatureSize }).clone().to(_device);
            Tensor? h = heads is null ? null : tensor(heads.AsSpan(0, rows).ToArray()).to(_device);
            Tensor output = _state.Plugins.ScoringOutputs(_state.Network, x, h, _state.Network.Forward(x, h));
            if (_state.Kind == ContinualPredictionKind.Multiclass)
                output = nn.functional.softmax(_state.MaskLogits(output, h), 1);
            output.cpu().contiguous().data<float>().CopyTo(outputs.AsSpan(0, rows * OutputSize));
        }
    }
}
