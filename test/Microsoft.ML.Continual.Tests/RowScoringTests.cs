using Microsoft.ML.Data;
using Microsoft.ML.Continual;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

/// <summary>Single-row scoring (prediction engines) by the managed copy of a perceptron network.</summary>
public class RowScoringTests
{
    private static ContinualTransformer TwoTasks(MLContext ml, ContinualTrainerOptions options, Func<ContinualTrainerOptions, IEstimator<ContinualTransformer>> trainer)
    {
        var first = trainer(options).Fit(ml.Data.LoadFromEnumerable(TaskRows(0)));
        return (ContinualTransformer)ml.Continual().Refit(first, ml.Data.LoadFromEnumerable(TaskRows(1)));
    }

    private static List<Row> TaskRows(int task)
    {
        var rows = TestData.Rows(task, task == 0 ? [0, 1] : [2, 3], 200, seed: 5);
        foreach (var row in rows) row.Task = $"t{task}";
        return rows;
    }

    public static TheoryData<string> Trainers => new() { "FineTune", "PackNet" };

    [Theory]
    [MemberData(nameof(Trainers))]
    public void PredictionEngine_ScoresManaged_AsTransformWithin1e6_FromSeveralThreads(string trainer)
    {
        var ml = new MLContext(seed: 1);
        var options = TestData.Options(taskId: "Task");
        ContinualTransformer model = trainer == "FineTune"
            ? TwoTasks(ml, options, o => ml.Continual().Trainers.FineTune((FineTuneTrainer.Options)o))
            : TwoTasks(ml, new PackNetTrainer.Options { TaskIdColumnName = "Task", HiddenLayerSizes = [16], NumberOfEpochs = 4, BatchSize = 32, LearningRate = 0.01, Seed = 3 },
                o => ml.Continual().Trainers.PackNet((PackNetTrainer.Options)o));
        Assert.True(model.Scorer.ScoresRowsManaged);

        var rows = TaskRows(0).Take(60).Concat(TaskRows(1).Take(60)).ToList();
        float[] batched = TestData.Scores(model, ml.Data.LoadFromEnumerable(rows));
        int classes = batched.Length / rows.Count;
        float[][] Predict()
        {
            var engine = ml.Model.CreatePredictionEngine<Row, TextPrediction>(model);
            return rows.Select(r => engine.Predict(r).Score.ToArray()).ToArray();
        }
        float[][] single = Predict();
        for (int i = 0; i < rows.Count; i++)
            for (int c = 0; c < classes; c++) Assert.Equal(batched[i * classes + c], single[i][c], 1e-6f);
        // A head's other classes get probability 0, as in the batched path.
        Assert.All(single.Take(60), s => Assert.Equal(0f, s[2] + s[3]));

        // Engines on two threads at once (no lock on this path) give exactly what one thread gave.
        var results = new float[2][][];
        Parallel.For(0, 2, t => results[t] = Predict());
        foreach (var result in results)
            for (int i = 0; i < rows.Count; i++) Assert.Equal(TestData.Bytes(single[i]), TestData.Bytes(result[i]));
    }

    [Theory]
    [InlineData(ContinualActivation.ReLU)]
    [InlineData(ContinualActivation.Tanh)]
    public void ManagedKernels_AvxAndPortable_GiveTheSameBits(ContinualActivation activation)
    {
        // 40 and 12 units: a 32-wide block of outputs and a vector-wide tail in the AVX kernel, 4-lane vectors in the other.
        var ml = new MLContext(seed: 1);
        var options = new FineTuneTrainer.Options { HiddenLayerSizes = [40, 12], Activation = activation, NumberOfEpochs = 3, BatchSize = 32, Seed = 4 };
        var model = ml.Continual().Trainers.FineTune(options).Fit(ml.Data.LoadFromEnumerable(TaskRows(0).Concat(TaskRows(1))));
        var fast = DenseInference.TryCreate(model.State)!;
        var portable = DenseInference.TryCreate(model.State, portable: true)!;
        Assert.True(System.Runtime.Intrinsics.X86.Avx.IsSupported, "this test compares the AVX kernel with the portable one");
        var rows = TaskRows(0).Concat(TaskRows(1)).ToList();
        rows[0].Features = new float[6]; // every input zero: the bias alone
        float[] a = new float[fast.OutputSize], b = new float[portable.OutputSize];
        foreach (var row in rows)
        {
            fast.Score(row.Features, 0, a);
            portable.Score(row.Features, 0, b);
            Assert.Equal(TestData.Bytes(a), TestData.Bytes(b));
        }
    }

    [Fact]
    public void Transform_OverSeveralBlocks_GivesTheBitsOfEachBlockScoredAlone_AndNamesABadRow()
    {
        var ml = new MLContext(seed: 1);
        var model = ml.Continual().Trainers.FineTune(TestData.Options()).Fit(ml.Data.LoadFromEnumerable(TaskRows(0)));
        // 700 rows: two whole blocks and a short one.
        var rows = TestData.Rows(0, [0, 1], 700, seed: 9);
        float[] transformed = TestData.Scores(model, ml.Data.LoadFromEnumerable(rows));
        int size = model.Scorer.OutputSize;
        var expected = new List<float>();
        foreach (var block in rows.Chunk(ScoredDataView.BlockSize))
        {
            float[] features = block.SelectMany(r => r.Features).ToArray(), scores = new float[block.Length * size];
            model.Scorer.Score(features, null, block.Length, scores);
            expected.AddRange(scores);
        }
        Assert.Equal(TestData.Bytes(expected.ToArray()), TestData.Bytes(transformed));

        // A bad row in the third block: the data error, naming its row.
        rows[600].Features[1] = float.NaN;
        var e = Assert.Throws<ContinualDataException>(() => TestData.Scores(model, ml.Data.LoadFromEnumerable(rows)));
        Assert.Contains("Row 600", e.Message);

        // A cursor left in the middle of a block disposes cleanly.
        rows[600].Features[1] = 0;
        var scored = model.Transform(ml.Data.LoadFromEnumerable(rows));
        using (var cursor = scored.GetRowCursor(scored.Schema))
            for (int i = 0; i < 300; i++) Assert.True(cursor.MoveNext());

        // The cursor's block lives in libtorch's memory: a dispose scope the caller had open when the cursor was made, and
        // closed before it is read, must not free it.
        DataViewRowCursor outlived;
        using (TorchSharp.torch.NewDisposeScope())
            outlived = scored.GetRowCursor(scored.Schema.Where(c => c.Name == "Score"));
        using (outlived)
        {
            var getter = outlived.GetGetter<VBuffer<float>>(outlived.Schema["Score"]);
            VBuffer<float> score = default;
            var read = new List<float>();
            while (outlived.MoveNext()) { getter(ref score); read.AddRange(score.DenseValues()); }
            Assert.Equal(TestData.Bytes(TestData.Scores(model, ml.Data.LoadFromEnumerable(rows))), TestData.Bytes(read.ToArray()));
        }
    }
}
