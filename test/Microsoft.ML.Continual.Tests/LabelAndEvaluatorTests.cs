using Microsoft.ML.Data;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

public class LabelAndEvaluatorTests
{
    private static readonly int[] Classes = [0, 1, 2, 3];

    [Fact]
    public void KeyLabel_WorksWithStockMulticlassEvaluator()
    {
        var ml = new MLContext(seed: 1);
        var train = TestData.View(ml, 0, Classes, 400, seed: 1);
        var model = ml.Transforms.Conversion.MapValueToKey("Key", "Label")
            .Append(ml.Continual().Trainers.FineTune(TestData.Options(label: "Key")))
            .Fit(train);
        var scored = model.Transform(TestData.View(ml, 0, Classes, 400, seed: 2));
        var metrics = ml.MulticlassClassification.Evaluate(scored, labelColumnName: "Key");
        Assert.True(metrics.MicroAccuracy > 0.9, $"micro accuracy {metrics.MicroAccuracy}");
        Assert.IsType<KeyDataViewType>(scored.Schema["PredictedLabel"].Type);
        // PredictedLabel carries the key's value names, so MapKeyToValue gives back the text.
        var back = ml.Transforms.Conversion.MapKeyToValue("PredictedText", "PredictedLabel").Fit(scored).Transform(scored);
        var texts = back.GetColumn<ReadOnlyMemory<char>>("PredictedText").Select(t => t.ToString()).ToList();
        Assert.All(texts, t => Assert.Contains(t, new[] { "c0", "c1", "c2", "c3" }));
    }

    [Fact]
    public void BoolLabel_IsBinary_AndWorksWithStockBinaryEvaluator()
    {
        var ml = new MLContext(seed: 1);
        var model = ml.Continual().Trainers.FineTune(TestData.Options(label: "BoolLabel")).Fit(TestData.View(ml, 0, Classes, 400, seed: 1));
        Assert.Equal(ContinualPredictionKind.Binary, model.PredictionKind);
        var scored = model.Transform(TestData.View(ml, 0, Classes, 400, seed: 2));
        var metrics = ml.BinaryClassification.Evaluate(scored, labelColumnName: "BoolLabel");
        Assert.True(metrics.Accuracy > 0.9, $"accuracy {metrics.Accuracy}");
        Assert.True(metrics.AreaUnderRocCurve > 0.95, $"AUC {metrics.AreaUnderRocCurve}");
    }

    [Fact]
    public void FloatLabel_IsRegression_AndWorksWithStockRegressionEvaluator()
    {
        var ml = new MLContext(seed: 1);
        var options = TestData.Options(label: "Target");
        options.NumberOfEpochs = 20;
        var model = ml.Continual().Trainers.FineTune(options).Fit(TestData.View(ml, 0, Classes, 400, seed: 1));
        Assert.Equal(ContinualPredictionKind.Regression, model.PredictionKind);
        var metrics = ml.Regression.Evaluate(model.Transform(TestData.View(ml, 0, Classes, 400, seed: 2)), labelColumnName: "Target");
        Assert.True(metrics.RSquared > 0.8, $"R^2 {metrics.RSquared}");
    }

    [Fact]
    public void IntegerLabel_PredictsInItsOwnType()
    {
        var ml = new MLContext(seed: 1);
        var model = ml.Continual().Trainers.FineTune(TestData.Options(label: "IntLabel")).Fit(TestData.View(ml, 0, [3, 5, 9], 300, seed: 1));
        var scored = model.Transform(TestData.View(ml, 0, [3, 5, 9], 300, seed: 2));
        Assert.Equal(NumberDataViewType.Int32, scored.Schema["PredictedLabel"].Type);
        var truth = scored.GetColumn<int>("IntLabel").ToArray();
        var predicted = scored.GetColumn<int>("PredictedLabel").ToArray();
        Assert.True(truth.Zip(predicted).Count(p => p.First == p.Second) > 0.9 * truth.Length);
        Assert.Equal(["3", "5", "9"], model.Classes);
    }

    [Fact]
    public void NewClassesInLaterTask_GrowTheHead_AndOldOutputsStayWhereTheyWere()
    {
        var ml = new MLContext(seed: 1);
        var trainer = ml.Continual().Trainers.FineTune(TestData.Options());
        var first = trainer.Fit(TestData.View(ml, 0, [4, 1], 300, seed: 1));
        Assert.Equal(["c1", "c4"], first.Classes);
        var second = (ContinualTransformer)ml.Continual().Refit(first, TestData.View(ml, 1, [0, 4, 2], 300, seed: 1));
        Assert.Equal(["c1", "c4", "c0", "c2"], second.Classes); // appended, old order kept
        Assert.Equal(4, ((VectorDataViewType)second.Transform(TestData.View(ml, 1, [0], 5, seed: 3)).Schema["Score"].Type).Size);
        Assert.True(TestData.Accuracy(second, TestData.View(ml, 1, [0, 4, 2], 300, seed: 2)) > 0.9);
        Assert.Equal(2, first.Classes.Count); // the first model did not change
    }

    [Fact]
    public void TaskIdColumn_GivesOneHeadPerTask_PredictingOnlyThatTasksClasses()
    {
        var ml = new MLContext(seed: 1);
        var trainer = ml.Continual().Trainers.FineTune(TestData.Options(taskId: "Task"));
        var model = trainer.Fit(TestData.View(ml, 0, [0, 1], 300, seed: 1));
        model = trainer.Fit(TestData.View(ml, 1, [2, 3], 300, seed: 1), model);
        Assert.Equal(["task0", "task1"], model.TaskIds);
        Assert.Equal(2 * (16 * 4 + 4) + 6 * 16 + 16, model.ParameterCount);

        var scored = model.Transform(TestData.View(ml, 0, [0, 1], 200, seed: 2));
        var scores = scored.GetColumn<float[]>("Score").ToList();
        Assert.All(scores, s => { Assert.Equal(0f, s[2]); Assert.Equal(0f, s[3]); });
        Assert.True(TestData.Accuracy(model, TestData.View(ml, 0, [0, 1], 200, seed: 2)) > 0.9);
        Assert.True(TestData.Accuracy(model, TestData.View(ml, 1, [2, 3], 200, seed: 2)) > 0.9);
    }
}
