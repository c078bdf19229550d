using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Continual;

namespace Samples;

/// <summary>One row of a generated business table: a customer in a month, and whether they churned.</summary>
public sealed class CustomerMonth
{
    public float Age { get; set; }
    public string Income { get; set; } = "";   // numbers as text, some missing (as a CSV export gives them)
    public string Region { get; set; } = "";   // a category; later months bring new regions
    public bool Member { get; set; }
    public string Joined { get; set; } = "";   // a date as text
    public string CustomerId { get; set; } = "";
    public bool Churned { get; set; }
}

/// <summary>
/// Sample for <see cref="ContinualCatalog.Featurize"/>, <see cref="ContinualFeaturization"/> and <see cref="TabularBackbone"/>:
/// a monthly table with numbers, numbers as text with gaps, a category that gains values, a flag, a date and an identifier;
/// the roles are inferred, the featurizing pipeline and the tabular network are built from them, and the model (pipeline
/// included) is saved, loaded in a later "process" (a new <see cref="MLContext"/>) and refitted month after month.
/// </summary>
public static class TabularSample
{
    public static void Run(string workDirectory)
    {
        var ml = new MLContext(seed: 1);
        string[] regions = ["north", "south", "east", "west"];
        IDataView Month(int month, int rows, string[] regionsThatMonth) => ml.Data.LoadFromEnumerable(Customers(month, rows, regionsThatMonth));
        var january = Month(0, 4000, regions);

        // Roles as ML.NET's column inference would give them; any role can be overridden (Categorical, Numeric, Ignore, Text).
        var featurization = ml.Continual().Featurize(january, new ContinualFeaturizerOptions { LabelColumnName = nameof(CustomerMonth.Churned) });
        Console.WriteLine(featurization.Describe());

        // Configure sets the trainer's label, backbone and the tabular defaults (learning rate, batch, epochs, early stopping).
        var options = featurization.Configure(new ReplayTrainer.Options { MemorySize = 2000 });
        var model = featurization.Pipeline.Append(ml.Continual().Trainers.Replay(options)).Fit(january);
        // The same trainer by name, as a configuration file or the command-line tool gives it: the trainer's defaults, then
        // the tabular ones, then the user's options (which always win).
        var byName = ml.Continual().Trainers.Create("replay", new Dictionary<string, string> { ["MemorySize"] = "2000" }, featurization).GetOptions();
        Console.WriteLine($"By name: {byName.GetType().DeclaringType?.Name}, backbone {byName.Backbone?.Name}, learning rate {byName.LearningRate}, memory {((ReplayTrainer.Options)byName).MemorySize}.");
        string path = Path.Combine(workDirectory, "churn-model.zip");
        ml.Model.Save(model, january.Schema, path);

        // Each later month: load the file (pipeline and all), refit on the month's rows, save in place.
        string[][] later = [[.. regions, "harbour"], [.. regions, "harbour", "airport"]];
        for (int month = 1; month <= later.Length; month++)
        {
            var next = new MLContext(seed: 1);
            ITransformer loaded = next.Continual().LoadModel(path, out var schema);
            var rows = next.Data.LoadFromEnumerable(Customers(month, 4000, later[month - 1]));
            var test = next.Data.LoadFromEnumerable(Customers(100 + month, 2000, later[month - 1]));
            double before = next.BinaryClassification.Evaluate(loaded.Transform(test), nameof(CustomerMonth.Churned)).AreaUnderRocCurve;
            ITransformer refitted = next.Continual().Refit(loaded, rows);
            double after = next.BinaryClassification.Evaluate(refitted.Transform(test), nameof(CustomerMonth.Churned)).AreaUnderRocCurve;
            next.Model.Save(refitted, schema, path);
            Console.WriteLine($"Month {month + 1}: AUC on the month's test rows {before:F3} before the refit, {after:F3} after it.");
        }
    }

    /// <summary>Churn depends on the region, the age, the income and membership; new regions behave like some old ones.</summary>
    public static IEnumerable<CustomerMonth> Customers(int month, int count, string[] regions)
    {
        var random = new Random(7919 * (month + 1));
        for (int i = 0; i < count; i++)
        {
            string region = regions[random.Next(regions.Length)];
            float age = 18 + random.Next(60);
            int income = 20000 + random.Next(80000);
            bool member = random.NextDouble() < 0.4;
            double regionRisk = region.Length % 3 == 0 ? 1.2 : region.Length % 3 == 1 ? -0.4 : 0.3;
            double risk = regionRisk + (age < 30 ? 0.8 : -0.4) - (member ? 1.0 : 0) - (income - 60000) / 40000.0 + 0.8 * (random.NextDouble() - 0.5);
            yield return new CustomerMonth
            {
                Age = age,
                Income = random.NextDouble() < 0.08 ? "" : income.ToString(CultureInfo.InvariantCulture),
                Region = region,
                Member = member,
                Joined = new DateTime(2020, 1, 1).AddDays(random.Next(1500)).ToString("yyyy-MM-dd", CultureInfo.InvariantCulture),
                CustomerId = $"C{month}-{i:D6}",
                Churned = risk > 0.2,
            };
        }
    }
}
