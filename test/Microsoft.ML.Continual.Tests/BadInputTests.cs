using Microsoft.ML.Data;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

public class BadInputTests
{
    private readonly MLContext _ml = new(seed: 1);
    private static readonly int[] Classes = [0, 1];

    private ContinualTransformer Trained(FineTuneTrainer.Options? options = null) =>
        _ml.Continual().Trainers.FineTune(options ?? TestData.Options()).Fit(TestData.View(_ml, 0, Classes, 200, seed: 1));

    private static void AssertNames(ContinualDataException e, string column, string expected)
    {
        Assert.Equal(column, e.ColumnName);
        Assert.Contains($"'{column}'", e.Message);
        Assert.Contains(expected, e.Message);
    }

    private sealed class TextFeatures { public string Features { get; set; } = ""; public string Label { get; set; } = ""; }
    private sealed class WideRow { [VectorType(9)] public float[] Features { get; set; } = new float[9]; public string Label { get; set; } = "c0"; }
    private sealed class IntLabelRow { [VectorType(Row.Size)] public float[] Features { get; set; } = new float[Row.Size]; public int Label { get; set; } }

    [Fact]
    public void MissingFeatureColumn_IsNamed()
    {
        var options = TestData.Options();
        options.FeatureColumnName = "Pixels";
        var e = Assert.Throws<ContinualDataException>(() => _ml.Continual().Trainers.FineTune(options).Fit(TestData.View(_ml, 0, Classes, 50, 1)));
        AssertNames(e, "Pixels", "was not found");
    }

    [Fact]
    public void MissingLabelColumn_IsNamed()
    {
        var trainer = _ml.Continual().Trainers.FineTune(TestData.Options(label: "Answer"));
        var data = TestData.View(_ml, 0, Classes, 50, 1);
        AssertNames(Assert.Throws<ContinualDataException>(() => trainer.Fit(data)), "Answer", "was not found");
    }

    [Fact]
    public void WronglyTypedFeatureColumn_IsNamed()
    {
        var data = _ml.Data.LoadFromEnumerable(new[] { new TextFeatures { Features = "x", Label = "a" } });
        AssertNames(Assert.Throws<ContinualDataException>(() => _ml.Continual().Trainers.FineTune(TestData.Options()).Fit(data)), "Features", "known-size vector of Single");
    }

    [Fact]
    public void VariableSizeFeatureVector_IsRejected()
    {
        var data = _ml.Data.LoadFromEnumerable(new[] { new { Features = new float[] { 1, 2 }, Label = "a" } }.Select(r => new VarRow { Features = r.Features, Label = r.Label }));
        AssertNames(Assert.Throws<ContinualDataException>(() => _ml.Continual().Trainers.FineTune(TestData.Options()).Fit(data)), "Features", "variable size");
    }

    private sealed class VarRow { public float[] Features { get; set; } = []; public string Label { get; set; } = ""; }

    [Fact]
    public void DifferentFeatureSize_AtRefitAndAtScoring_IsRejected()
    {
        var model = Trained();
        var wide = _ml.Data.LoadFromEnumerable(new[] { new WideRow() });
        AssertNames(Assert.Throws<ContinualDataException>(() => _ml.Continual().Refit(model, wide)), "Features", "has 9 features; the model was trained with 6");
        AssertNames(Assert.Throws<ContinualDataException>(() => model.Transform(wide)), "Features", "trained with 6");
    }

    [Theory]
    [InlineData(float.NaN, "NaN")]
    [InlineData(float.PositiveInfinity, "infinite")]
    public void NonFiniteFeature_IsNamedWithItsRow(float bad, string expected)
    {
        var rows = TestData.Rows(0, Classes, 20, 1);
        rows[13].Features[2] = bad;
        var e = Assert.Throws<ContinualDataException>(() => _ml.Continual().Trainers.FineTune(TestData.Options()).Fit(_ml.Data.LoadFromEnumerable(rows)));
        AssertNames(e, "Features", expected);
        Assert.Contains("Row 13", e.Message);
        Assert.Contains("slot 2", e.Message);
    }

    [Fact]
    public void EmptyTask_IsRejected()
    {
        var empty = _ml.Data.LoadFromEnumerable(new List<Row>());
        var e = Assert.Throws<ContinualDataException>(() => _ml.Continual().Trainers.FineTune(TestData.Options()).Fit(empty));
        Assert.Contains("no rows", e.Message);
    }

    [Fact]
    public void LabelOfAnotherType_AtRefit_IsRejected()
    {
        var model = Trained(); // text labels
        var data = _ml.Data.LoadFromEnumerable(new[] { new IntLabelRow { Label = 1 } });
        AssertNames(Assert.Throws<ContinualDataException>(() => _ml.Continual().Refit(model, data)), "Label", "the model was trained with ReadOnlyMemory");
    }

    [Fact]
    public void MultiHeadModel_WithoutTaskId_AtPrediction_SaysSo()
    {
        var model = Trained(TestData.Options(taskId: "Task"));
        var withoutTask = _ml.Transforms.DropColumns("Task").Fit(TestData.View(_ml, 0, Classes, 5, 2)).Transform(TestData.View(_ml, 0, Classes, 5, 2));
        var e = Assert.Throws<ContinualDataException>(() => model.Transform(withoutTask));
        AssertNames(e, "Task", "one head per task");
    }

    [Fact]
    public void UnknownTaskId_AtPrediction_ListsTheKnownTasks()
    {
        var model = Trained(TestData.Options(taskId: "Task"));
        var other = model.Transform(TestData.View(_ml, 7, Classes, 5, 2));
        var e = Assert.Throws<ContinualDataException>(() => other.GetColumn<float[]>("Score").ToList());
        Assert.Contains("'task7'", e.Message);
        Assert.Contains("task0", e.Message);
    }

    [Fact]
    public void OutOfRangeOption_IsNamed()
    {
        var options = TestData.Options();
        options.LearningRate = -1;
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => _ml.Continual().Trainers.FineTune(options));
        Assert.Equal("LearningRate", e.ParamName);
    }

    [Fact]
    public void RefitOfSomethingElse_SaysWhatItNeeds()
    {
        var normalizer = _ml.Transforms.NormalizeMinMax("Features").Fit(TestData.View(_ml, 0, Classes, 20, 1));
        var e = Assert.Throws<ArgumentException>(() => _ml.Continual().Refit(normalizer, TestData.View(_ml, 0, Classes, 20, 1)));
        Assert.Contains("does not end in a continual model", e.Message);
    }
}
