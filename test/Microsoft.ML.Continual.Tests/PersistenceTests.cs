using Xunit;

namespace Microsoft.ML.Continual.Tests;

public class PersistenceTests
{
    private static readonly int[] FirstClasses = [0, 1, 2];

    [Fact]
    public void FreshProcess_LoadsSavedPipeline_WithBitIdenticalScores()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var train = TestData.View(ml, 0, FirstClasses, 300, seed: 1);
        var pipeline = ml.Transforms.NormalizeMinMax("Features")
            .Append(ml.Continual().Trainers.FineTune(TestData.Options()));
        var model = pipeline.Fit(train);
        string path = temp.File("model.zip");
        ml.Model.Save(model, train.Schema, path);

        var test = TestData.View(ml, 0, FirstClasses, 700, seed: 2); // more rows than one scoring block
        float[] expected = TestData.Scores(model, test);
        Program.RunFresh("score", path, "0", "0,1,2", "700", "2", temp.File("scores.bin"));

        Assert.Equal(TestData.Bytes(expected), File.ReadAllBytes(temp.File("scores.bin")));
        // The prediction engine in the fresh process scores the first row exactly as a prediction engine did here.
        var engine = ml.Model.CreatePredictionEngine<Row, TextPrediction>(model);
        float[] first = engine.Predict(TestData.Rows(0, FirstClasses, 1, seed: 2)[0]).Score;
        Assert.Equal(TestData.Bytes(first), File.ReadAllBytes(temp.File("scores.bin.engine")));
    }

    [Fact]
    public void FreshProcess_RefitOfLoadedModel_CarriesOptionsAndState_AndLeavesInputFileUnchanged()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var options = TestData.Options();
        options.HiddenLayerSizes = [12, 10];
        options.NumberOfEpochs = 6;
        var train = TestData.View(ml, 0, [0, 1], 300, seed: 1);
        var model = ml.Transforms.NormalizeMinMax("Features").Append(ml.Continual().Trainers.FineTune(options)).Fit(train);
        string path = temp.File("model.zip"), next = temp.File("next.zip");
        ml.Model.Save(model, train.Schema, path);
        string hashBefore = TestData.Hash(path);

        // Another process loads yesterday's model and refits it on a task that brings classes 2 and 3.
        Program.RunFresh("refit", path, "1", "2,3", "300", "1", next);

        Assert.Equal(hashBefore, TestData.Hash(path));
        var loaded = ml.Model.Load(next, out _);
        var continual = Assert.IsType<ContinualTransformer>(((IEnumerable<ITransformer>)loaded).Last());
        Assert.Equal(2, continual.TasksSeen);
        Assert.Equal(["c0", "c1", "c2", "c3"], continual.Classes);
        Assert.Equal("FineTune", continual.TrainerName);
        Assert.Equal([12, 10], continual.Options.HiddenLayerSizes);
        Assert.Equal(6, continual.Options.NumberOfEpochs);
        // The refitted model learned the new task.
        Assert.True(TestData.Accuracy(loaded, TestData.View(ml, 1, [2, 3], 200, seed: 5)) > 0.9);
    }

    [Fact]
    public void PredictionEngine_OnLoadedModel_MatchesBatchedTransform()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var train = TestData.View(ml, 0, FirstClasses, 300, seed: 1);
        var model = ml.Continual().Trainers.FineTune(TestData.Options()).Fit(train);
        ml.Model.Save(model, train.Schema, temp.File("m.zip"));
        var loaded = ml.Model.Load(temp.File("m.zip"), out _);

        var rows = TestData.Rows(0, FirstClasses, 600, seed: 4);
        var batched = TestData.Scores(loaded, ml.Data.LoadFromEnumerable(rows));
        var engine = ml.Model.CreatePredictionEngine<Row, TextPrediction>(loaded);
        for (int i = 0; i < rows.Count; i += 37)
        {
            var prediction = engine.Predict(rows[i]);
            // One row and a block of rows run through different BLAS kernels, which may round the last bit
            // differently; each path is itself bit-reproducible (see the fresh-process test).
            float[] expected = batched.Skip(i * 3).Take(3).ToArray();
            for (int c = 0; c < 3; c++) Assert.Equal(expected[c], prediction.Score[c], 1e-6f);
            Assert.Equal($"c{Array.IndexOf(prediction.Score, prediction.Score.Max())}", prediction.PredictedLabel);
        }
    }

    [Fact]
    public void SavedModel_FromAnotherTrainer_NameIsRejectedWithClearError()
    {
        var e = Assert.Throws<ContinualModelFormatException>(() => TrainerRegistry.Get("NoSuchTrainer"));
        Assert.Contains("NoSuchTrainer", e.Message);
    }
}
