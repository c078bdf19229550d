using Xunit;

namespace Microsoft.ML.Continual.Tests;

public class SafetyAndDeterminismTests
{
    private static readonly int[] Classes = [0, 1, 2];

    [Fact]
    public void FailedRefit_LeavesPreviousModelAndFileIntact()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var train = TestData.View(ml, 0, Classes, 300, 1);
        var chain = ml.Transforms.NormalizeMinMax("Features").Append(ml.Continual().Trainers.FineTune(TestData.Options())).Fit(train);
        ml.Model.Save(chain, train.Schema, temp.File("m.zip"));
        string hash = TestData.Hash(temp.File("m.zip"));
        var loaded = ml.Model.Load(temp.File("m.zip"), out _);
        var test = TestData.View(ml, 0, Classes, 200, 2);
        float[] before = TestData.Scores(loaded, test);

        var bad = TestData.Rows(1, Classes, 300, 1);
        bad[250].Features[0] = float.NaN; // found only after most rows were read
        Assert.Throws<ContinualDataException>(() => ml.Continual().Refit(loaded, ml.Data.LoadFromEnumerable(bad)));

        Assert.Equal(before, TestData.Scores(loaded, test));
        Assert.Equal(hash, TestData.Hash(temp.File("m.zip")));
        var continual = (ContinualTransformer)((IEnumerable<ITransformer>)loaded).Last();
        Assert.Equal(1, continual.TasksSeen);
        // And it still refits afterwards.
        var next = ml.Continual().Refit(loaded, TestData.View(ml, 1, Classes, 300, 1));
        Assert.Equal(2, ((ContinualTransformer)((IEnumerable<ITransformer>)next).Last()).TasksSeen);
    }

    [Fact]
    public void CancelledRefit_StopsDuringTraining_AndLeavesPreviousModelIntact()
    {
        var ml = new MLContext(seed: 1);
        var options = TestData.Options();
        options.NumberOfEpochs = 50;
        var model = ml.Continual().Trainers.FineTune(TestData.Options()).Fit(TestData.View(ml, 0, Classes, 300, 1));
        var test = TestData.View(ml, 0, Classes, 200, 2);
        float[] before = TestData.Scores(model, test);

        using var cancellation = new CancellationTokenSource();
        var messages = new List<string>();
        ml.Log += (_, e) => { lock (messages) messages.Add(e.Message); if (e.Message.Contains("epoch 1/")) cancellation.Cancel(); };
        var big = ml.Continual().Trainers.FineTune(options);
        Assert.ThrowsAny<OperationCanceledException>(() => big.Fit(TestData.View(ml, 1, Classes, 3000, 1), model, cancellation.Token));

        Assert.Contains(messages, m => m.Contains("epoch 1/50"));
        Assert.DoesNotContain(messages, m => m.Contains("epoch 3/50"));
        Assert.Equal(before, TestData.Scores(model, test));
        Assert.Equal(1, model.TasksSeen);
    }

    [Fact]
    public void SameSeed_GivesBitIdenticalModels_OtherSeedDoesNot()
    {
        float[] Train(int seed)
        {
            var ml = new MLContext(seed: 1);
            var options = TestData.Options();
            options.Seed = seed;
            options.Dropout = 0.2f; // dropout draws random numbers too
            var trainer = ml.Continual().Trainers.FineTune(options);
            var model = trainer.Fit(TestData.View(ml, 0, Classes, 300, 1));
            model = (ContinualTransformer)ml.Continual().Refit(model, TestData.View(ml, 1, Classes, 300, 1));
            return TestData.Scores(model, TestData.View(ml, 0, Classes, 300, 2));
        }
        float[] a = Train(5), b = Train(5), c = Train(6);
        Assert.Equal(TestData.Bytes(a), TestData.Bytes(b));
        Assert.NotEqual(TestData.Bytes(a), TestData.Bytes(c));
    }

    [Fact]
    public void MLContextSeed_IsTheDefaultSeed()
    {
        float[] Train(int contextSeed)
        {
            var ml = new MLContext(seed: contextSeed);
            var options = TestData.Options();
            options.Seed = null;
            return TestData.Scores(ml.Continual().Trainers.FineTune(options).Fit(TestData.View(ml, 0, Classes, 200, 1)), TestData.View(ml, 0, Classes, 50, 2));
        }
        Assert.Equal(Train(11), Train(11));
        Assert.NotEqual(Train(11), Train(12));
    }

    [Fact]
    public void OptionsAreFrozen_WhenTheTrainerIsCreated()
    {
        var ml = new MLContext(seed: 1);
        var options = TestData.Options();
        var trainer = ml.Continual().Trainers.FineTune(options);
        options.HiddenLayerSizes = [3];
        options.LabelColumnName = "Nope";
        var model = trainer.Fit(TestData.View(ml, 0, Classes, 100, 1));
        Assert.Equal([16], model.Options.HiddenLayerSizes);
        model.Options.NumberOfEpochs = 99; // a copy: the model is not changed
        Assert.Equal(4, model.Options.NumberOfEpochs);
    }

    [Fact]
    public void Progress_GoesToMLContextLog()
    {
        var ml = new MLContext(seed: 1);
        var messages = new List<string>();
        ml.Log += (_, e) => { lock (messages) messages.Add(e.Message); };
        ml.Continual().Trainers.FineTune(TestData.Options()).Fit(TestData.View(ml, 0, Classes, 100, 1));
        Assert.Contains(messages, m => m.Contains("epoch 4/4: loss") && m.Contains("training accuracy"));
    }

    [Fact]
    public void WarmStartWithAnotherArchitecture_ListsTheDifferences()
    {
        var ml = new MLContext(seed: 1);
        var model = ml.Continual().Trainers.FineTune(TestData.Options()).Fit(TestData.View(ml, 0, Classes, 100, 1));
        var options = TestData.Options();
        options.HiddenLayerSizes = [8];
        var e = Assert.Throws<ArgumentException>(() => ml.Continual().Trainers.FineTune(options).Fit(TestData.View(ml, 1, Classes, 100, 1), model));
        Assert.Contains("HiddenLayerSizes [16] vs [8]", e.Message);
    }
}
