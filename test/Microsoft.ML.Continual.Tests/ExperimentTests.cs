using System.Text.Json;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

/// <summary>Smaller versions of the Split MNIST benchmark runs (Hsu et al. 2018 protocol, fewer rows and epochs), on real MNIST.</summary>
public class ExperimentTests
{
    private static T Small<T>(T options, ContinualScenario scenario) where T : ContinualTrainerOptions
    {
        options.HiddenLayerSizes = [100];
        options.NumberOfEpochs = 2;
        options.Seed = 1;
        options.TaskIdColumnName = scenario == ContinualScenario.TaskIncremental ? "TaskId" : null;
        return options;
    }

    private static TaskStream SplitMnist(MLContext ml, ContinualScenario scenario) =>
        ml.Continual().Benchmarks.SplitMnist(scenario, trainSamplesPerTask: 4000, testSamplesPerTask: 400, seed: 1);

    [Theory]
    [InlineData(ContinualScenario.TaskIncremental, 0.90, 0.90)]
    [InlineData(ContinualScenario.DomainIncremental, 0.55, 0.85)]
    [InlineData(ContinualScenario.ClassIncremental, 0.15, 0.75)]
    public void SplitMnist_FineTuneAndJoint_ScoreAsThePaperSays(ContinualScenario scenario, double fineTuneAtLeast, double jointAtLeast)
    {
        var ml = new MLContext(seed: 1);
        var stream = SplitMnist(ml, scenario);
        var fineTune = ml.Continual().Run(ml.Continual().Trainers.FineTune(Small(new FineTuneTrainer.Options(), scenario)), stream);
        var joint = ml.Continual().Run(ml.Continual().Trainers.Joint(Small(new JointTrainer.Options(), scenario)), stream);

        Assert.Equal(6, fineTune.Metrics.AccuracyMatrix.Count);
        Assert.Equal(5, fineTune.Models.Count);
        Assert.True(fineTune.Metrics.AverageAccuracy >= fineTuneAtLeast, $"FineTune ACC {fineTune.Metrics.AverageAccuracy}");
        Assert.True(joint.Metrics.AverageAccuracy >= jointAtLeast, $"Joint ACC {joint.Metrics.AverageAccuracy}");
        Assert.True(joint.Metrics.AverageAccuracy > fineTune.Metrics.AverageAccuracy);
        // Every task is learned when it is trained (well above chance for its own classes).
        Assert.All(fineTune.Metrics.JustTrainedScores, s => Assert.True(s > 0.85, $"just-trained score {s}"));
        if (scenario == ContinualScenario.ClassIncremental)
        {
            // Class-incremental fine-tuning predicts only the last task's classes: about 1/5 (van de Ven and Tolias 2019).
            Assert.InRange(fineTune.Metrics.AverageAccuracy, 0.15, 0.25);
            Assert.True(fineTune.Metrics.BackwardTransfer < -0.9);
        }
        // The joint model after task t trained on the rows of tasks 1..t.
        Assert.Equal(20000, joint.Tasks[4].TrainingRows);
        Assert.Equal(4000, fineTune.Tasks[4].TrainingRows);
    }

    [Fact]
    public void Independent_NeverChangesEarlierTasks_AndCannotScoreTasksBeforeTheirModelExists()
    {
        var ml = new MLContext(seed: 1);
        var stream = SplitMnist(ml, ContinualScenario.TaskIncremental).Take(3);
        var result = ml.Continual().Run(ml.Continual().Trainers.Independent(Small(new IndependentTrainer.Options(), ContinualScenario.TaskIncremental)), stream);
        var m = result.Metrics;
        Assert.Equal(0.0, m.BackwardTransfer);
        Assert.True(double.IsNaN(m.ForwardTransfer));
        // Bit-identical scores on task 1 after tasks 2 and 3.
        float[] after1 = TestData.Scores(result.Models[0], stream[0].Test);
        Assert.Equal(TestData.Bytes(after1), TestData.Bytes(TestData.Scores(result.Models[2], stream[0].Test)));
        var last = (ContinualTransformer)result.Models[2];
        Assert.Equal(3 * (784 * 100 + 100 + 100 * 10 + 10), last.ParameterCount);
    }

    [Fact]
    public void Run_RowZeroIsTheUntrainedModel_AndEvaluateAgreesWithRun()
    {
        var ml = new MLContext(seed: 1);
        var stream = SplitMnist(ml, ContinualScenario.ClassIncremental).Take(2);
        var trainer = ml.Continual().Trainers.FineTune(Small(new FineTuneTrainer.Options(), ContinualScenario.ClassIncremental));
        var result = ml.Continual().Run(trainer, stream);
        Assert.All(result.Metrics.AccuracyMatrix[0], r => Assert.InRange(r, 0.0, 0.6)); // untrained: near chance for 10 classes

        ITransformer untrained = ContinualExperiment.FitUntrained(trainer, stream[0].Train, CancellationToken.None);
        var again = ml.Continual().Evaluate(result.Models, stream, untrainedModel: untrained);
        Assert.Equal(result.Metrics.AccuracyMatrix.SelectMany(r => r), again.AccuracyMatrix.SelectMany(r => r));
        var withoutRowZero = ml.Continual().Evaluate(result.Models, stream);
        Assert.True(double.IsNaN(withoutRowZero.ForwardTransfer));
        Assert.Equal(result.Metrics.BackwardTransfer, withoutRowZero.BackwardTransfer);
    }

    [Fact]
    public void OtherScores_MacroAccuracyAucAndRSquared_ComeFromTheStockEvaluators()
    {
        var ml = new MLContext(seed: 1);
        TaskStream Stream(string label) => new("generated", ContinualScenario.DomainIncremental,
            Enumerable.Range(0, 2).Select(t => new ContinualTask($"task{t + 1}", TestData.View(ml, t, [0, 1, 2, 3], 300, 1), TestData.View(ml, t, [0, 1, 2, 3], 200, 2))),
            labelColumnName: label);
        ContinualMetrics Score(string label, ContinualScore score, FineTuneTrainer.Options options)
        {
            options.NumberOfEpochs = label == "Target" ? 20 : 4;
            var stream = Stream(label);
            var trainer = ml.Continual().Trainers.FineTune(options);
            var models = new List<ITransformer> { trainer.Fit(stream[0].Train) };
            models.Add(ml.Continual().Refit(models[0], stream[1].Train));
            return ml.Continual().Evaluate(models, stream, score);
        }
        var hyperplane = ml.Continual().Benchmarks.RotatingHyperplane(numberOfTasks: 2, trainRowsPerTask: 1000, testRowsPerTask: 300, noise: 0);
        var macroRun = ml.Continual().Run(ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options { HiddenLayerSizes = [16], NumberOfEpochs = 10, Seed = 1 }),
            hyperplane, new ContinualRunOptions { Score = ContinualScore.MacroAccuracy });
        var macro = macroRun.Metrics;
        double stock = ml.MulticlassClassification.Evaluate(macroRun.Models[1].Transform(hyperplane[1].Test)).MacroAccuracy;
        Assert.Equal(stock, macro.R(2, 2), 12);
        var auc = Score("BoolLabel", ContinualScore.AreaUnderRocCurve, TestData.Options(label: "BoolLabel"));
        var r2 = Score("Target", ContinualScore.RSquared, TestData.Options(label: "Target"));
        Assert.Equal(ContinualScore.RSquared, r2.Score);
        Assert.InRange(auc.R(2, 2), 0.9, 1.0);
        Assert.InRange(r2.R(2, 2), 0.5, 1.0);
        Assert.True(r2.R(1, 2) < r2.R(2, 2)); // the second task's targets are learned by training on it
        Assert.Equal(ContinualScore.MacroAccuracy, macro.Score);
        Assert.InRange(macro.R(2, 2), 0.6, 1.0); // two classes: 0.5 is chance
    }

    [Fact]
    public void Report_WritesJsonCsvMarkdownAndPlots()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var stream = ml.Continual().Benchmarks.RotatingHyperplane(numberOfTasks: 3, trainRowsPerTask: 300, testRowsPerTask: 100);
        var options = new FineTuneTrainer.Options { HiddenLayerSizes = [8], NumberOfEpochs = 2 };
        var progress = new List<ContinualProgress>();
        var a = ml.Continual().Run(ml.Continual().Trainers.FineTune(options), stream, new ContinualRunOptions { Progress = progress.Add, SaveModelsDirectory = temp.File("models") });
        var b = ml.Continual().Run(ml.Continual().Trainers.Joint(new JointTrainer.Options { HiddenLayerSizes = [8], NumberOfEpochs = 2 }), stream);
        Assert.Equal(3, progress.Count);
        Assert.True(File.Exists(temp.File("models/model-after-task3.zip")));
        Assert.All(a.Tasks, t => { Assert.True(t.SamplesPerSecond > 0); Assert.True(t.PeakWorkingSetBytes > 0); });

        ContinualCharts.SaveComparison([a, b], temp.File("report"));
        foreach (string file in new[] { "comparison.md", "comparison.csv", "comparison.png", "FineTune/metrics.json", "FineTune/matrix.csv",
                     "FineTune/tasks.csv", "FineTune/summary.md", "FineTune/matrix.png", "FineTune/curves.png", "Joint/matrix.png" })
            Assert.True(new FileInfo(temp.File("report/" + file)).Length > 100, file);
        byte[] png = File.ReadAllBytes(temp.File("report/FineTune/matrix.png"));
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
        using var json = JsonDocument.Parse(File.ReadAllText(temp.File("report/FineTune/metrics.json")));
        Assert.Equal(a.Metrics.AverageAccuracy, json.RootElement.GetProperty("averageAccuracy").GetDouble(), 12);
        Assert.Equal(4, json.RootElement.GetProperty("matrix").GetArrayLength());
        Assert.Contains("| FineTune |", File.ReadAllText(temp.File("report/comparison.md")));
    }

    [Fact]
    public void JointModel_CarriesItsStoredTasksThroughSaveAndLoad()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var stream = ml.Continual().Benchmarks.RotatingHyperplane(numberOfTasks: 3, trainRowsPerTask: 200, testRowsPerTask: 50);
        var trainer = ml.Continual().Trainers.Joint(new JointTrainer.Options { HiddenLayerSizes = [8], NumberOfEpochs = 1 });
        var model = trainer.Fit(stream[0].Train);
        model = (ContinualTransformer)ml.Continual().Refit(model, stream[1].Train);
        ml.Model.Save(model, stream[0].Train.Schema, temp.File("joint.zip"));
        var loaded = (ContinualTransformer)ml.Model.Load(temp.File("joint.zip"), out _);
        Assert.Equal(400, loaded.StateSizes["stored rows"]);
        ContinualFitStatistics? statistics = null;
        var next = (ContinualTransformer)ml.Continual().Refit(loaded, stream[2].Train, new ContinualFitOptions { Completed = s => statistics = s });
        Assert.Equal(600, statistics!.Rows);
        Assert.Equal(600, next.StateSizes["stored rows"]);
        Assert.Equal(400, loaded.StateSizes["stored rows"]); // the loaded model did not change
    }
}
