using Microsoft.ML.Data;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

/// <summary>Task-free streams: MNIST-360's construction, checked against the raw MNIST images.</summary>
public sealed class TaskFreeTests
{
    [Fact]
    public void Mnist360_IsPairsOfNeighbouringDigits_TurningThrough360Degrees()
    {
        var ml = new MLContext(seed: 1);
        var stream = ml.Continual().Benchmarks.Mnist360(batchSize: 16, seed: 0);
        Assert.Equal(ContinualScenario.ClassIncremental, stream.Scenario);
        var task = Assert.Single(stream);
        var (trainImages, testImages) = MnistData.Load();
        var train = Read(ml, task.Train);
        var test = Read(ml, task.Test);

        // Training: every digit 0..8 once per image at most, no 9; 54,051 images of 0-8, of which a segment drops what is
        // left of one chunk when the other runs out (a few rows per segment).
        int[] available = Enumerable.Range(0, 9).Select(d => trainImages.Labels.Count(l => l == d)).ToArray();
        Assert.Equal(54_051, available.Sum());
        Assert.DoesNotContain(train, r => r.Label == 9);
        for (int d = 0; d < 9; d++) Assert.InRange(train.Count(r => r.Label == d), available[d] - 6 * 20, available[d]);
        // The stream starts with the pair (0, 1) and ends with (8, 0): the first segment holds only 0 and 1, the last only 8 and 0.
        Assert.All(train.Take(1000), r => Assert.Contains(r.Label, new uint[] { 0, 1 }));
        Assert.All(train.TakeLast(1000), r => Assert.Contains(r.Label, new uint[] { 8, 0 }));
        // Digit 1 starts at (1 - 1) * 60 = 0 degrees: its first row is an MNIST training image as it is.
        var firstOne = train.First(r => r.Label == 1).Features;
        Assert.Contains(Enumerable.Range(0, trainImages.Labels.Length), i => trainImages.Labels[i] == 1 && trainImages.Pixels.AsSpan(i * 784, 784).SequenceEqual(firstOne));
        // Digit 0 starts at -60 degrees: its first row is no image as it is.
        var firstZero = train.First(r => r.Label == 0).Features;
        Assert.DoesNotContain(Enumerable.Range(0, trainImages.Labels.Length), i => trainImages.Labels[i] == 0 && trainImages.Pixels.AsSpan(i * 784, 784).SequenceEqual(firstZero));

        // Test: the 8,991 test images of 0..8, digit by digit, the first of each unrotated.
        Assert.Equal(testImages.Labels.Count(l => l < 9), test.Count);
        Assert.Equal(test.Select(r => r.Label).Order(), test.Select(r => r.Label));
        int firstTestZero = Array.IndexOf(testImages.Labels, (byte)0);
        Assert.Equal(testImages.Pixels.AsSpan(firstTestZero * 784, 784).ToArray(), test[0].Features);
        int lastTestZero = Array.LastIndexOf(testImages.Labels, (byte)0);
        Assert.NotEqual(testImages.Pixels.AsSpan(lastTestZero * 784, 784).ToArray(), test[test.FindLastIndex(r => r.Label == 0)].Features); // turned by almost 360°, resampled
    }

    [Fact]
    public void RotatedMnist_WithGivenAngles_RotatesEachTaskByItsAngle()
    {
        var ml = new MLContext(seed: 1);
        var stream = ml.Continual().Benchmarks.RotatedMnist([0.0, 90.0], trainSamplesPerTask: 50, testSamplesPerTask: 20);
        Assert.Equal(2, stream.Count);
        Assert.Contains("angles 0, 90", stream.Name);
        var (trainImages, _) = MnistData.Load();
        var unrotated = Read(ml, stream[0].Train);
        var turned = Read(ml, stream[1].Train);
        // Task 1 at 0°: every row is an MNIST training image as it is; task 2 at 90°: its rows are not, they are quarter turns of one.
        foreach (var row in unrotated.Take(5))
            Assert.Contains(Enumerable.Range(0, trainImages.Labels.Length), i => trainImages.Pixels.AsSpan(i * 784, 784).SequenceEqual(row.Features));
        var first = turned[0].Features;
        Assert.DoesNotContain(Enumerable.Range(0, trainImages.Labels.Length), i => trainImages.Pixels.AsSpan(i * 784, 784).SequenceEqual(first));
        // A quarter turn moves pixel (x, y) to (y, 27 - x) or (27 - y, x): the 90° row is a permutation of some image's pixels.
        Assert.Contains(Enumerable.Range(0, trainImages.Labels.Length), i =>
        {
            var source = trainImages.Pixels.AsSpan(i * 784, 784);
            bool clockwise = true, counter = true;
            for (int y = 0; y < 28 && (clockwise || counter); y++)
                for (int x = 0; x < 28; x++)
                {
                    clockwise &= Math.Abs(first[y * 28 + x] - source[(27 - x) * 28 + y]) < 1e-5f;
                    counter &= Math.Abs(first[y * 28 + x] - source[x * 28 + (27 - y)]) < 1e-5f;
                }
            return clockwise || counter;
        });
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.Continual().Benchmarks.RotatedMnist([double.NaN]));
    }

    private sealed class MnistRow
    {
        [VectorType(784)] public float[] Features { get; set; } = [];
        [KeyType(10)] public uint Label { get; set; }
    }

    private static List<(uint Label, float[] Features)> Read(MLContext ml, IDataView view) =>
        ml.Data.CreateEnumerable<MnistRow>(view, reuseRowObject: false).Select(r => (r.Label - 1, r.Features)).ToList();
}
