using System.IO.Compression;
using Microsoft.ML.Continual.Trees;
using Microsoft.ML.Data;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

/// <summary>The boosted trees that continue (<see cref="ContinualLightGbmTrainer"/>): learning, both modes, the memory, the
/// zip and a refit in a fresh process, bad input.</summary>
public class TreesTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private static readonly string[] FirstRegions = ["north", "south", "east", "west"];
    internal static readonly string[] LaterRegions = ["north", "south", "east", "west", "harbour", "airport"];

    /// <summary>The featurized trees trainer for the generated customer table (small, one thread, seeded).</summary>
    internal static (IEstimator<ITransformer> Pipeline, IDataView First) Trees(MLContext ml, ContinualBoostingMode mode, int memorySize = 1_000)
    {
        var first = ml.Data.LoadFromEnumerable(TabularTests.Customers(0, 2000, 3, FirstRegions));
        var featurization = ml.Continual().Featurize(first, new ContinualFeaturizerOptions { LabelColumnName = nameof(Customer.Churned) });
        var options = featurization.Configure(new ContinualLightGbmTrainer.Options { Mode = mode, MemorySize = memorySize, NumberOfThreads = 1, Seed = 5 });
        return (featurization.Pipeline.Append(ml.Continual().Trainers.LightGbm(options)), first);
    }

    internal static IDataView Period(MLContext ml, int period, int rows = 2000) => ml.Data.LoadFromEnumerable(TabularTests.Customers(period, rows, 3, LaterRegions));

    private static ContinualLightGbmTransformer TreesOf(ITransformer model) => (ContinualLightGbmTransformer)((IEnumerable<ITransformer>)model).Last();

    [Theory]
    [InlineData(ContinualBoostingMode.RetrainOnMemory)]
    [InlineData(ContinualBoostingMode.AddRounds)]
    public void Trees_Learn_AndContinueOnRegionsNeverSeenAtTheFirstFit(ContinualBoostingMode mode)
    {
        var ml = new MLContext(seed: 1);
        var (pipeline, first) = Trees(ml, mode);
        var model = pipeline.Fit(first);
        var test = ml.Data.LoadFromEnumerable(TabularTests.Customers(9, 1000, 4, LaterRegions));
        double before = ml.BinaryClassification.Evaluate(model.Transform(test), nameof(Customer.Churned)).AreaUnderRocCurve;
        var next = ml.Continual().Refit(model, Period(ml, 1));
        double after = ml.BinaryClassification.Evaluate(next.Transform(test), nameof(Customer.Churned)).AreaUnderRocCurve;
        // The new regions' churn is learned from the refit (the first fit saw none of them).
        Assert.True(after > 0.9 && after > before + 0.02, $"AUC {before:F3} before the refit, {after:F3} after");
        var trees = TreesOf(next);
        Assert.Equal(2, trees.TasksSeen);
        Assert.Equal(ContinualPredictionKind.Binary, trees.PredictionKind);
        Assert.Equal(1_000, trees.MemoryRows); // bounded: 4,000 rows seen
        Assert.Equal(4_000, trees.RowsSeen);
        Assert.All(trees.RoundsPerTask, r => Assert.InRange(r, 1, 200));
        // Probability is the logistic of the margin, and the prediction its sign.
        var scored = next.Transform(test);
        var scores = scored.GetColumn<float>("Score").ToArray();
        var probabilities = scored.GetColumn<float>("Probability").ToArray();
        var predicted = scored.GetColumn<bool>("PredictedLabel").ToArray();
        for (int i = 0; i < scores.Length; i++)
        {
            Assert.Equal(1 / (1 + MathF.Exp(-scores[i])), probabilities[i], 6);
            Assert.Equal(scores[i] > 0, predicted[i]);
        }
    }

    [Fact]
    public void MaximumRowsPerPeriod_TrainsOnASampleOfTheTask_WhileTheMemorySeesEveryRow()
    {
        var ml = new MLContext(seed: 1);
        var first = ml.Data.LoadFromEnumerable(TabularTests.Customers(0, 2000, 3, FirstRegions));
        var featurization = ml.Continual().Featurize(first, new ContinualFeaturizerOptions { LabelColumnName = nameof(Customer.Churned) });
        ITransformer Fit(int? most)
        {
            var options = featurization.Configure(new ContinualLightGbmTrainer.Options { MemorySize = 1_000, NumberOfThreads = 1, Seed = 5, MaximumRowsPerPeriod = most });
            var model = featurization.Pipeline.Append(ml.Continual().Trainers.LightGbm(options)).Fit(first);
            return ml.Continual().Refit(model, Period(ml, 1, rows: 3000));
        }
        var whole = TreesOf(Fit(null));
        // A limit no smaller than every task: the same model, bit for bit, and the same memory.
        var roomy = TreesOf(Fit(3000));
        Assert.Equal(whole.LightGbmModelText, roomy.LightGbmModelText);
        Assert.Equal(whole.State.Memory.Features, roomy.State.Memory.Features);
        // A limit below the tasks: other trees from 500 rows a task, the memory exactly as if every row were held.
        var sampled = Fit(500);
        var trees = TreesOf(sampled);
        Assert.NotEqual(whole.LightGbmModelText, trees.LightGbmModelText);
        Assert.Equal(5_000, trees.RowsSeen);
        Assert.Equal(5_000, trees.State.Memory.Seen);
        Assert.Equal(whole.State.Memory.Features, trees.State.Memory.Features);
        Assert.Equal(whole.State.Memory.Labels, trees.State.Memory.Labels);
        var test = ml.Data.LoadFromEnumerable(TabularTests.Customers(9, 1000, 4, LaterRegions));
        double auc = ml.BinaryClassification.Evaluate(sampled.Transform(test), nameof(Customer.Churned)).AreaUnderRocCurve;
        Assert.True(auc > 0.85, $"AUC {auc:F3} from 500 rows a task");
        Assert.Equal(500, trees.Options.MaximumRowsPerPeriod); // stored with the model
        Assert.Throws<ArgumentOutOfRangeException>(() => new ContinualLightGbmTrainer.Options { MaximumRowsPerPeriod = 10 }.Validate());
    }

    [Fact]
    public void TheMemoryBuilder_OfferedTheRowsInOrder_GivesWhatWithGives()
    {
        var random = new Random(3);
        const int d = 4, rows = 5000;
        var features = Enumerable.Range(0, rows * d).Select(_ => (float)random.NextDouble()).ToArray();
        var labels = Enumerable.Range(0, rows).Select(i => (float)(i % 2)).ToArray();
        var start = ReplayRows.Empty(700, d).With(features[..(300 * d)], labels[..300], 300, 9); // part full
        var expected = start.With(features, labels, rows, 9);
        var builder = new ReplayRows.Builder(start, 9);
        for (int i = 0; i < rows; i++) builder.Offer(features.AsSpan(i * d, d), labels[i]);
        var built = builder.Build();
        Assert.Equal(expected.Count, built.Count);
        Assert.Equal(expected.Seen, built.Seen);
        Assert.Equal(expected.Features, built.Features);
        Assert.Equal(expected.Labels, built.Labels);
    }

    [Fact]
    public void AddRounds_KeepsEveryEarlierTree_RetrainOnMemory_KeepsOnlyTheNewEnsemble()
    {
        var ml = new MLContext(seed: 1);
        var (addPipeline, first) = Trees(ml, ContinualBoostingMode.AddRounds);
        var added = addPipeline.Fit(first);
        var addedNext = TreesOf(ml.Continual().Refit(added, Period(ml, 1)));
        Assert.Equal(addedNext.RoundsPerTask.Sum(), TreeCount(addedNext.LightGbmModelText));
        // The earlier model's trees come first, unchanged (their text, from "Tree=0" to the last earlier tree's end).
        string earlier = TreesOf(added).LightGbmModelText;
        int count = TreesOf(added).RoundsPerTask[0];
        Assert.Equal(TreeBlock(earlier, 0, count), TreeBlock(addedNext.LightGbmModelText, 0, count));

        var (retrainPipeline, _) = Trees(ml, ContinualBoostingMode.RetrainOnMemory);
        var retrained = TreesOf(ml.Continual().Refit(retrainPipeline.Fit(first), Period(ml, 1)));
        Assert.Equal(retrained.RoundsPerTask[^1], TreeCount(retrained.LightGbmModelText));
    }

    private static int TreeCount(string text) => text.Split('\n').Count(l => l.StartsWith("Tree=", StringComparison.Ordinal));

    private static string TreeBlock(string text, int from, int to)
    {
        int start = text.IndexOf($"Tree={from}\n", StringComparison.Ordinal);
        int end = text.IndexOf($"Tree={to}\n", StringComparison.Ordinal);
        if (end < 0) end = text.IndexOf("end of trees", StringComparison.Ordinal);
        return text[start..end];
    }

    [Theory]
    [InlineData(ContinualBoostingMode.RetrainOnMemory)]
    [InlineData(ContinualBoostingMode.AddRounds)]
    public void ARefitInAFreshProcess_AfterSaveAndLoad_EqualsTheRefitInTheProcessThatTrained(ContinualBoostingMode mode)
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var (pipeline, first) = Trees(ml, mode);
        var model = pipeline.Fit(first);
        ml.Model.Save(model, first.Schema, temp.File("m.zip"));
        var inProcess = ml.Continual().Refit(model, Period(ml, 1));
        Program.RunFresh("trees-refit", temp.File("m.zip"), "1", temp.File("next.zip"));
        var fresh = ml.Continual().LoadModel(temp.File("next.zip"), out _);
        Assert.Equal(TreesOf(inProcess).LightGbmModelText, TreesOf(fresh).LightGbmModelText);
        var test = Period(ml, 7, 500);
        Assert.Equal(TestData.Bytes(TestData.Scores(inProcess, test)), TestData.Bytes(TestData.Scores(fresh, test)));
        Assert.Equal(TreesOf(inProcess).RoundsPerTask, TreesOf(fresh).RoundsPerTask);
        // A prediction engine (one row at a time) gives the batch's scores.
        var engine = ml.Model.CreatePredictionEngine<Customer, BinaryScore>(fresh);
        var rows = TabularTests.Customers(7, 20, 3, LaterRegions);
        var batch = TestData.Scores(fresh, ml.Data.LoadFromEnumerable(rows));
        for (int i = 0; i < rows.Count; i++) Assert.Equal(batch[i], engine.Predict(rows[i]).Score);
    }

    public sealed class BinaryScore
    {
        public float Score { get; set; }
        public float Probability { get; set; }
        public bool PredictedLabel { get; set; }
    }

    [Fact]
    public void TheMemory_IsABoundedUniformSample_TheSameForTheSameSeed()
    {
        var memory = ReplayRows.Empty(300, 1);
        for (int period = 0; period < 3; period++)
        {
            var features = Enumerable.Range(period * 1000, 1000).Select(i => (float)i).ToArray();
            memory = memory.With(features, features, 1000, seed: 4);
        }
        Assert.Equal(300, memory.Count);
        Assert.Equal(3000, memory.Seen);
        // Each third of the stream holds about a third of the memory (binomial 300 × 1/3: sd 8.2; ±40 is ±4.9 sd).
        var thirds = memory.Labels.GroupBy(l => (int)l / 1000).ToDictionary(g => g.Key, g => g.Count());
        Assert.All(Enumerable.Range(0, 3), t => Assert.InRange(thirds.GetValueOrDefault(t), 60, 140));
        Assert.Equal(memory.Labels.Length, memory.Labels.Distinct().Count());
        var again = ReplayRows.Empty(300, 1);
        for (int period = 0; period < 3; period++)
        {
            var features = Enumerable.Range(period * 1000, 1000).Select(i => (float)i).ToArray();
            again = again.With(features, features, 1000, seed: 4);
        }
        Assert.Equal(memory.Labels, again.Labels);
    }

    public sealed class House
    {
        public float Rooms { get; set; }
        public string District { get; set; } = "";
        public float Price { get; set; }
    }

    [Fact]
    public void ARegressionLabel_GivesARegressionModel_ThatFitsAndContinues()
    {
        var ml = new MLContext(seed: 2);
        List<House> Houses(int seed, int count)
        {
            var random = new Random(seed);
            string[] districts = ["old town", "docks", "hill", "park"];
            return Enumerable.Range(0, count).Select(_ =>
            {
                float rooms = 1 + random.Next(6);
                string district = districts[random.Next(districts.Length)];
                return new House { Rooms = rooms, District = district, Price = 50 * rooms + (district == "hill" ? 120 : 0) + (float)(random.NextDouble() * 10) };
            }).ToList();
        }
        var first = ml.Data.LoadFromEnumerable(Houses(1, 1500));
        var featurization = ml.Continual().Featurize(first, new ContinualFeaturizerOptions { LabelColumnName = nameof(House.Price) });
        var trainer = ml.Continual().Trainers.LightGbm(featurization.Configure(new ContinualLightGbmTrainer.Options { NumberOfThreads = 1, MinimumExampleCountPerLeaf = 20 }));
        var model = ml.Continual().Refit(featurization.Pipeline.Append(trainer).Fit(first), ml.Data.LoadFromEnumerable(Houses(2, 1500)));
        var metrics = ml.Regression.Evaluate(model.Transform(ml.Data.LoadFromEnumerable(Houses(3, 500))), nameof(House.Price));
        Assert.True(metrics.RSquared > 0.98, $"R² {metrics.RSquared:F3}");
        Assert.Equal(ContinualPredictionKind.Regression, TreesOf(model).PredictionKind);
        Assert.Null(model.GetOutputSchema(first.Schema).GetColumnOrNull("Probability"));
    }

    [Fact]
    public void BadInput_IsRefusedClearly_AndADamagedFileIsAFormatError()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        // A text label: the trees make binary and regression models only.
        var texts = ml.Data.LoadFromEnumerable(new[] { new { Features = new float[] { 1, 2 }, Label = "a" } }.Select(r => new TextRow { Features = r.Features, Label = r.Label }));
        var error = Assert.Throws<ContinualDataException>(() => ml.Continual().Trainers.LightGbm().Fit(texts));
        Assert.Contains("Label column 'Label'", error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => ml.Continual().Trainers.LightGbm(new ContinualLightGbmTrainer.Options { LearningRate = 0 }));

        var (pipeline, first) = Trees(ml, ContinualBoostingMode.RetrainOnMemory);
        var model = pipeline.Fit(first);
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => ml.Continual().Refit(model, Period(ml, 1), cancelled.Token));
        ml.Model.Save(model, first.Schema, temp.File("m.zip"));
        foreach (var (entry, content) in new[] { ("Trees.txt", "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nmax_feature_idx=0\n"), ("Trees.txt", "not a model"), ("Memory.bin", "\u0001") })
        {
            string damaged = temp.File($"damaged-{entry}-{content.Length}.zip");
            File.Copy(temp.File("m.zip"), damaged, overwrite: true);
            using (var zip = ZipFile.Open(damaged, ZipArchiveMode.Update))
            {
                var target = zip.Entries.Single(e => e.FullName.EndsWith("/" + entry, StringComparison.Ordinal));
                string name = target.FullName;
                target.Delete();
                using var writer = new StreamWriter(zip.CreateEntry(name).Open());
                writer.Write(content);
            }
            var format = Assert.Throws<ContinualModelFormatException>(() => ml.Continual().LoadModel(damaged, out _));
            Assert.Contains(entry, format.Message);
        }
    }

    [Fact]
    public void CraftedTreeTexts_AreCheckedBeforeLightGbmParsesThem_AndWhatPassesPredictsFinitely()
    {
        // The zip's SHA-256 catches damage; a crafted file can carry a matching hash, so the text itself is checked before
        // native code reads it. Mutations of a real model's text: characters, numbers (child and feature indices
        // included), lines deleted or repeated. Whatever the check lets through must load in LightGBM and score finitely.
        var ml = new MLContext(seed: 1);
        var (pipeline, first) = Trees(ml, ContinualBoostingMode.AddRounds);
        var trees = TreesOf(ml.Continual().Refit(pipeline.Fit(first), Period(ml, 1)));
        string text = trees.LightGbmModelText;
        int width = trees.State.Layout.Width;
        var random = new Random(99);
        var rows = Enumerable.Range(0, 64 * width).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();
        var scores = new double[64];
        int refused = 0, accepted = 0;
        for (int i = 0; i < 1000; i++)
        {
            string mutated = Mutate(text, random);
            string checkedText;
            try { checkedText = LightGbmModelText.Checked(mutated, width, ContinualPredictionKind.Binary); }
            catch (ContinualModelFormatException) { refused++; continue; }
            accepted++;
            using var booster = LightGbmNative.Booster.FromText(checkedText);
            Assert.Equal(width, booster.FeatureCount);
            booster.PredictRaw(rows, 64, width, scores, threads: 1);
            Assert.All(scores, v => Assert.True(double.IsFinite(v), $"mutation {i} scored {v}"));
        }
        output.WriteLine($"1000 crafted tree texts: {refused} refused by the check, {accepted} accepted, loaded by LightGBM and scored finitely");
        Assert.True(refused > 600 && accepted > 15, $"{refused} refused, {accepted} accepted"); // both paths exercised
    }

    [Fact]
    public void TheTreeTextCheck_RefusesWhatLightGbmWouldReadOtherwise()
    {
        var ml = new MLContext(seed: 1);
        var (pipeline, first) = Trees(ml, ContinualBoostingMode.RetrainOnMemory);
        var trees = TreesOf(pipeline.Fit(first));
        string text = trees.LightGbmModelText;
        int width = trees.State.Layout.Width;
        Assert.Equal(text, LightGbmModelText.Checked(text, width, ContinualPredictionKind.Binary)); // its own output passes unchanged
        string lastTree = $"Tree={trees.RoundsPerTask[0] - 1}\n";
        string Replace(string from, string to) => text.Replace(from, to, StringComparison.Ordinal);
        var cases = new Dictionary<string, string>
        {
            ["the last tree without its blank line (LightGBM would read on past the text)"] = Replace("\n\n\nend of trees", "\nend of trees"),
            ["a number ended by a NUL (LightGBM stops reading there)"] = Replace("\nleft_child=1 ", "\nleft_child=1\0 "),
            ["a carriage return (a line's end for LightGBM)"] = Replace("\nis_linear=0\n", "\nis_linear=0\r\n"),
            ["a number LightGBM's parser refuses (.5)"] = Replace("\nshrinkage=1\n", "\nshrinkage=.5\n"),
            ["a leading zero"] = Replace("\nshrinkage=1\n", "\nshrinkage=01\n"),
            ["keys out of order"] = Replace("num_leaves=", "num_leaves_=").Replace("num_leaves_=", "num_leaves="),
            ["a repeated key"] = Replace("\nis_linear=0\n", "\nis_linear=0\nis_linear=0\n"),
            ["the wrong objective"] = Replace("objective=binary sigmoid:1", "objective=regression"),
        };
        cases.Remove("keys out of order"); // (a no-op replacement, kept out)
        string block = text[text.IndexOf("Tree=0\n", StringComparison.Ordinal)..text.IndexOf("Tree=1\n", StringComparison.Ordinal)];
        string[] lines = block.Split('\n');
        int leftAt = Array.FindIndex(lines, l => l.StartsWith("left_child=", StringComparison.Ordinal));
        var swapped = (string[])lines.Clone();
        (swapped[leftAt], swapped[leftAt + 1]) = (lines[leftAt + 1], lines[leftAt]);
        cases["left_child and right_child swapped (keys out of LightGBM's order)"] = text.Replace(block, string.Join('\n', swapped), StringComparison.Ordinal);
        foreach (var (what, damaged) in cases)
        {
            Assert.NotEqual(text, damaged);
            Assert.Throws<ContinualModelFormatException>(() => LightGbmModelText.Checked(damaged, width, ContinualPredictionKind.Binary));
        }
        Assert.Contains(lastTree, text);
    }

    private static string Mutate(string text, Random random)
    {
        var lines = text.Split('\n').ToList();
        int line = random.Next(lines.Count);
        switch (random.Next(4))
        {
            case 0: // one character
            {
                if (lines[line].Length == 0) break;
                var chars = lines[line].ToCharArray();
                chars[random.Next(chars.Length)] = (char)random.Next(32, 127);
                lines[line] = new string(chars);
                break;
            }
            case 1: // one number of a key=value line, e.g. a child or feature index
            {
                int eq = lines[line].IndexOf('=');
                if (eq < 0) break;
                var parts = lines[line][(eq + 1)..].Split(' ');
                parts[random.Next(parts.Length)] = (random.Next(-8, 300)).ToString(System.Globalization.CultureInfo.InvariantCulture);
                lines[line] = lines[line][..(eq + 1)] + string.Join(' ', parts);
                break;
            }
            case 2: lines.RemoveAt(line); break;
            default: lines.Insert(line, lines[line]); break;
        }
        return string.Join('\n', lines);
    }

    public sealed class TextRow
    {
        [VectorType(2)] public float[] Features { get; set; } = [];
        public string Label { get; set; } = "";
    }
}
