using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual.Tests;

/// <summary>The loop's optimizers hold their Scalars until each native call returns; they must step exactly as
/// TorchSharp's own Adam and SGD do (same operations, same order), so that every figure made before them still holds.</summary>
public class OptimizerTests
{
    [Theory]
    [InlineData("adam", 0.0)]
    [InlineData("adam", 0.01)]
    [InlineData("sgd", 0.0)]
    [InlineData("sgd", 0.01)]
    [InlineData("momentum", 0.01)]
    public void KeptScalarOptimizers_StepBitForBit_AsTorchSharps(string kind, double weightDecay)
    {
        Parameter[] Make() { manual_seed(5); return [new Parameter(randn(7, 3)), new Parameter(randn(3)), new Parameter(randn(2, 2))]; }
        Parameter[] ours = Make(), theirs = Make();
        optim.Optimizer mine = kind switch
        {
            "adam" => new KeptScalarAdam(ours, 0.01, weightDecay),
            "sgd" => new KeptScalarSgd(ours, 0.1, 0, weightDecay),
            _ => new KeptScalarSgd(ours, 0.1, 0.9, weightDecay),
        };
        optim.Optimizer reference = kind switch
        {
            "adam" => optim.Adam(theirs, 0.01, weight_decay: weightDecay),
            "sgd" => optim.SGD(theirs, 0.1, weight_decay: weightDecay),
            _ => optim.SGD(theirs, 0.1, momentum: 0.9, weight_decay: weightDecay),
        };
        var gradients = new Generator(11);
        for (int step = 0; step < 25; step++)
        {
            for (int i = 0; i < ours.Length; i++)
            {
                Tensor g = randn(ours[i].shape, generator: gradients);
                if (step % 7 == 3 && i == 2) { ours[i].grad = null; theirs[i].grad = null; continue; } // a step without a gradient: skipped by both
                ours[i].grad = g.clone();
                theirs[i].grad = g.clone();
            }
            mine.step();
            reference.step();
        }
        for (int i = 0; i < ours.Length; i++)
            Assert.Equal(theirs[i].data<float>().ToArray(), ours[i].data<float>().ToArray()); // exact: no tolerance
        Assert.NotEqual(Make()[0].data<float>().ToArray(), ours[0].data<float>().ToArray()); // and they did move
    }
}
