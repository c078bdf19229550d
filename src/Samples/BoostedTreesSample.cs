using Microsoft.ML;
using Microsoft.ML.Continual;
using Microsoft.ML.Continual.Trees;

namespace Samples;

/// <summary>
/// Sample for <see cref="ContinualLightGbmTrainer"/> (<c>mlContext.Continual().Trainers.LightGbm</c>): the monthly churn
/// table of <see cref="TabularSample"/>, featurized, with boosted trees that retrain each month on the month's rows and a
/// replayed sample of the earlier months (the default) or add rounds to the earlier trees; saved, loaded in a later
/// "process" (a new <see cref="MLContext"/>) and refitted month after month, next month's AUC printed before each refit.
/// </summary>
public static class BoostedTreesSample
{
    public static void Run(string workDirectory)
    {
        var ml = new MLContext(seed: 1);
        string[] regions = ["north", "south", "east", "west"];
        var january = ml.Data.LoadFromEnumerable(TabularSample.Customers(0, 4000, regions));
        var featurization = ml.Continual().Featurize(january, new ContinualFeaturizerOptions { LabelColumnName = nameof(CustomerMonth.Churned) });

        // The same trainer from name/value text (as a configuration file or the tool's --set gives it), over the featurization's settings.
        var byName = ml.Continual().Trainers.LightGbm(new Dictionary<string, string> { ["MemorySize"] = "5000", ["Mode"] = "AddRounds" }, featurization).GetOptions();
        Console.WriteLine($"By name: mode {byName.Mode}, memory {byName.MemorySize:N0} rows, {byName.BinaryCodedCategoricals} categorical columns.");

        foreach (var mode in new[] { ContinualBoostingMode.RetrainOnMemory, ContinualBoostingMode.AddRounds })
        {
            // Configure sets the label and feature columns, and tells the trees which slots are the categories' hashed buckets.
            var options = featurization.Configure(new ContinualLightGbmTrainer.Options { Mode = mode, MemorySize = 5000 });
            ITransformer model = featurization.Pipeline.Append(ml.Continual().Trainers.LightGbm(options)).Fit(january);
            string path = Path.Combine(workDirectory, $"churn-trees-{mode}.zip");
            ml.Model.Save(model, january.Schema, path);

            string[][] later = [[.. regions, "harbour"], [.. regions, "harbour", "airport"]];
            for (int month = 1; month <= later.Length; month++)
            {
                var next = new MLContext(seed: 1);
                ITransformer loaded = next.Continual().LoadModel(path, out var schema);
                var rows = next.Data.LoadFromEnumerable(TabularSample.Customers(month, 4000, later[month - 1]));
                double before = next.BinaryClassification.Evaluate(loaded.Transform(rows), nameof(CustomerMonth.Churned)).AreaUnderRocCurve;
                ITransformer refitted = next.Continual().Refit(loaded, rows);
                next.Model.Save(refitted, schema, path);
                var trees = (ContinualLightGbmTransformer)ContinualCatalog.FindContinualModel(refitted)!;
                Console.WriteLine($"{mode}, month {month + 1}: AUC of last month's model on this month {before:F3}; refitted: {trees.TreeCount} trees, "
                    + $"rounds per month {string.Join(", ", trees.RoundsPerTask)}, {trees.MemoryRows:N0} rows in the memory.");
            }
        }
    }
}
