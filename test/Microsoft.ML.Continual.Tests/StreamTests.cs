using System.IO.Compression;
using Microsoft.ML.Data;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

public class StreamTests
{
    private readonly MLContext _ml = new(seed: 1);

    private sealed class Small
    {
        [VectorType(9)] public float[] Features { get; set; } = [];
        public int Label { get; set; }
    }

    private IDataView SmallData(int rows) => _ml.Data.LoadFromEnumerable(Enumerable.Range(0, rows).Select(i => new Small
    {
        Features = Enumerable.Range(0, 9).Select(d => (float)(i * 10 + d)).ToArray(),
        Label = i % 4,
    }));

    private static List<float[]> Features(IDataView data) => data.GetColumn<float[]>("Features").ToList();

    private static List<uint> Labels(IDataView data) => data.GetColumn<uint>("Label").ToList();

    [Fact]
    public void Permuted_AppliesOneFixedPermutationPerTask_KeepsLabels_AndIsSeeded()
    {
        var stream = TaskStream.Permuted(SmallData(20), SmallData(8), numberOfTasks: 3, seed: 4);
        Assert.Equal(ContinualScenario.DomainIncremental, stream.Scenario);
        var source = Features(SmallData(20));
        var first = Features(stream[0].Train);
        var second = Features(stream[1].Train);
        for (int r = 0; r < 20; r++)
        {
            Assert.Equal(source[r].Order(), first[r].Order()); // a permutation of the same row
            // the same permutation for every row of a task: position of feature d is fixed
            Assert.Equal(first[0].Select(v => (int)v % 10), first[r].Select(v => (int)v % 10));
        }
        Assert.NotEqual(first[0], second[0]);
        Assert.Equal(Labels(stream[2].Train).Select(k => k - 1), Enumerable.Range(0, 20).Select(i => (uint)(i % 4)));
        var again = TaskStream.Permuted(SmallData(20), SmallData(8), numberOfTasks: 3, seed: 4);
        Assert.Equal(Features(again[1].Test), Features(stream[1].Test));
    }

    [Theory]
    [InlineData(ContinualScenario.TaskIncremental)]
    [InlineData(ContinualScenario.DomainIncremental)]
    [InlineData(ContinualScenario.ClassIncremental)]
    public void Split_HoldsEachGroupsClasses_LabelledAsTheScenarioDefines(ContinualScenario scenario)
    {
        var stream = TaskStream.Split(SmallData(40), SmallData(16), scenario, [[0, 1], [2, 3]]);
        Assert.Equal(scenario, stream.Scenario);
        var secondLabels = Labels(stream[1].Train).Select(k => (int)k - 1).ToList();
        var labelType = (KeyDataViewType)stream[1].Train.Schema["Label"].Type;
        if (scenario == ContinualScenario.DomainIncremental)
        {
            Assert.Equal(2UL, labelType.Count);
            Assert.Equal([0, 1], secondLabels.Distinct().Order());
        }
        else
        {
            Assert.Equal(4UL, labelType.Count);
            Assert.Equal([2, 3], secondLabels.Distinct().Order());
        }
        Assert.All(stream[1].Train.GetColumn<ReadOnlyMemory<char>>("TaskId"), id => Assert.Equal("task2", id.ToString()));
        Assert.Equal(20, secondLabels.Count);
    }

    [Fact]
    public void Rotated_ByZeroIsTheImage_AndByNinetyTurnsIt()
    {
        // A 3x3 image with one bright pixel at the top middle.
        var image = new Small { Features = [0, 1, 0, 0, 0, 0, 0, 0, 0], Label = 0 };
        var data = _ml.Data.LoadFromEnumerable(new[] { image });
        var stream = TaskStream.Rotated(data, data, 3, 3, numberOfTasks: 2, minAngle: 0, maxAngle: 180); // 0° and 90°
        Assert.Equal(image.Features, Features(stream[0].Train)[0]);
        // Turned by 90° about the centre, the top-middle pixel lands in the middle of the right side (index 5).
        float[] turned = Features(stream[1].Train)[0];
        Assert.Equal(1f, turned[5], 4);
        Assert.Equal(1f, turned.Sum(), 4);
    }

    [Fact]
    public void RotatingHyperplane_NeedsNoData_AndIsReproducible()
    {
        var a = _ml.Continual().Benchmarks.RotatingHyperplane(numberOfTasks: 3, trainRowsPerTask: 50, testRowsPerTask: 20, seed: 2);
        var b = _ml.Continual().Benchmarks.RotatingHyperplane(numberOfTasks: 3, trainRowsPerTask: 50, testRowsPerTask: 20, seed: 2);
        Assert.Equal(3, a.Count);
        Assert.Equal(Features(a[2].Train), Features(b[2].Train));
        Assert.Equal(Labels(a[2].Train), Labels(b[2].Train));
        Assert.Contains(1u, Labels(a[0].Train));
        Assert.Contains(2u, Labels(a[0].Train));
    }

    [Fact]
    public void IdxReader_ReadsRawAndGzip_AndRejectsTruncatedFiles()
    {
        using var temp = new TempFolder();
        byte[] idx = [0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 6];
        File.WriteAllBytes(temp.File("raw"), idx);
        using (var gz = new GZipStream(File.Create(temp.File("packed.gz")), CompressionLevel.Fastest)) gz.Write(idx);
        foreach (string name in new[] { "raw", "packed.gz" })
        {
            var (dims, data) = MnistData.ReadIdx(temp.File(name));
            Assert.Equal([2, 3], dims);
            Assert.Equal(new byte[] { 1, 2, 3, 4, 5, 6 }, data);
        }
        File.WriteAllBytes(temp.File("short"), idx[..15]);
        Assert.Contains("truncated", Assert.Throws<InvalidDataException>(() => MnistData.ReadIdx(temp.File("short"))).Message);
        File.WriteAllBytes(temp.File("foreign"), [1, 2, 3, 4, 5, 6, 7, 8]);
        Assert.Throws<InvalidDataException>(() => MnistData.ReadIdx(temp.File("foreign")));
    }

    [Fact]
    public void MnistLoad_FromAFolderWithoutTheFiles_SaysWhatToDo()
    {
        using var temp = new TempFolder();
        var e = Assert.Throws<FileNotFoundException>(() => MnistData.Load(temp.Path));
        Assert.Contains("train-images-idx3-ubyte", e.Message);
        Assert.Contains("EnsureAvailable", e.Message);
    }

    [Fact]
    public void Mnist_IsTheFullVerifiedDataSet()
    {
        var (train, test) = MnistData.Load(MnistData.EnsureAvailable());
        Assert.Equal(60_000, train.Count);
        Assert.Equal(10_000, test.Count);
        Assert.Equal(784 * 60_000, train.Pixels.Length);
        Assert.InRange(train.Pixels.Max(), 0.99f, 1f);
        Assert.Equal(Enumerable.Range(0, 10).Select(d => (byte)d), test.Labels.Distinct().Order());
    }
}
