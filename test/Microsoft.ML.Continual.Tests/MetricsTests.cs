using Xunit;

namespace Microsoft.ML.Continual.Tests;

public class MetricsTests
{
    private static ContinualMetrics Metrics(params double[][] rows) => new(rows.Select(r => (IReadOnlyList<double>)r).ToList());

    [Fact]
    public void ThreeTasks_HandComputed()
    {
        var m = Metrics(
            [0.10, 0.20, 0.30],  // before training
            [0.90, 0.40, 0.35],  // after task 1
            [0.70, 0.95, 0.50],  // after task 2
            [0.60, 0.80, 0.97]); // after task 3
        Assert.Equal(3, m.TaskCount);
        Assert.Equal((0.60 + 0.80 + 0.97) / 3, m.AverageAccuracy, 12);
        // BWT = ((0.60 − 0.90) + (0.80 − 0.95)) / 2; GEM's code would divide by 3 and give −0.15.
        Assert.Equal(-0.225, m.BackwardTransfer, 12);
        // FWT = ((R[1][2] − R[0][2]) + (R[2][3] − R[0][3])) / 2 = (0.20 + 0.20) / 2; without R[0] (Continuum) it would be 0.45.
        Assert.Equal(0.20, m.ForwardTransfer, 12);
        // Forgetting: task 1: max(0.90, 0.70) − 0.60 = 0.30; task 2: max(0.40, 0.95) − 0.80 = 0.15.
        Assert.Equal(0.225, m.AverageForgetting, 12);
        Assert.Equal([0.30, 0.15], m.TaskForgetting.Take(2).Select(v => Math.Round(v, 12)));
        Assert.True(double.IsNaN(m.TaskForgetting[2]));
        Assert.Equal([0.90, 0.95, 0.97], m.JustTrainedScores);
        Assert.Equal([0.60, 0.80, 0.97], m.FinalScores);
    }

    [Fact]
    public void OneTask_HasNoTransferOrForgetting()
    {
        var m = Metrics([0.5], [0.9]);
        Assert.Equal(0.9, m.AverageAccuracy, 12);
        Assert.True(double.IsNaN(m.BackwardTransfer));
        Assert.True(double.IsNaN(m.ForwardTransfer));
        Assert.True(double.IsNaN(m.AverageForgetting));
    }

    [Fact]
    public void TwoTasks_EachMetricHasOneTerm()
    {
        var m = Metrics([0.1, 0.2], [0.8, 0.3], [0.6, 0.9]);
        Assert.Equal(0.75, m.AverageAccuracy, 12);
        Assert.Equal(0.6 - 0.8, m.BackwardTransfer, 12);
        Assert.Equal(0.3 - 0.2, m.ForwardTransfer, 12);
        Assert.Equal(0.8 - 0.6, m.AverageForgetting, 12);
    }

    [Fact]
    public void UndefinedEntries_AreLeftOutOfTheMeans()
    {
        // A task-incremental model cannot score a task before it has a head for it.
        var m = Metrics([double.NaN, double.NaN], [0.9, double.NaN], [0.7, 0.8]);
        Assert.Equal(0.75, m.AverageAccuracy, 12);
        Assert.Equal(-0.2, m.BackwardTransfer, 12);
        Assert.True(double.IsNaN(m.ForwardTransfer));
    }

    [Fact]
    public void MalformedMatrix_IsRejected()
    {
        Assert.Throws<ArgumentException>(() => Metrics([0.5]));
        Assert.Throws<ArgumentException>(() => Metrics([0.1, 0.2], [0.9], [0.5, 0.5]));
    }

    [Fact]
    public void ToString_ShowsMatrixAndSummary()
    {
        string text = Metrics([0.1, 0.2], [0.8, 0.3], [0.6, 0.9]).ToString();
        Assert.Contains("0.8000", text);
        Assert.Contains("BWT -0.2000", text);
    }
}
