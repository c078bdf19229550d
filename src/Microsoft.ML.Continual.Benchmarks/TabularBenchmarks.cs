using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Calibrators;
using Microsoft.ML.Continual;
using Microsoft.ML.Continual.Trees;
using Microsoft.ML.Data;
using Microsoft.ML.Trainers;

/// <summary>
/// The honest comparison on a real, time-ordered table: periods in time order; after each period every contender's model
/// scores the held-out rows of every period. Side by side in one run: the continual trainers on the featurizer and the
/// tabular backbone, LightGBM retrained on all history and on the last period only, and ML.NET's own warm starts.
/// Reported: the final mean AUC over all periods, the next-period AUC (the production measure), BWT in AUC, refit seconds
/// per period (first and last, and their growth) and the model's size.
/// </summary>
internal static class TabularBenchmarks
{
    private sealed record Period(IDataView Train, IDataView Test, long TrainRows);

    private sealed record Outcome(string Name, double[][] Auc, double[] RefitSeconds, long ModelBytes);

    /// <summary>A table cut into periods, with the stock ML.NET features its LightGBM and linear contenders get.</summary>
    private sealed record Table(List<Period> Periods, string Label, Func<MLContext, bool, IEstimator<ITransformer>> StockFeatures, Func<IDataView, IDataView, IDataView> Union);

    public static void Run(string dataset, int rowsPerPeriod, int seed, string? only, IReadOnlyList<string> overrides)
    {
        var ml = new MLContext(seed: seed);
        var table = Load(ml, dataset, rowsPerPeriod, seed);
        var (periods, label) = (table.Periods, table.Label);
        var filter = only?.Split(',').ToHashSet(StringComparer.OrdinalIgnoreCase);
        bool Wanted(string name) => filter is null || filter.Contains(name);
        var runs = new List<Outcome>();
        var featurization = ml.Continual().Featurize(periods[0].Train, new ContinualFeaturizerOptions { LabelColumnName = label });
        Console.Error.WriteLine("Featurizer's roles:" + Environment.NewLine + featurization.Describe());

        foreach (var mode in new[] { ContinualBoostingMode.RetrainOnMemory, ContinualBoostingMode.AddRounds })
            if (Wanted("LightGbmContinual") || Wanted("LightGbm" + mode)) runs.Add(ContinualTrees(ml, featurization, periods, mode, overrides));
        foreach (string trainer in new[] { "FineTune", "Ewc", "Replay" })
            if (Wanted(trainer)) runs.Add(Continual(ml, trainer, featurization, periods, label, overrides));
        if (Wanted("LightGbmAll")) runs.Add(Retrained(ml, "LightGBM, retrained on all history", table, allHistory: true));
        if (Wanted("LightGbmLast")) runs.Add(Retrained(ml, "LightGBM, last period only", table, allHistory: false));
        if (Wanted("Lbfgs")) runs.Add(WarmStarted(ml, "LbfgsLogisticRegression, warm start", table, (data, previous) =>
            ml.BinaryClassification.Trainers.LbfgsLogisticRegression(label, "Features").Fit(data, previous)));
        if (Wanted("Sgd")) runs.Add(WarmStarted(ml, "SgdCalibrated, warm start", table, (data, previous) =>
            ml.BinaryClassification.Trainers.SgdCalibrated(label, "Features").Fit(data, previous)));
        if (Wanted("AveragedPerceptron")) runs.Add(WarmStarted(ml, "AveragedPerceptron (online), warm start", table, (data, previous) =>
            ml.BinaryClassification.Trainers.AveragedPerceptron(label, "Features").Fit(data, previous)));
        Print(runs, dataset, periods);
    }

    // ---- the data ----

    private static Table Load(MLContext ml, string dataset, int rowsPerPeriod, int seed) => dataset switch
    {
        "flights" => new Table(Periods(ml, TabularDatasets.FlightsByMonth(rowsPerPeriod, seed), r => r.Departure, seed), nameof(TabularDatasets.Flight.Late),
            FlightFeatures, (a, b) => Union<TabularDatasets.Flight>(ml, a, b)),
        "birdstrikes" => new Table(Periods(ml, TabularDatasets.BirdStrikesByPeriod(), r => r.Date, seed), nameof(TabularDatasets.BirdStrike.Damaged),
            BirdStrikeFeatures, (a, b) => Union<TabularDatasets.BirdStrike>(ml, a, b)),
        _ => throw new ArgumentException($"Unknown dataset '{dataset}' (flights, birdstrikes)."),
    };

    /// <summary>Each period: a seeded 20% held out; the rest for training, in time order.</summary>
    private static List<Period> Periods<T>(MLContext ml, List<List<T>> groups, Func<T, string> time, int seed) where T : class
    {
        var random = new Random(seed + 1);
        return groups.Select(rows =>
        {
            var shuffled = rows.OrderBy(_ => random.Next()).ToList();
            int test = rows.Count / 5;
            var trainRows = shuffled.Skip(test).OrderBy(time, StringComparer.Ordinal).ToList(); // in time order within the period
            return new Period(ml.Data.Cache(ml.Data.LoadFromEnumerable(trainRows)), ml.Data.Cache(ml.Data.LoadFromEnumerable(shuffled.Take(test).ToList())), trainRows.Count);
        }).ToList();
    }

    // ---- the contenders ----

    private static Outcome Continual(MLContext ml, string trainer, ContinualFeaturization featurization, List<Period> periods, string label, IReadOnlyList<string> overrides)
    {
        var options = new Dictionary<string, string>();
        if (trainer == "Replay") options["MemorySize"] = "20000";
        var template = ml.Continual().Trainers.Create(trainer, options).GetOptions();
        featurization.Configure(template);
        foreach (string pair in overrides.Where(p => !p.StartsWith("trees.", StringComparison.Ordinal))) // --set Name=Value, after the tabular defaults (for tuning them)
        {
            var property = template.GetType().GetProperty(pair.Split('=')[0]) ?? throw new ArgumentException($"No option {pair}.");
            string text = pair.Split('=', 2)[1];
            Type type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            property.SetValue(template, type.IsEnum ? Enum.Parse(type, text) : type == typeof(int[]) ? text.Split(',').Select(int.Parse).ToArray() : Convert.ChangeType(text, type, CultureInfo.InvariantCulture));
        }
        ContinualTrainer estimator = trainer switch
        {
            "Ewc" => ml.Continual().Trainers.Ewc((EwcTrainer.Options)template),
            "Replay" => ml.Continual().Trainers.Replay((ReplayTrainer.Options)template),
            _ => ml.Continual().Trainers.FineTune((FineTuneTrainer.Options)template),
        };
        ITransformer? model = null;
        return Through(ml, $"{trainer} (tabular backbone)", periods, label, t =>
            model = model is null ? featurization.Pipeline.Append(estimator).Fit(periods[t].Train) : ml.Continual().Refit(model, periods[t].Train));
    }

    /// <summary>The boosted trees that continue: the featurizer in front, each period's rounds added with a replayed sample.</summary>
    private static Outcome ContinualTrees(MLContext ml, ContinualFeaturization featurization, List<Period> periods, ContinualBoostingMode mode, IReadOnlyList<string> overrides)
    {
        var options = featurization.Configure(new ContinualLightGbmTrainer.Options { Mode = mode });
        foreach (string pair in overrides.Where(p => p.StartsWith("trees.", StringComparison.Ordinal))) // --set trees.Name=Value
        {
            var property = options.GetType().GetProperty(pair["trees.".Length..].Split('=')[0]) ?? throw new ArgumentException($"No option {pair}.");
            Type type = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            string text = pair.Split('=', 2)[1];
            property.SetValue(options, type.IsEnum ? Enum.Parse(type, text) : Convert.ChangeType(text, type, CultureInfo.InvariantCulture));
        }
        var estimator = ml.Continual().Trainers.LightGbm(options);
        ITransformer? model = null;
        var outcome = Through(ml, $"LightGbm continual, {mode} (featurizer)", periods, options.LabelColumnName, t =>
            model = model is null ? featurization.Pipeline.Append(estimator).Fit(periods[t].Train) : ml.Continual().Refit(model, periods[t].Train));
        var trees = (ContinualLightGbmTransformer)((IEnumerable<ITransformer>)model!).Last();
        Console.Error.WriteLine($"LightGbm continual: rounds per period {string.Join(", ", trees.RoundsPerTask)}; memory {trees.MemoryRows:N0} rows");
        return outcome;
    }

    /// <summary>ML.NET's stock features for trees and linear models: date parts, the distance, one-hot hashed airports.</summary>
    private static IEstimator<ITransformer> FlightFeatures(MLContext ml, bool normalize)
    {
        var pipeline = ml.Transforms.Conversion.ConvertType("__date", nameof(TabularDatasets.Flight.Departure), DataKind.DateTime)
            .Append(ml.Transforms.CopyColumns("__ContinualDate", "__date"))
            .Append(ml.Transforms.CustomMapping(new DatePartsFactory().GetMapping(), DatePartsFactory.ContractName))
            .Append(ml.Transforms.Categorical.OneHotHashEncoding([new("__origin", nameof(TabularDatasets.Flight.Origin)), new("__destination", nameof(TabularDatasets.Flight.Destination))], numberOfBits: 10))
            .Append(ml.Transforms.Concatenate("Features", "__ContinualDateParts", nameof(TabularDatasets.Flight.Distance), "__origin", "__destination"));
        return normalize ? pipeline.Append(ml.Transforms.NormalizeMeanVariance("Features")) : pipeline;
    }

    /// <summary>The same for bird strikes: date parts, the speed (missing replaced by the mean), one-hot hashed categories.</summary>
    private static IEstimator<ITransformer> BirdStrikeFeatures(MLContext ml, bool normalize)
    {
        string[] categories = [nameof(TabularDatasets.BirdStrike.Airport), nameof(TabularDatasets.BirdStrike.Aircraft), nameof(TabularDatasets.BirdStrike.Operator),
            nameof(TabularDatasets.BirdStrike.State), nameof(TabularDatasets.BirdStrike.Phase), nameof(TabularDatasets.BirdStrike.WildlifeSize),
            nameof(TabularDatasets.BirdStrike.Species), nameof(TabularDatasets.BirdStrike.TimeOfDay)];
        var pipeline = ml.Transforms.Conversion.ConvertType("__date", nameof(TabularDatasets.BirdStrike.Date), DataKind.DateTime)
            .Append(ml.Transforms.CopyColumns("__ContinualDate", "__date"))
            .Append(ml.Transforms.CustomMapping(new DatePartsFactory().GetMapping(), DatePartsFactory.ContractName))
            .Append(ml.Transforms.ReplaceMissingValues("__speed", nameof(TabularDatasets.BirdStrike.Speed)))
            .Append(ml.Transforms.Categorical.OneHotHashEncoding(categories.Select(c => new InputOutputColumnPair("__" + c, c)).ToArray(), numberOfBits: 10))
            .Append(ml.Transforms.Concatenate("Features", ["__ContinualDateParts", "__speed", .. categories.Select(c => "__" + c)]));
        return normalize ? pipeline.Append(ml.Transforms.NormalizeMeanVariance("Features")) : pipeline;
    }

    private static Outcome Retrained(MLContext ml, string name, Table table, bool allHistory)
    {
        IDataView? history = null;
        return Through(ml, name, table.Periods, table.Label, t =>
        {
            history = allHistory && history is not null ? table.Union(history, table.Periods[t].Train) : table.Periods[t].Train;
            return table.StockFeatures(ml, false).Append(ml.BinaryClassification.Trainers.LightGbm(table.Label, "Features")).Fit(history);
        });
    }

    private static Outcome WarmStarted<TModel>(MLContext ml, string name, Table table, Func<IDataView, LinearModelParameters?, ISingleFeaturePredictionTransformer<TModel>> fit)
        where TModel : class
    {
        ITransformer? features = null;
        LinearModelParameters? previous = null;
        var periods = table.Periods;
        return Through(ml, name, periods, table.Label, t =>
        {
            features ??= table.StockFeatures(ml, true).Fit(periods[0].Train); // frozen after the first period, as the continual chain's
            var transformer = fit(features.Transform(periods[t].Train), previous);
            previous = transformer.Model switch
            {
                LinearModelParameters linear => linear,
                CalibratedModelParametersBase<LinearBinaryModelParameters, PlattCalibrator> calibrated => calibrated.SubModel,
                _ => null,
            };
            return features.Append(transformer);
        });
    }

    private static IDataView Union<T>(MLContext ml, IDataView a, IDataView b) where T : class, new() =>
        ml.Data.LoadFromEnumerable(ml.Data.CreateEnumerable<T>(a, reuseRowObject: false).Concat(ml.Data.CreateEnumerable<T>(b, reuseRowObject: false)).ToList());

    /// <summary>Fits period after period, timing each fit and scoring every period's held-out rows after each.</summary>
    private static Outcome Through(MLContext ml, string name, List<Period> periods, string label, Func<int, ITransformer> fitPeriod)
    {
        var auc = new double[periods.Count][];
        var seconds = new double[periods.Count];
        ITransformer? model = null;
        for (int t = 0; t < periods.Count; t++)
        {
            var clock = Stopwatch.StartNew();
            model = fitPeriod(t);
            seconds[t] = clock.Elapsed.TotalSeconds;
            auc[t] = periods.Select(p => Auc(model, p.Test, label)).ToArray();
            Console.Error.WriteLine($"{name}: period {t + 1} fitted in {seconds[t]:F1} s; AUC {string.Join(" ", auc[t].Select(a => a.ToString("F3", CultureInfo.InvariantCulture)))}");
        }
        Console.Error.WriteLine($"{name}: next-period AUC per period {string.Join(" ", Enumerable.Range(0, periods.Count - 1).Select(t => auc[t][t + 1].ToString("F4", CultureInfo.InvariantCulture)))}");
        using var stream = new MemoryStream();
        ml.Model.Save(model!, periods[0].Train.Schema, stream);
        return new Outcome(name, auc, seconds, stream.Length);
    }

    /// <summary>The area under the ROC curve of the Score column against the Boolean label (ties counted half), any model.</summary>
    private static double Auc(ITransformer model, IDataView test, string label)
    {
        var scored = model.Transform(test);
        var scores = scored.GetColumn<float>("Score").ToArray();
        var truth = scored.GetColumn<bool>(label).ToArray();
        var order = Enumerable.Range(0, scores.Length).OrderBy(i => scores[i]).ToArray();
        double rankSum = 0;
        long positives = truth.Count(t => t), negatives = truth.Length - positives;
        for (int i = 0; i < order.Length;)
        {
            int j = i;
            while (j + 1 < order.Length && scores[order[j + 1]] == scores[order[i]]) j++;
            double rank = (i + j) / 2.0 + 1;
            for (int k = i; k <= j; k++) if (truth[order[k]]) rankSum += rank;
            i = j + 1;
        }
        return (rankSum - positives * (positives + 1) / 2.0) / ((double)positives * negatives);
    }

    private static void Print(List<Outcome> runs, string dataset, List<Period> periods)
    {
        Console.WriteLine($"{dataset}: {periods.Count} periods of {string.Join(", ", periods.Select(p => $"{p.TrainRows:N0}"))} training rows (80%; 20% held out), after each period every period's held-out rows scored");
        Console.WriteLine("| contender | final mean AUC | next-period AUC | BWT (AUC) | refit s, first → last period | model size |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: |");
        foreach (var run in runs)
        {
            int last = run.Auc.Length - 1;
            double final = run.Auc[last].Average();
            double next = Enumerable.Range(0, last).Select(t => run.Auc[t][t + 1]).Average();
            double bwt = Enumerable.Range(0, last).Select(i => run.Auc[last][i] - run.Auc[i][i]).Average();
            Console.WriteLine($"| {run.Name} | {final:F4} | {next:F4} | {bwt:+0.0000;-0.0000} | {run.RefitSeconds[0]:F1} → {run.RefitSeconds[last]:F1} (periods 2–6: {string.Join(", ", run.RefitSeconds.Skip(1).Select(s => s.ToString("F1", CultureInfo.InvariantCulture)))}) | {run.ModelBytes / 1024.0:N0} KB |");
        }
    }
}
