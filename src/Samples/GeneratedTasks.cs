using Microsoft.ML;
using Microsoft.ML.Data;

namespace Samples;

/// <summary>One generated example: 8 features and a text label.</summary>
public sealed class Example
{
    [VectorType(GeneratedTasks.FeatureCount)]
    public float[] Features { get; set; } = [];

    public string Label { get; set; } = "";
}

/// <summary>What a prediction engine returns for an <see cref="Example"/>.</summary>
public sealed class Prediction
{
    public string PredictedLabel { get; set; } = "";

    public float[] Score { get; set; } = [];
}

/// <summary>
/// A small domain-incremental stream that needs no data files: three classes ("red", "green", "blue"), each a
/// Gaussian blob in a 2-D plane; every task places that plane at another random orientation inside 8-D space,
/// as a sensor re-mounted each month would. One network can fit all tasks together; fitting them one after another
/// overwrites the earlier orientation.
/// </summary>
public static class GeneratedTasks
{
    public const int FeatureCount = 8;
    private static readonly string[] Classes = ["red", "green", "blue"];

    public static IDataView Task(MLContext ml, int task, int rows, int seed) => ml.Data.LoadFromEnumerable(Examples(task, rows, seed));

    public static IEnumerable<Example> Examples(int task, int rows, int seed)
    {
        var basis = Orientation(task);
        var random = new Random(seed * 7919 + task);
        for (int i = 0; i < rows; i++)
        {
            int c = i % Classes.Length;
            double angle = 2 * Math.PI * c / Classes.Length;
            double u = 2 * Math.Cos(angle) + Gaussian(random) * 0.6, v = 2 * Math.Sin(angle) + Gaussian(random) * 0.6;
            var features = new float[FeatureCount];
            for (int d = 0; d < FeatureCount; d++)
                features[d] = (float)(u * basis[0][d] + v * basis[1][d] + 0.1 * Gaussian(random));
            yield return new Example { Features = features, Label = Classes[c] };
        }
    }

    private static double[][] Orientation(int task)
    {
        // Two orthonormal directions drawn from a per-task seed (Gram-Schmidt).
        var random = new Random(1000 + task);
        double[] a = Enumerable.Range(0, FeatureCount).Select(_ => Gaussian(random)).ToArray();
        double[] b = Enumerable.Range(0, FeatureCount).Select(_ => Gaussian(random)).ToArray();
        Normalize(a);
        double dot = a.Zip(b, (x, y) => x * y).Sum();
        for (int d = 0; d < FeatureCount; d++) b[d] -= dot * a[d];
        Normalize(b);
        return [a, b];
    }

    private static void Normalize(double[] v)
    {
        double norm = Math.Sqrt(v.Sum(x => x * x));
        for (int d = 0; d < v.Length; d++) v[d] /= norm;
    }

    private static double Gaussian(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}
