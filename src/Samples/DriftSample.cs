using Microsoft.ML;
using Microsoft.ML.Continual;

namespace Samples;

/// <summary>
/// Sample for shift detection (<c>ml.Continual().DetectShift</c>): a model keeps a bounded sample of the rows of its
/// latest fit (trainer option <c>ShiftReferenceRows</c>, in its zip); a nightly job compares the new rows with it and refits
/// only when they have shifted; the model's own outputs are tested too, which finds a change of the classes' prior. The command-line tool does the same with <c>continual drift --model m.zip --data new.csv</c>
/// (exit code 10 on a shift, <c>--json</c> for schedulers).
/// </summary>
public static class DriftSample
{
    private sealed class LabelRow { [Microsoft.ML.Data.KeyType(10)] public uint Label { get; set; } } // keys 1-10: the digits 0-9

    private sealed class BinaryLabelRow { public bool IsLow { get; set; } }

    public static void Run(string workDirectory)
    {
        var ml = new MLContext(seed: 1);
        // Task 1: MNIST as it is; task 2: the same digits with their pixels permuted (the data a model was not fitted on).
        var stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: 2, trainSamplesPerTask: 2000, testSamplesPerTask: 500);
        var model = ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options { HiddenLayerSizes = [100], NumberOfEpochs = 1 }).Fit(stream[0].Train);
        Console.WriteLine($"The model keeps {model.ShiftReferenceRows} rows of its fit (default ShiftReferenceRows 500; 0 keeps none).");

        // Saved and loaded as a batch job would: the sample travels in the zip.
        string path = Path.Combine(workDirectory, "drift-model.zip");
        ml.Model.Save(model, stream[0].Train.Schema, path);
        ITransformer loaded = ml.Continual().LoadModel(path, out _);

        foreach (var (name, rows) in new[] { ("new rows like the training rows", stream[0].Test), ("new rows with permuted pixels", stream[1].Test) })
        {
            ShiftReport report = ml.Continual().DetectShift(loaded, rows);
            Console.WriteLine($"{name}: {report}");
            if (report.Shifted)
            {
                // The job's decision: refit on the new rows (the model continues; its reference becomes these rows).
                loaded = ml.Continual().Refit(loaded, stream[1].Train);
                Console.WriteLine($"  refitted; the same rows against the new reference: shifted = {ml.Continual().DetectShift(loaded, rows).Shifted}");
            }
        }

        // A change of the classes' prior: only the digits 0-4 arrive (each digit's pixels as before). The test on the model's
        // outputs sees it directly: the shares of the predicted classes before and after.
        var lowDigits = ml.Data.FilterRowsByKeyColumnFraction(stream[0].Test, "Label", lowerBound: 0, upperBound: 0.5);
        var prior = ml.Continual().DetectShift(model, lowDigits);
        Console.WriteLine($"new rows of the digits 0-4 only: shifted = {prior.Shifted}, features p = {prior.FeaturesPValue:0.###}, outputs p = {prior.Predictions!.PValue:0.###}; "
            + string.Join(", ", prior.Predictions.Classes.Take(3).Select(c => $"class {c.Name} predicted for {c.ReferenceShare:P0} -> {c.NewShare:P0}")));

        // Boosted trees keep a sample too (ContinualLightGbmTrainer.Options.ShiftReferenceRows), here on a binary label:
        // is the digit 0-4.
        var binary = ml.Transforms.CustomMapping<LabelRow, BinaryLabelRow>((input, output) => output.IsLow = input.Label <= 5, contractName: null);
        var trees = ml.Continual().Trainers.LightGbm(new Microsoft.ML.Continual.Trees.ContinualLightGbmTrainer.Options { LabelColumnName = nameof(BinaryLabelRow.IsLow), NumberOfIterations = 20 });
        var treeModel = binary.Append(trees).Fit(stream[0].Train);
        Console.WriteLine($"boosted trees, new rows with permuted pixels: shifted = {ml.Continual().DetectShift(treeModel, stream[1].Test).Shifted}");

        // Two data views can be compared directly too, e.g. last month's rows with this month's.
        var direct = ml.Continual().DetectShift(stream[0].Train, stream[1].Train, new ShiftDetectionOptions { MaxRows = 300 });
        Console.WriteLine($"task 1 vs task 2 training rows: shifted = {direct.Shifted}, p = {direct.PValue:0.###}, {direct.ShiftedFeatureCount} of {direct.FeaturesCompared} pixels differ");
    }
}
