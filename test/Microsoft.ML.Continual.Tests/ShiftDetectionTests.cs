using System.IO.Compression;
using System.Text.Json;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

/// <summary>Shift detection: the tests' arithmetic on hand-checked numbers, their level and power over many seeds, and the
/// reference sample a model keeps through save, load and refit.</summary>
public sealed class ShiftDetectionTests
{
    [Fact]
    public void KolmogorovSmirnov_HandCheckedStatistics_PValues_AndHolm()
    {
        // ECDFs after 1..6: (.25,0) (.5,0) (.75,.25) (1,.5) (1,.75) (1,1): the largest gap is 0.5.
        Assert.Equal(0.5, ShiftTest.KolmogorovSmirnov([1, 2, 3, 4], [3, 4, 5, 6]), 12);
        // Ties step together: after 0, 2/3 vs 1/3; after 1, 1 vs 1.
        Assert.Equal(1.0 / 3, ShiftTest.KolmogorovSmirnov([0, 0, 1], [0, 1, 1]), 12);
        Assert.Equal(0, ShiftTest.KolmogorovSmirnov([2, 2, 5], [5, 2, 2]), 12);
        // Q(1) = 2(e^-2 - e^-8 + e^-18 ...) = 0.27000; Q(1.358) = 0.0500, the 5% point of the Kolmogorov distribution.
        Assert.Equal(2 * (Math.Exp(-2) - Math.Exp(-8) + Math.Exp(-18)), ShiftTest.KolmogorovQ(1), 9);
        Assert.Equal(0.0500, ShiftTest.KolmogorovQ(1.358), 4);
        Assert.Equal(1, ShiftTest.KolmogorovQ(0.1));
        // Holm: sorted 0.01 x4 = 0.04, 0.03 x3 = 0.09, 0.04 x2 = 0.08 -> 0.09 (monotone), 0.5 x1 = 0.5; in the input's order.
        var adjusted = ShiftTest.Holm([0.01, 0.04, 0.03, 0.5]);
        Assert.Equal([0.04, 0.09, 0.09, 0.5], adjusted.Select(p => Math.Round(p, 12)));
    }

    [Fact]
    public void Mmd_OnTwoPointsPerSample_IsTheHandComputedValue_AndThePermutationPValueCountsTheSplits()
    {
        // Pooled {0, 0, 1, 1} standardizes to {-1, -1, 1, 1}: squared distances 0 within a sample, 4 across; the median of
        // the six pairs {0, 0, 4, 4, 4, 4} is 4, so k = 1 within and e^-1 across and MMD² = 1 + 1 - 2/e.
        var x = new ShiftReference([0, 0], 2, 1);
        var y = new ShiftReference([1, 1], 2, 1);
        var (p, mmd) = ShiftTest.MmdPermutationTest(x, y, [0], 1999, seed: 4);
        Assert.Equal(2 - 2 / Math.E, mmd, 12);
        // Of the six equally likely splits of four rows into two pairs, two give the observed value (it and its mirror).
        Assert.InRange(p, 1.0 / 3 - 0.03, 1.0 / 3 + 0.03);
    }

    [Fact]
    public void TheTest_KeepsItsLevel_OverManySeeds_AndFindsAShiftOfOneFeature()
    {
        // 300 seeds of 60 reference and 60 new rows of six Gaussian features: under no shift the permutation test rejects at
        // most alpha of the time (valid at any sample size): 15 of 300 expected.
        var options = new ShiftDetectionOptions { Permutations = 99 };
        var names = Enumerable.Range(0, 6).Select(i => $"f{i}").ToArray();
        int falseAlarms = 0, detections = 0, located = 0;
        for (int seed = 0; seed < 300; seed++)
        {
            var random = new Random(seed);
            var reference = Gaussian(random, 60, 6, shift: 0);
            var same = Gaussian(random, 60, 6, shift: 0);
            if (ShiftTest.Run(reference, same, names, options.WithSeed(seed)).PValue < 0.05) falseAlarms++;
            if (seed >= 100) continue;
            var moved = Gaussian(random, 60, 6, shift: 1); // feature 2 moves by one standard deviation
            var result = ShiftTest.Run(reference, moved, names, options.WithSeed(seed));
            if (result.PValue < 0.05) detections++;
            if (result.ShiftedFeatures.Count > 0 && result.ShiftedFeatures[0].Name == "f2") located++;
        }
        // At a true level of 0.05 more than 23 false alarms (7.7%) happen with probability 0.02; a test that ignored the
        // pooled standardization or counted permutations wrongly would exceed it.
        Assert.InRange(falseAlarms, 0, 23);
        Assert.True(detections >= 90, $"{detections} of 100 one-sd shifts detected");
        Assert.True(located >= 85, $"{located} of 100 shifts located in f2");
    }

    [Fact]
    public void AModel_KeepsASampleOfItsFit_AndTellsSameDataFromShiftedData_ThroughSaveAndLoad()
    {
        var ml = new MLContext(seed: 1);
        var options = TestData.Options();
        var train = ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1, 2], 300, seed: 1));
        var model = ml.Continual().Trainers.FineTune(options).Fit(train);
        Assert.Equal(300, model.ShiftReferenceRows); // every row: fewer than the default 500

        var heldOut = TestData.Rows(0, [0, 1, 2], 300, seed: 2);
        var same = ml.Continual().DetectShift(model, ml.Data.LoadFromEnumerable(heldOut));
        Assert.False(same.Shifted, same.ToString());
        Assert.Equal(300, same.ReferenceRows);
        Assert.Equal(300, same.Rows);
        Assert.Equal(6, same.FeaturesCompared);

        // Another task (other centres), the features permuted, a class-prior change (one class only) and one feature moved.
        var otherTask = ml.Data.LoadFromEnumerable(TestData.Rows(1, [0, 1, 2], 300, seed: 2));
        var permuted = ml.Data.LoadFromEnumerable(heldOut.Select(r => new Row { Features = [r.Features[1], r.Features[0], .. r.Features[2..]], Label = r.Label }));
        var oneClass = ml.Data.LoadFromEnumerable(TestData.Rows(0, [2], 300, seed: 2));
        var moved = ml.Data.LoadFromEnumerable(heldOut.Select(r => new Row { Features = r.Features.Select((v, i) => i == 3 ? v + 2f : v).ToArray(), Label = r.Label }));
        foreach (var shifted in new[] { otherTask, permuted, oneClass, moved })
        {
            var report = ml.Continual().DetectShift(model, shifted);
            Assert.True(report.Shifted, report.ToString());
            Assert.Equal(1.0 / 500, report.FeaturesPValue); // no permutation reaches the observed MMD
            Assert.Equal(Math.Min(1, 2 * Math.Min(report.FeaturesPValue, report.Predictions!.PValue)), report.PValue); // Bonferroni over the two tests
            Assert.True(report.MaximumMeanDiscrepancy > 10 * same.MaximumMeanDiscrepancy, report.ToString());
        }
        var movedReport = ml.Continual().DetectShift(model, moved);
        Assert.Equal(3, movedReport.Features[0].Index);
        Assert.Equal("Features[3]", movedReport.Features[0].Name);
        Assert.True(movedReport.Features[0].MeanShift > 0.5, movedReport.ToString());
        var permutedReport = ml.Continual().DetectShift(model, permuted);
        Assert.Equal([0, 1], permutedReport.Features.Select(f => f.Index).Order());

        // The sample travels in the zip: the loaded model gives the same report to the last bit.
        using var temp = new TempFolder();
        ml.Model.Save(model, train.Schema, temp.File("m.zip"));
        var loaded = ml.Continual().LoadModel(temp.File("m.zip"), out _);
        var again = ml.Continual().DetectShift(loaded, moved);
        Assert.Equal(movedReport.PValue, again.PValue);
        Assert.Equal(movedReport.MaximumMeanDiscrepancy, again.MaximumMeanDiscrepancy);
        Assert.Equal(movedReport.ToString(), again.ToString());

        // A refit replaces the sample with its own task's rows: task 1 is now the reference.
        var refit = ml.Continual().Refit(loaded, ml.Data.LoadFromEnumerable(TestData.Rows(1, [0, 1, 2], 400, seed: 3)));
        Assert.False(ml.Continual().DetectShift(refit, otherTask).Shifted);
        Assert.True(ml.Continual().DetectShift(refit, ml.Data.LoadFromEnumerable(heldOut)).Shifted);
        Assert.Equal(400, ml.Continual().DetectShift(refit, otherTask).ReferenceRows);
    }

    [Fact]
    public void TheOutputsTest_HandCheckedShares_AndItsLevelOverManySeeds()
    {
        // Reference predicted 0, 0, 1, 1 (shares ½, ½); new 0, 0, 0, 1 (¾, ¼): total variation ½(¼ + ¼) = ¼.
        var shift = PredictionShiftTest.Classes([0, 0, 1, 1], [0, 0, 0, 1], 3, ["a", "b", "c"], 99, seed: 1);
        Assert.Equal(0.25, shift.EffectSize, 12);
        Assert.Equal(PredictionShiftTest.ClassesTest, shift.Test);
        Assert.Equal(["a", "b", "c"], shift.Classes.Select(c => c.Name)); // the largest change first, then by index
        Assert.Equal((0.5, 0.75), (shift.Classes[0].ReferenceShare, shift.Classes[0].NewShare));
        Assert.Equal((0.0, 0.0), (shift.Classes[2].ReferenceShare, shift.Classes[2].NewShare));
        // The same counts in another order: the statistic is the observed one in every permutation, so p = 1.
        Assert.Equal(1, PredictionShiftTest.Classes([0, 1, 0, 1], [1, 0, 1, 0], 2, [], 99, seed: 2).PValue);

        // Under no shift the permutation test rejects at most alpha of the time: 15 of 300 expected; more than 23 happens
        // with probability 0.02. The first of four classes growing from a quarter to a half of 200 rows is found nearly always
        // (Pearson's X² with 3 degrees of freedom, non-centrality about 27: power about 0.99).
        int classAlarms = 0, found = 0;
        for (int seed = 0; seed < 300; seed++)
        {
            var random = new Random(seed);
            int[] Classes(int rows, double firstWeight) => Enumerable.Range(0, rows).Select(_ =>
                random.NextDouble() < firstWeight ? 0 : 1 + random.Next(3)).ToArray();
            if (PredictionShiftTest.Classes(Classes(200, 0.25), Classes(200, 0.25), 4, [], 99, seed).PValue < 0.05) classAlarms++;
            if (seed < 100 && PredictionShiftTest.Classes(Classes(200, 0.25), Classes(200, 0.5), 4, [], 99, seed).PValue < 0.05) found++;
        }
        Assert.InRange(classAlarms, 0, 23);
        Assert.True(found >= 90, $"{found} of 100 prior changes (first class 25% -> 50%) found");
    }

    [Fact]
    public void AChangeOfTheClassesPrior_IsFoundInTheModelsOutputs_WithTheClassThatGrew()
    {
        var ml = new MLContext(seed: 1);
        var model = ml.Continual().Trainers.FineTune(TestData.Options()).Fit(ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1, 2], 300, seed: 1)));
        // Held-out rows in the training proportions, then the same classes with class 0 twice as common as each other (½, ¼, ¼).
        var same = ml.Continual().DetectShift(model, ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1, 2], 300, seed: 2)));
        Assert.False(same.Shifted, same.ToString());
        Assert.True(same.PValue > 0.2, same.ToString()); // far from the level: the same decision on another machine's kernels
        Assert.Equal(PredictionShiftTest.ClassesTest, same.Predictions!.Test);
        var tilted = TestData.Rows(0, [0], 150, seed: 3).Concat(TestData.Rows(0, [1, 2], 150, seed: 4)).ToList();
        var report = ml.Continual().DetectShift(model, ml.Data.LoadFromEnumerable(tilted));
        Assert.True(report.Shifted, report.ToString());
        Assert.True(report.Predictions!.PValue < 0.01, report.ToString());
        var grew = report.Predictions.Classes[0];
        Assert.Equal("c0", grew.Name);
        Assert.InRange(grew.NewShare, 0.45, 0.55);       // the classes are apart: predictions follow the labels
        Assert.InRange(grew.ReferenceShare, 0.28, 0.39);
        Assert.InRange(report.Predictions.EffectSize, 0.1, 0.25);
        Assert.Contains("outputs p = ", report.ToString());

        // A model that predicts per task is tested on its features only (its reference rows keep no task ids).
        var perTask = ml.Continual().Trainers.FineTune(TestData.Options(taskId: "Task")).Fit(ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1, 2], 300, seed: 1)));
        var featuresOnly = ml.Continual().DetectShift(perTask, ml.Data.LoadFromEnumerable(tilted));
        Assert.Null(featuresOnly.Predictions);
        Assert.Equal(featuresOnly.FeaturesPValue, featuresOnly.PValue);
    }

    [Fact]
    public void ThePredictedClassesTest_KeepsItsLevel_WhenTheReferenceRowsAreTheModelsTrainingRows()
    {
        // The product's case: the reference is a sample of the rows the model trained on (with their defaults, 5 epochs and
        // up to 200 boosting rounds: fitted closely), the new rows are unseen rows of the same distribution. 20 new samples each:
        // at a level of 0.05, more than 4 alarms happen with probability 0.016.
        var ml = new MLContext(seed: 1);
        var network = ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options { HiddenLayerSizes = [32], Seed = 1 })
            .Fit(ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1, 2], 300, seed: 1, spread: 1.5f)));
        IDataView Binary(int seed) => ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1], 300, seed, spread: 1.5f).Select(r => new BinaryRow { Features = r.Features, Label = r.BoolLabel }));
        var trees = ml.Continual().Trainers.LightGbm(new Trees.ContinualLightGbmTrainer.Options()).Fit(Binary(1));
        int networkAlarms = 0, treesAlarms = 0;
        for (int seed = 2; seed < 22; seed++)
        {
            var options = new ShiftDetectionOptions { Seed = seed };
            if (ml.Continual().DetectShift(network, ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1, 2], 300, seed, spread: 1.5f)), options).Predictions!.PValue < 0.05) networkAlarms++;
            if (ml.Continual().DetectShift(trees, Binary(seed), options).Predictions!.PValue < 0.05) treesAlarms++;
        }
        Assert.InRange(networkAlarms, 0, 4);
        Assert.InRange(treesAlarms, 0, 4);
    }

    [Fact]
    public void OnMnist_HeldOutDigitsAreNotAShift_AndRotatedDigitsAre()
    {
        // The known shifts on images: a rotation (15° and 45°, the drift benchmark's power on them is 1.00) against
        // held-out digits of the same angle; a permutation is the drift sample's case and the Gaussian cases above.
        var ml = new MLContext(seed: 1);
        var stream = ml.Continual().Benchmarks.RotatedMnist([0.0, 15.0, 45.0], trainSamplesPerTask: 1000, testSamplesPerTask: 300, seed: 1);
        var model = ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options { HiddenLayerSizes = [64], NumberOfEpochs = 1, Seed = 1 }).Fit(stream[0].Train);
        // Unseen training-set images at 0° (MNIST's test images are themselves a small shift: the drift benchmark).
        var unseen = ml.Continual().Benchmarks.RotatedMnist([0.0], trainSamplesPerTask: 300, seed: 2)[0].Train;
        var same = ml.Continual().DetectShift(model, unseen);
        Assert.False(same.Shifted, same.ToString());
        Assert.True(same.PValue > 0.2, same.ToString()); // far from the level: the same decision on another machine's kernels
        Assert.Equal(300, same.Rows);
        foreach (int task in new[] { 1, 2 })
        {
            var rotated = ml.Continual().DetectShift(model, stream[task].Test);
            Assert.True(rotated.Shifted, rotated.ToString());
            Assert.Equal(1.0 / 500, rotated.FeaturesPValue); // no permutation reaches the observed MMD
            Assert.True(rotated.ShiftedFeatureCount > 10, rotated.ToString()); // the pixels that moved are named
        }
    }

    [Fact]
    public void ABoostedTreesModel_KeepsASampleOfItsFit_AndTellsSameDataFromShiftedData_ThroughSaveAndLoad()
    {
        var ml = new MLContext(seed: 1);
        IDataView Binary(int task, int seed) => ml.Data.LoadFromEnumerable(TestData.Rows(task, [0, 1], 300, seed).Select(r => new BinaryRow { Features = r.Features, Label = r.BoolLabel }));
        var train = Binary(0, 1);
        var options = new Trees.ContinualLightGbmTrainer.Options { NumberOfIterations = 5 };
        var trees = ml.Continual().Trainers.LightGbm(options).Fit(train);
        Assert.Equal(300, trees.ShiftReferenceRows); // every row: fewer than the default 500
        var same = ml.Continual().DetectShift(trees, Binary(0, 2));
        Assert.False(same.Shifted, same.ToString());
        Assert.Equal(6, same.FeaturesCompared);
        var other = ml.Continual().DetectShift(trees, Binary(1, 2));
        Assert.True(other.Shifted, other.ToString());
        Assert.Equal(["False", "True"], other.Predictions!.Classes.Select(c => c.Name).Order()); // binary: the predicted labels' shares

        // The sample travels in the zip.
        using var temp = new TempFolder();
        ml.Model.Save(trees, train.Schema, temp.File("trees.zip"));
        var loaded = ml.Continual().LoadModel(temp.File("trees.zip"), out _);
        Assert.Equal(other.ToString(), ml.Continual().DetectShift(loaded, Binary(1, 2)).ToString());

        // Read as a stream (MaximumRowsPerPeriod): the trees train on 100 rows, the reference samples all 300 read.
        var streamed = ml.Continual().Trainers.LightGbm(new Trees.ContinualLightGbmTrainer.Options { NumberOfIterations = 5, MaximumRowsPerPeriod = 100 }).Fit(train);
        Assert.Equal(300, streamed.ShiftReferenceRows);
        // None kept: the error says how to keep one.
        var none = ml.Continual().Trainers.LightGbm(new Trees.ContinualLightGbmTrainer.Options { NumberOfIterations = 5, ShiftReferenceRows = 0 }).Fit(train);
        Assert.Contains("ShiftReferenceRows", Assert.Throws<InvalidOperationException>(() => ml.Continual().DetectShift(none, Binary(1, 2))).Message);
    }

    [Fact]
    public void ThroughAChain_TheRowsAreComparedAsTheNetworkSeesThem_WithTheSlotNames()
    {
        var ml = new MLContext(seed: 1);
        var pipeline = ml.Transforms.Concatenate("Features", "X0", "X1", "X2", "X3", "X4", "X5")
            .Append(ml.Continual().Trainers.FineTune(TestData.Options()));
        IDataView Columns(int seed, float addToLastThree) => ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1], 200, seed).Select(r => new SixColumns
        {
            X0 = r.Features[0], X1 = r.Features[1], X2 = r.Features[2],
            X3 = r.Features[3] + addToLastThree, X4 = r.Features[4] + addToLastThree, X5 = r.Features[5] + addToLastThree, Label = r.Label,
        }));
        var model = pipeline.Fit(Columns(1, 0));
        var report = ml.Continual().DetectShift(model, Columns(5, 3));
        Assert.True(report.Shifted);
        Assert.Equal(3, report.ShiftedFeatureCount);
        Assert.Equal(["X3", "X4", "X5"], report.Features.Select(f => f.Name).Order()); // Concatenate's slot names
        Assert.False(ml.Continual().DetectShift(model, Columns(5, 0)).Shifted);
    }

    private sealed class SixColumns
    {
        public float X0 { get; set; }
        public float X1 { get; set; }
        public float X2 { get; set; }
        public float X3 { get; set; }
        public float X4 { get; set; }
        public float X5 { get; set; }
        public string Label { get; set; } = "";
    }

    private sealed class TwoColumns
    {
        [Microsoft.ML.Data.VectorType(3)] public float[] A { get; set; } = [];
        [Microsoft.ML.Data.VectorType(3)] public float[] B { get; set; } = [];
        public string Label { get; set; } = "";
    }

    [Fact]
    public void BadRequests_AreRefused_WithWhatIsWrong()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1], 100, seed: 1));
        var options = TestData.Options();
        options.ShiftReferenceRows = 0;
        var keepsNone = ml.Continual().Trainers.FineTune(options).Fit(train);
        Assert.Equal(0, keepsNone.ShiftReferenceRows);
        var none = Assert.Throws<InvalidOperationException>(() => ml.Continual().DetectShift(keepsNone, train));
        Assert.Contains("ShiftReferenceRows 0", none.Message);
        using (var temp = new TempFolder())
        {
            ml.Model.Save(keepsNone, train.Schema, temp.File("none.zip"));
            using var zip = ZipFile.OpenRead(temp.File("none.zip"));
            Assert.DoesNotContain(zip.Entries, e => e.Name == "ShiftReference.bin"); // no training rows in the file
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options { ShiftReferenceRows = 2001 }));

        var model = ml.Continual().Trainers.FineTune(TestData.Options()).Fit(train);
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.Continual().DetectShift(model, train, new ShiftDetectionOptions { Alpha = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.Continual().DetectShift(model, train, new ShiftDetectionOptions { Permutations = 5 }));
        // 499 permutations cannot give a p-value below 0.001: refused rather than never detecting anything. A classifier's
        // decision doubles the smaller of its two p-values, so it needs twice as many (1999 give 2/2000, not below 0.001);
        // two data views are compared on the features alone.
        var never = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Continual().DetectShift(model, train, new ShiftDetectionOptions { Alpha = 0.001 }));
        Assert.Contains("at least 2000 permutations", never.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.Continual().DetectShift(model, train, new ShiftDetectionOptions { Alpha = 0.001, Permutations = 1999 }));
        Assert.False(ml.Continual().DetectShift(model, train, new ShiftDetectionOptions { Alpha = 0.001, Permutations = 2999 }).Shifted);
        var views = Assert.Throws<ArgumentOutOfRangeException>(() => ml.Continual().DetectShift(train, train, new ShiftDetectionOptions { Alpha = 0.001 }));
        Assert.Contains("at least 1000 permutations", views.Message);
        var few = Assert.Throws<ArgumentException>(() => ml.Continual().DetectShift(model, ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1], 5, seed: 2))));
        Assert.Contains("5 rows", few.Message);
        var nan = TestData.Rows(0, [0, 1], 50, seed: 2);
        nan[7].Features[2] = float.NaN;
        var bad = Assert.Throws<ContinualDataException>(() => ml.Continual().DetectShift(model, ml.Data.LoadFromEnumerable(nan)));
        Assert.Contains("Row 7", bad.Message);
        var wide = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 20).Select(i => new TwoColumns { A = [i, 1, 2], B = [3, 4, 5], Label = "c0" }));
        Assert.Throws<ContinualDataException>(() => ml.Continual().DetectShift(model, wide)); // no Features column
    }

    [Fact]
    public void ADamagedReferenceEntry_FailsTheLoad_NamingIt()
    {
        var ml = new MLContext(seed: 1);
        var train = ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1], 100, seed: 1));
        var model = ml.Continual().Trainers.FineTune(TestData.Options()).Fit(train);
        using var temp = new TempFolder();
        ml.Model.Save(model, train.Schema, temp.File("m.zip"));
        using (var zip = ZipFile.Open(temp.File("m.zip"), ZipArchiveMode.Update))
        {
            var entry = zip.Entries.Single(e => e.Name == "ShiftReference.bin");
            string name = entry.FullName;
            entry.Delete();
            using var writer = new BinaryWriter(zip.CreateEntry(name).Open());
            writer.Write(1_500); // rows: far more than the entry holds
            writer.Write(Row.Size);
            writer.Write(new byte[400]);
        }
        var error = Assert.Throws<ContinualModelFormatException>(() => ml.Continual().LoadModel(temp.File("m.zip"), out _));
        Assert.Contains("'ShiftReference.bin' entry", error.Message);
        Assert.Contains("declares 1,500 rows of 6 features; it holds 400 bytes", error.Message);
    }

    [Fact]
    public void TwoDataViews_CanBeComparedDirectly_AndASampleOfALargeViewIsTaken()
    {
        var ml = new MLContext(seed: 1);
        var january = ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1, 2], 3000, seed: 1));
        var february = ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 1, 2], 3000, seed: 2));
        var march = ml.Data.LoadFromEnumerable(TestData.Rows(0, [0, 0, 0, 1, 2], 3000, seed: 3)); // class 0 from a third to three fifths
        var options = new ShiftDetectionOptions { MaxRows = 400, Seed = 2 };
        var quiet = ml.Continual().DetectShift(january, february, options);
        Assert.False(quiet.Shifted, quiet.ToString());
        Assert.Equal(400, quiet.Rows);
        Assert.Equal(400, quiet.ReferenceRows);
        Assert.True(ml.Continual().DetectShift(january, march, options).Shifted);
        // The same seed gives the same report; another seed another sample.
        Assert.Equal(quiet.ToString(), ml.Continual().DetectShift(january, february, options).ToString());
        options.Seed = 3;
        Assert.NotEqual(quiet.MaximumMeanDiscrepancy, ml.Continual().DetectShift(january, february, options).MaximumMeanDiscrepancy);
    }

    [Fact]
    public void TheCli_Drift_ExitsZeroOnTheSameDistribution_AndTenOnAShift_WithJson()
    {
        using var temp = new TempFolder();
        CliTests.WriteCsv(temp.File("jan.csv"), 0, 300, [0, 1, 2], 1);
        CliTests.WriteCsv(temp.File("feb.csv"), 0, 300, [0, 1, 2], 2);
        CliTests.WriteCsv(temp.File("mar.csv"), 2, 300, [0, 1, 2], 3); // task 2 moves x1 by 1 and x3 by 2
        var train = CliTests.Cli(temp.Path, "train", "--data", "jan.csv", "--label", "Label", "--featurize", "none", "--set", "NumberOfEpochs=2", "--out", "m.zip");
        Assert.True(train.ExitCode == 0, train.Error);
        // No label column in the new data: drift needs only the features.
        File.WriteAllLines(temp.File("feb-unlabelled.csv"), File.ReadAllLines(temp.File("feb.csv")).Select(l => l[..l.LastIndexOf(',')]));

        var quiet = CliTests.Cli(temp.Path, "drift", "--model", "m.zip", "--data", "feb-unlabelled.csv", "--json");
        Assert.True(quiet.ExitCode == 0, quiet.Error + quiet.Output);
        var json = JsonDocument.Parse(quiet.Output).RootElement;
        Assert.False(json.GetProperty("shifted").GetBoolean());
        Assert.Equal(300, json.GetProperty("referenceRows").GetInt32());

        var shifted = CliTests.Cli(temp.Path, "drift", "--model", "m.zip", "--data", "mar.csv", "--json");
        Assert.True(shifted.ExitCode == 10, shifted.Error + shifted.Output);
        json = JsonDocument.Parse(shifted.Output).RootElement;
        Assert.True(json.GetProperty("shifted").GetBoolean());
        Assert.True(json.GetProperty("pValue").GetDouble() < 0.05);
        var outputs = json.GetProperty("predictions");
        Assert.Equal(PredictionShiftTest.ClassesTest, outputs.GetProperty("test").GetString());
        Assert.Equal(3, outputs.GetProperty("classes").GetArrayLength()); // every class, with its shares
        double smaller = Math.Min(json.GetProperty("featuresPValue").GetDouble(), outputs.GetProperty("pValue").GetDouble());
        Assert.Equal(Math.Min(1, 2 * smaller), json.GetProperty("pValue").GetDouble(), 12);
        var names = json.GetProperty("features").EnumerateArray().Select(f => f.GetProperty("name").GetString()).ToList();
        Assert.Contains(names, n => n!.Contains("x3"));
        Assert.DoesNotContain(names, n => n!.Contains("x2")); // x2 does not depend on the task

        var text = CliTests.Cli(temp.Path, "drift", "--model", "m.zip", "--data", "mar.csv");
        Assert.Equal(10, text.ExitCode);
        Assert.StartsWith("Shifted: p = ", text.Output);
        var badRows = CliTests.Cli(temp.Path, "drift", "--model", "m.zip", "--data", "mar.csv", "--rows", "5");
        Assert.True(badRows.ExitCode == 2, badRows.Error);
    }

    private static ShiftReference Gaussian(Random random, int rows, int features, double shift)
    {
        var values = new float[rows * features];
        for (int i = 0; i < values.Length; i++)
            values[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()) + (i % features == 2 ? shift : 0));
        return new ShiftReference(values, rows, features);
    }
}

internal static class ShiftOptionsExtensions
{
    public static ShiftDetectionOptions WithSeed(this ShiftDetectionOptions options, int seed) => new()
    {
        Alpha = options.Alpha, Permutations = options.Permutations, MaxRows = options.MaxRows, Seed = seed, MaxFeaturesReported = options.MaxFeaturesReported,
    };
}
