using Microsoft.ML;
using Microsoft.ML.Continual;
using Microsoft.ML.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Samples;

/// <summary>
/// Sample for ONNX export (<c>ml.Model.ConvertToOnnx</c> on a pipeline ending in a continual model): train and refit a
/// task-incremental model, export it with the normalizer before it, and score the file with ONNX Runtime as a service
/// in another language would, passing the task-id column a task-incremental model needs.
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
    }
}
