using System.Security.Cryptography;
using Microsoft.ML.Data;

namespace Microsoft.ML.Continual.Tests;

/// <summary>A generated row with the label in several types, so each label kind can be tested on the same data.</summary>
public sealed class Row
{
    public const int Size = 6;

    [VectorType(Size)]
    public float[] Features { get; set; } = [];

    public string Label { get; set; } = "";
    public int IntLabel { get; set; }
    public bool BoolLabel { get; set; }
    public float Target { get; set; }
    public string Task { get; set; } = "";
}

/// <summary>What prediction engines return in these tests.</summary>
public sealed class TextPrediction
{
    public string PredictedLabel { get; set; } = "";
    public float[] Score { get; set; } = [];
}

/// <summary>
/// Gaussian blobs: class c of task t is centred at a point drawn from (t, c), so classes separate well and tasks
/// differ. Labels: "c{class}" (text), class (int), class is odd (bool), a linear target (float).
/// </summary>
/// <summary>A row of <see cref="TestData.Rows"/>'s features with a Boolean label (binary models: the boosted trees).</summary>
public sealed class BinaryRow
{
    [VectorType(6)] public float[] Features { get; set; } = [];
    public bool Label { get; set; }
}

public static class TestData
{
    public static List<Row> Rows(int task, int[] classes, int count, int seed, float spread = 0.5f)
    {
        var random = new Random(seed * 1009 + task);
        var rows = new List<Row>(count);
        for (int i = 0; i < count; i++)
        {
            int c = classes[i % classes.Length];
            var centre = Centre(task, c);
            var features = new float[Row.Size];
            for (int d = 0; d < Row.Size; d++) features[d] = centre[d] + spread * Gaussian(random);
            rows.Add(new Row
            {
                Features = features,
                Label = $"c{c}",
                IntLabel = c,
                BoolLabel = c % 2 == 1,
                Target = features.Select((f, d) => f * (d + 1) * 0.1f).Sum() + 0.01f * Gaussian(random),
                Task = $"task{task}",
            });
        }
        return rows;
    }

    public static IDataView View(MLContext ml, int task, int[] classes, int count, int seed) =>
        ml.Data.LoadFromEnumerable(Rows(task, classes, count, seed));

    private static float[] Centre(int task, int c)
    {
        var random = new Random(31 * task + c + 7);
        return Enumerable.Range(0, Row.Size).Select(_ => (float)(random.NextDouble() * 6 - 3)).ToArray();
    }

    private static float Gaussian(Random random) =>
        (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));

    /// <summary>Small, fast options for tests.</summary>
    public static FineTuneTrainer.Options Options(string label = "Label", string? taskId = null) => new()
    {
        LabelColumnName = label,
        TaskIdColumnName = taskId,
        HiddenLayerSizes = [16],
        NumberOfEpochs = 4,
        BatchSize = 32,
        LearningRate = 0.01,
        Seed = 3,
    };

    /// <summary>Every score of the model's Score column, in row order, as raw floats.</summary>
    public static float[] Scores(ITransformer model, IDataView data)
    {
        var scored = model.Transform(data);
        var column = scored.Schema["Score"];
        if (column.Type is VectorDataViewType)
            return scored.GetColumn<float[]>(column).SelectMany(s => s).ToArray();
        return scored.GetColumn<float>(column).ToArray();
    }

    public static double Accuracy(ITransformer model, IDataView data, string label = "Label")
    {
        var scored = model.Transform(data);
        var truth = scored.GetColumn<ReadOnlyMemory<char>>(label).Select(v => v.ToString()).ToArray();
        var predicted = scored.GetColumn<ReadOnlyMemory<char>>("PredictedLabel").Select(v => v.ToString()).ToArray();
        return truth.Zip(predicted).Count(p => p.First == p.Second) / (double)truth.Length;
    }

    /// <summary>Every entry of the model saved through ML.NET, by name (the zip's own timestamps left out).</summary>
    public static Dictionary<string, byte[]> ZipEntries(MLContext ml, ITransformer model, DataViewSchema schema)
    {
        using var stream = new MemoryStream();
        ml.Model.Save(model, schema, stream);
        stream.Position = 0;
        using var zip = new System.IO.Compression.ZipArchive(stream, System.IO.Compression.ZipArchiveMode.Read);
        return zip.Entries.ToDictionary(e => e.FullName, e =>
        {
            using var entry = e.Open();
            using var bytes = new MemoryStream();
            entry.CopyTo(bytes);
            return bytes.ToArray();
        });
    }

    /// <summary>Asserts that two models save to the same entries, byte for byte.</summary>
    public static void AssertSameEntries(MLContext ml, ITransformer expected, ITransformer actual, DataViewSchema schema)
    {
        var want = ZipEntries(ml, expected, schema);
        var got = ZipEntries(ml, actual, schema);
        Xunit.Assert.Equal(want.Keys.Order(), got.Keys.Order());
        foreach (var (name, bytes) in want) Xunit.Assert.True(bytes.AsSpan().SequenceEqual(got[name]), $"entry {name} differs");
    }

    public static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    public static byte[] Bytes(float[] values) => System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    /// <summary>
    /// The tolerance for scores compared across machines or shapes: a model saved on another CPU, or a score vector that
    /// widened when later tasks brought classes. libtorch picks its kernels by CPU (AVX2, AVX-512 or baseline) and by
    /// shape (a softmax over 3 slots and one over 5 with 2 masked reduce in another order), so such scores may differ in
    /// the last bits; 1e-6 absolute is about 60 ulps of a probability near 0.2. What is promised bit for bit (the same
    /// machine, the same shapes and batching) is compared with <see cref="Bytes"/> instead.
    /// </summary>
    public const float CrossMachineTolerance = 1e-6f;

    /// <summary>Asserts that <paramref name="actual"/> equals <paramref name="expected"/> element by element within <see cref="CrossMachineTolerance"/>.</summary>
    public static void AssertClose(float[] expected, float[] actual, float tolerance = CrossMachineTolerance)
    {
        Xunit.Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            if (!(Math.Abs(expected[i] - actual[i]) <= tolerance))
                throw new Xunit.Sdk.XunitException($"Element {i}: expected {expected[i]:R}, got {actual[i]:R} (tolerance {tolerance:R}).");
    }
}

/// <summary>A fresh folder per test, removed afterwards.</summary>
public sealed class TempFolder : IDisposable
{
    public TempFolder() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "continual-tests-" + Guid.NewGuid().ToString("N"));

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
