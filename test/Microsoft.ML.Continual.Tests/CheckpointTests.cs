using Xunit;

namespace Microsoft.ML.Continual.Tests;

public class CheckpointTests
{
    private static Dictionary<string, string> Settings(string trainer)
    {
        var settings = new Dictionary<string, string>
        {
            ["HiddenLayerSizes"] = "16", ["NumberOfEpochs"] = "4", ["BatchSize"] = "16", ["Dropout"] = "0.2", ["Seed"] = "5",
        };
        if (trainer is "PackNet" or "ProgressiveNetworks") settings["TaskIdColumnName"] = "Task";
        if (trainer == "PackNet") settings["WeightDecay"] = "0.001";
        return settings;
    }

    /// <summary>Trains with checkpoints, is cancelled after epoch <paramref name="stopAfter"/>, then resumes.</summary>
    private static ContinualTransformer Interrupted(MLContext ml, string trainer, IDataView data, ContinualTransformer? previous, string checkpoint, int stopAfter)
    {
        ContinualTrainer create = ml.Continual().Trainers.Create(trainer, Settings(trainer));
        using var cts = new CancellationTokenSource();
        var first = new ContinualFitOptions
        {
            CheckpointPath = checkpoint,
            Progress = p => { if (p.EpochCompleted && p.Epoch == stopAfter - 1) cts.Cancel(); },
        };
        Assert.Throws<OperationCanceledException>(() => (ContinualTransformer)create.Fit(data, previous, first, cts.Token));
        Assert.True(File.Exists(checkpoint));
        bool resumed = false;
        var second = new ContinualFitOptions { CheckpointPath = checkpoint, Resume = true, Progress = p => resumed |= p.ResumedFromCheckpoint };
        ContinualTransformer model = create.Fit(data, previous, second, CancellationToken.None);
        Assert.True(resumed);
        Assert.False(File.Exists(checkpoint)); // removed once the task is done
        return model;
    }

    [Theory]
    [InlineData("FineTune", 2)]
    [InlineData("Ewc", 2)]
    [InlineData("Replay", 2)]
    [InlineData("AGem", 2)]
    [InlineData("Si", 2)]    // the path integral, the task's start and the last step's weights come back from the checkpoint
    [InlineData("RWalk", 3)] // and RWalk's running Fisher and its open window of steps
    [InlineData("ProgressiveNetworks", 2)]
    [InlineData("PackNet", 2)] // before pruning
    [InlineData("PackNet", 5)] // after pruning, during retraining: the owners come back from the checkpoint
    public void ResumedFit_EndsWithTheSameModel_AsAnUninterruptedOne(string trainer, int stopAfter)
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var task1 = TestData.View(ml, 0, [0, 1, 2], 300, 1);
        var task2 = TestData.View(ml, 1, [0, 1, 2], 300, 2);
        ContinualTrainer estimator = ml.Continual().Trainers.Create(trainer, Settings(trainer));
        ContinualTransformer first = estimator.Fit(task1);
        ContinualTransformer straight = estimator.Fit(task2, first, new ContinualFitOptions(), CancellationToken.None);
        var resumed = Interrupted(ml, trainer, task2, first, temp.File("task2.ckpt"), stopAfter);
        var probe = TestData.View(ml, 1, [0, 1, 2], 100, 9);
        Assert.Equal(TestData.Scores(straight, probe), TestData.Scores(resumed, probe));
        // Everything the model keeps for the next task too (SI's and RWalk's importances come from the in-task trackers).
        TestData.AssertSameEntries(ml, straight, resumed, task2.Schema);
    }

    [Fact]
    public void CheckpointOfAnotherJob_IsRefused_WithAClearMessage()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var trainer = (ContinualTrainerBase<FineTuneTrainer.Options>)ml.Continual().Trainers.Create("finetune", Settings("FineTune"));
        using var cts = new CancellationTokenSource();
        var options = new ContinualFitOptions { CheckpointPath = temp.File("job.ckpt"), Progress = p => { if (p.EpochCompleted) cts.Cancel(); } };
        Assert.Throws<OperationCanceledException>(() => trainer.Fit(TestData.View(ml, 0, [0, 1], 200, 1), null, options, cts.Token));
        var other = TestData.View(ml, 0, [0, 1], 200, 2); // other rows
        var e = Assert.Throws<ContinualCheckpointException>(() => trainer.Fit(other, null, new ContinualFitOptions { CheckpointPath = temp.File("job.ckpt"), Resume = true }));
        Assert.Contains("belongs to another job", e.Message);
        File.WriteAllBytes(temp.File("junk.ckpt"), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        Assert.Throws<ContinualCheckpointException>(() => trainer.Fit(other, null, new ContinualFitOptions { CheckpointPath = temp.File("junk.ckpt"), Resume = true }));
    }

    [Fact]
    public void StrategiesWithRunningState_RefuseCheckpoints_BeforeTraining()
    {
        var ml = new MLContext(seed: 1);
        var er = ml.Continual().Trainers.Create("Er", new Dictionary<string, string> { ["HiddenLayerSizes"] = "8" });
        var e = Assert.Throws<NotSupportedException>(() => er.Fit(TestData.View(ml, 0, [0, 1], 50, 1), null, new ContinualFitOptions { CheckpointPath = "unused.ckpt" }));
        Assert.Contains("Er", e.Message);
    }

    [Fact]
    public void CreateByName_ReadsOptionsAsText_AndSaysWhatIsValid()
    {
        var ml = new MLContext(seed: 1);
        var ewc = (EwcTrainer)ml.Continual().Trainers.Create("EWC", new Dictionary<string, string> { ["lambda"] = "1000", ["Mode"] = "Online", ["HiddenLayerSizes"] = "32,16" });
        var model = ewc.Fit(TestData.View(ml, 0, [0, 1], 60, 1));
        var options = (EwcTrainer.Options)model.Options;
        Assert.Equal((1000.0, EwcMode.Online), (options.Lambda, options.Mode));
        Assert.Equal([32, 16], options.HiddenLayerSizes);
        Assert.Contains("Trainers: ", Assert.Throws<ArgumentException>(() => ml.Continual().Trainers.Create("nope")).Message);
        Assert.Contains("Options of this trainer", Assert.Throws<ArgumentException>(() => ml.Continual().Trainers.Create("ewc", new Dictionary<string, string> { ["Lamda"] = "1" })).Message);
        Assert.Contains("one of Separate, Online", Assert.Throws<ArgumentException>(() => ml.Continual().Trainers.Create("ewc", new Dictionary<string, string> { ["Mode"] = "Both" })).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.Continual().Trainers.Create("ewc", new Dictionary<string, string> { ["Lambda"] = "-1" }));
        Assert.IsType<GenerativeReplayTrainer>(ml.Continual().Trainers.Create("generative-replay"));
    }
}
