using Microsoft.ML;
using Microsoft.ML.Continual;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Samples;

/// <summary>
/// Sample for ONNX export (<c>ml.Model.ConvertToOnnx</c> on a pipeline ending in a continual model): train and refit a
/// task-incremental model, export it with the normalizer before it, and score the file with ONNX Runtime as a service
/// in another language would, passing the task-id column a task-incremental model needs; then the same for a boosted-trees
/// model refitted on a second month, its binary-coded category included.
/// </summary>
public static class DeploySample
{
    private sealed class MnistRow
    {
        [VectorType(784)] public float[] Features { get; set; } = [];
        [KeyType(10)] public uint Label { get; set; }
        public string TaskId { get; set; } = "";
    }

    private sealed class Scored
    {
        public float[] Score { get; set; } = [];
        public uint PredictedLabel { get; set; }
    }

    public static void Run(string workDirectory)
    {
        var ml = new MLContext(seed: 1);
        var stream = ml.Continual().Benchmarks.SplitMnist(ContinualScenario.TaskIncremental, numberOfTasks: 2, trainSamplesPerTask: 2000, testSamplesPerTask: 500);

        // Train on task 1, refit on task 2: a head per task, chosen by the TaskId column ("task1", "task2").
        var pipeline = ml.Transforms.NormalizeMinMax("Features")
            .Append(ml.Continual().Trainers.Ewc(new EwcTrainer.Options { TaskIdColumnName = "TaskId", HiddenLayerSizes = [100], NumberOfEpochs = 2 }));
        ITransformer model = ml.Continual().Refit(pipeline.Fit(stream[0].Train), stream[1].Train);

        // Export: the normalizer and the continual model in one graph. Its inputs are the view's columns (Features and
        // TaskId are read; the label is not and need not be fed); its outputs Score and PredictedLabel.
        string onnxPath = Path.Combine(workDirectory, "deploy-model.onnx");
        IDataView test = stream[1].Test;
        using (var file = File.Create(onnxPath)) ml.Model.ConvertToOnnx(model, test, file, "Score", "PredictedLabel");

        // Deploy: ONNX Runtime, no ML.NET, no libtorch. A task-incremental graph takes each row's task id.
        var rows = ml.Data.CreateEnumerable<MnistRow>(test, reuseRowObject: false).Take(200).ToList();
        using var session = new InferenceSession(onnxPath);
        var inputs = new[]
        {
            NamedOnnxValue.CreateFromTensor("Features", new DenseTensor<float>(rows.SelectMany(r => r.Features).ToArray(), [rows.Count, 784])),
            NamedOnnxValue.CreateFromTensor("TaskId", new DenseTensor<string>(rows.Select(r => r.TaskId).ToArray(), [rows.Count, 1])),
        };
        using var results = session.Run(inputs, ["Score.output", "PredictedLabel.output"]);
        float[] onnxScores = results[0].AsTensor<float>().ToArray();
        uint[] onnxLabels = results[1].AsTensor<uint>().ToArray();

        // The same rows through the model's own Transform: equal within 1e-5, the same predicted labels.
        var expected = ml.Data.CreateEnumerable<Scored>(model.Transform(ml.Data.LoadFromEnumerable(rows, test.Schema)), reuseRowObject: false).ToList();
        float largest = expected.SelectMany(e => e.Score).Zip(onnxScores, (a, b) => Math.Abs(a - b)).Max();
        int agree = expected.Select(e => e.PredictedLabel).Zip(onnxLabels, (a, b) => a == b ? 1 : 0).Sum();
        int correct = rows.Zip(onnxLabels, (r, p) => r.Label == p ? 1 : 0).Sum();
        Console.WriteLine($"Deploy sample: {new FileInfo(onnxPath).Length:N0}-byte ONNX file; ONNX Runtime vs Transform on {rows.Count} rows of task 2: " +
            $"largest score difference {largest:E1}, {agree} of {rows.Count} predicted labels equal, accuracy {correct / (double)rows.Count:P1}");
        ExportTrees(ml, workDirectory);
    }

    private sealed class CustomerRow
    {
        // Tenure, monthly spend, then the region (0-5) as 3 binary-coded slots, most significant bit first.
        [VectorType(5)] public float[] Features { get; set; } = [];
        public bool Label { get; set; }
    }

    private sealed class TreeScored
    {
        public float Score { get; set; }
        public float Probability { get; set; }
    }

    private static List<CustomerRow> Month(int rows, int seed, int regions)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, rows).Select(_ =>
        {
            float tenure = (float)(random.NextDouble() * 60), spend = (float)(random.NextDouble() * 100);
            int region = random.Next(regions);
            bool churned = 0.05 * spend - 0.08 * tenure + (region is 1 or 4 ? 1.5 : -0.5) + random.NextDouble() - 0.5 > 0;
            return new CustomerRow { Features = [tenure, spend, (region >> 2) & 1, (region >> 1) & 1, region & 1], Label = churned };
        }).ToList();
    }

    /// <summary>Boosted trees: trained on January, refitted on February (a new region appears), exported and scored by
    /// ONNX Runtime. The graph holds the trees as one TreeEnsembleRegressor and decodes the region's bits itself.</summary>
    private static void ExportTrees(MLContext ml, string workDirectory)
    {
        var trainer = ml.Continual().Trainers.LightGbm(new Microsoft.ML.Continual.Trees.ContinualLightGbmTrainer.Options
        {
            BinaryCodedCategoricals = 1, BitsPerCategorical = 3, Mode = Microsoft.ML.Continual.Trees.ContinualBoostingMode.AddRounds,
        });
        ITransformer trees = ml.Continual().Refit(trainer.Fit(ml.Data.LoadFromEnumerable(Month(3000, 1, regions: 5))), ml.Data.LoadFromEnumerable(Month(3000, 2, regions: 6)));
        var test = Month(500, 3, regions: 6);
        var view = ml.Data.LoadFromEnumerable(test);
        string onnxPath = Path.Combine(workDirectory, "deploy-trees.onnx");
        using (var file = File.Create(onnxPath)) ml.Model.ConvertToOnnx(trees, view, file, "Score", "Probability");

        using var session = new InferenceSession(onnxPath);
        var features = NamedOnnxValue.CreateFromTensor("Features", new DenseTensor<float>(test.SelectMany(r => r.Features).ToArray(), [test.Count, 5]));
        using var results = session.Run([features], ["Probability.output"]);
        float[] probabilities = results[0].AsTensor<float>().ToArray();
        var expected = ml.Data.CreateEnumerable<TreeScored>(trees.Transform(view), reuseRowObject: false).Select(e => e.Probability).ToList();
        float largest = expected.Zip(probabilities, (a, b) => Math.Abs(a - b)).Max();
        int correct = test.Zip(probabilities, (r, p) => r.Label == p > 0.5f ? 1 : 0).Sum();
        Console.WriteLine($"Deploy sample, boosted trees after 2 months: {new FileInfo(onnxPath).Length:N0}-byte ONNX file; ONNX Runtime vs Transform on {test.Count} rows: " +
            $"largest probability difference {largest:E1}, accuracy {correct / (double)test.Count:P1}");
    }
}
