using Microsoft.ML.Data;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

public sealed class Customer
{
    public float Age { get; set; }
    public string Income { get; set; } = "";      // numbers as text, some missing
    public string Region { get; set; } = "";      // a category
    public bool Member { get; set; }
    public string Joined { get; set; } = "";      // dates as text
    public string CustomerId { get; set; } = "";  // every value distinct
    public string Notes { get; set; } = "";       // free text
    public string Country { get; set; } = "";     // one value only
    public bool Churned { get; set; }
}

public class TabularTests
{
    /// <summary>A generated business table: churn depends on the region, the age and membership; later periods bring regions never seen before.</summary>
    internal static List<Customer> Customers(int period, int count, int seed, string[] regions)
    {
        var random = new Random(seed * 7919 + period);
        string[] words = ["late", "payment", "called", "support", "upgrade", "happy", "issue", "renewed", "billing", "plan"];
        return Enumerable.Range(0, count).Select(i =>
        {
            string region = regions[random.Next(regions.Length)];
            float age = 18 + random.Next(60);
            bool member = random.NextDouble() < 0.4;
            // Which regions are risky is fixed here, not by string hashing (randomised per process), so that a fresh process sees the same data.
            double risk = (region is "south" or "west" or "airport" ? 1 : 0) * 1.5 + (age < 30 ? 1 : -0.5) - (member ? 1.2 : 0) + (random.NextDouble() - 0.5);
            return new Customer
            {
                Age = age, Income = random.NextDouble() < 0.1 ? "" : (20000 + random.Next(80000)).ToString(System.Globalization.CultureInfo.InvariantCulture),
                Region = region, Member = member, Joined = new DateTime(2020, 1, 1).AddDays(random.Next(1500)).AddHours(random.Next(24)).ToString("yyyy-MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture),
                CustomerId = $"C{period}-{i:D6}", Notes = string.Join(' ', Enumerable.Range(0, 4 + random.Next(5)).Select(_ => words[random.Next(words.Length)])),
                Country = "DE", Churned = risk > 0.3,
            };
        }).ToList();
    }

    private static ContinualFeaturizerOptions Options() => new() { LabelColumnName = nameof(Customer.Churned) };

    [Fact]
    public void EachColumnsRole_IsInferred_AsMLNetsColumnInferenceWould_AndOverridesWin()
    {
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Customers(0, 500, 1, ["north", "south", "east", "west", "centre"]));
        var roles = ml.Continual().Featurize(data, Options()).Roles.ToDictionary(r => r.Name, r => r.Role);
        Assert.Equal(ColumnRole.Numeric, roles["Age"]);
        Assert.Equal(ColumnRole.Numeric, roles["Income"]);          // text that reads as numbers
        Assert.Equal(ColumnRole.Categorical, roles["Region"]);
        Assert.Equal(ColumnRole.Boolean, roles["Member"]);
        Assert.Equal(ColumnRole.Date, roles["Joined"]);
        Assert.Equal(ColumnRole.Ignore, roles["CustomerId"]);       // an identifier
        Assert.Equal(ColumnRole.Text, roles["Notes"]);
        Assert.Equal(ColumnRole.Ignore, roles["Country"]);          // a constant
        Assert.Equal(ColumnRole.Label, roles["Churned"]);
        var overridden = ml.Continual().Featurize(data, new ContinualFeaturizerOptions
        {
            LabelColumnName = "Churned", Categorical = ["Age"], Ignore = ["Notes"], Numeric = [],
        }).Roles.ToDictionary(r => r.Name, r => r.Role);
        Assert.Equal((ColumnRole.Categorical, ColumnRole.Ignore), (overridden["Age"], overridden["Notes"]));
        var unknown = Assert.Throws<ContinualDataException>(() => ml.Continual().Featurize(data, new ContinualFeaturizerOptions { LabelColumnName = "Churned", Ignore = ["Nope"] }));
        Assert.Contains("'Nope' was named in an override", unknown.Message);
    }

    [Fact]
    public void TheFeatureLayout_IsWhatTheBackboneReads_BucketBitsDecodeToTheHashedKey_MissingValuesAreIndicated()
    {
        var ml = new MLContext(seed: 1);
        var rows = Customers(0, 300, 2, ["north", "south", "east"]);
        rows[5].Region = ""; // a missing category
        rows[7].Income = ""; // a missing number
        var data = ml.Data.LoadFromEnumerable(rows);
        var featurization = ml.Continual().Featurize(data, new ContinualFeaturizerOptions { LabelColumnName = "Churned", Ignore = ["Notes"], HashBits = 4 });
        var backbone = featurization.Backbone;
        // Age and Income; indicators: their two missing flags, Member and the date's nine cyclic parts; one category of 4 + 2 bits.
        Assert.Equal((2, 12, 1, 6, 16), (backbone.NumericFeatures, backbone.IndicatorFeatures, backbone.CategoricalFeatures, backbone.CategoricalBits, backbone.Buckets));
        var featured = featurization.Pipeline.Fit(data).Transform(data);
        var features = featured.GetColumn<float[]>("Features").ToArray();
        Assert.All(features, f => Assert.Equal(2 + 12 + 6, f.Length));
        var keys = ml.Transforms.Conversion.Hash("k", "Region", numberOfBits: 4).Fit(data).Transform(data).GetColumn<uint>("k").ToArray();
        for (int i = 0; i < rows.Count; i++)
        {
            var bits = features[i].Skip(14).ToArray();
            Assert.All(bits, b => Assert.True(b is 0 or 1));
            int value = bits.Aggregate(0, (acc, b) => acc * 2 + (int)b);
            int bucket = value == (1 << 6) - 1 ? 0 : value + 1; // the backbone's decoding
            Assert.Equal((int)keys[i], bucket);
        }
        Assert.Equal(0u, keys[5]);
        Assert.Equal(1f, features[7][2 + 1]); // Income's missing flag
        Assert.Equal(0f, features[8][2 + 1]);
        Assert.Equal(0f, features[7][1], 3); // replaced by the mean, standardised: 0
        // The date's parts: points on circles, and 1 for a date that was given.
        var joined = DateTime.Parse(rows[0].Joined, System.Globalization.CultureInfo.InvariantCulture);
        double hourAngle = 2 * Math.PI * (joined.Hour + joined.Minute / 60.0) / 24;
        Assert.Equal((float)Math.Sin(hourAngle), features[0][5], 5); // after the two flags and Member
        Assert.Equal(1f, features[0][13]);
    }

    [Fact]
    public void ATabularModel_Learns_ContinuesOnARegionNeverSeen_AndItsPipelineTravels()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var first = ml.Data.LoadFromEnumerable(Customers(0, 3000, 3, ["north", "south", "east", "west"]));
        var later = ml.Data.LoadFromEnumerable(Customers(1, 3000, 3, ["north", "south", "east", "west", "harbour", "airport"]));
        var test = ml.Data.LoadFromEnumerable(Customers(2, 1000, 4, ["north", "south", "east", "west", "harbour", "airport"]));
        var featurization = ml.Continual().Featurize(first, Options());
        var options = featurization.Configure(new ReplayTrainer.Options { MemorySize = 500, Seed = 2 });
        options.NumberOfEpochs = 6;
        var model = featurization.Pipeline.Append(ml.Continual().Trainers.Replay(options)).Fit(first);
        var next = ml.Continual().Refit(model, later);
        double auc = ml.BinaryClassification.Evaluate(next.Transform(test), "Churned").AreaUnderRocCurve;
        Assert.True(auc > 0.85, $"AUC {auc:F3}");
        var continual = ContinualCatalog.FindContinual(next)!;
        Assert.Equal(["EarlyStopping", "Replay", "LearningRateSchedule"], continual.PluginNames);
        Assert.IsType<TabularBackbone>(continual.Backbone);
        ml.Model.Save(next, first.Schema, temp.File("tabular.zip"));
        var loaded = ml.Continual().LoadModel(temp.File("tabular.zip"), out _);
        Assert.Equal(TestData.Bytes(TestData.Scores(next, test)), TestData.Bytes(TestData.Scores(loaded, test)));
        Assert.Equal(3, ContinualCatalog.FindContinual(ml.Continual().Refit(loaded, first))!.TasksSeen);
    }
}
