using System.Diagnostics;

namespace Microsoft.ML.Continual.Tests;

/// <summary>
/// The test assembly doubles as a helper program so that tests can load and refit models in a fresh process
/// (nothing cached from the process that saved them). The test runner never calls Main.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var ml = new MLContext(seed: 1);
        switch (args.FirstOrDefault())
        {
            case "score": // score <model.zip> <task> <classes,comma> <rows> <seed> <out.bin>
            {
                ITransformer model = ml.Model.Load(args[1], out _);
                var data = TestData.View(ml, int.Parse(args[2]), Classes(args[3]), int.Parse(args[4]), int.Parse(args[5]));
                File.WriteAllBytes(args[6], TestData.Bytes(TestData.Scores(model, data)));
                var engine = ml.Model.CreatePredictionEngine<Row, TextPrediction>(model);
                var first = TestData.Rows(int.Parse(args[2]), Classes(args[3]), 1, int.Parse(args[5]))[0];
                File.WriteAllBytes(args[6] + ".engine", TestData.Bytes(engine.Predict(first).Score));
                return 0;
            }
            case "train": // train <out.zip> <task> <classes,comma> <rows> <seed> [scores.bin]: normaliser + FineTune
            {
                var data = TestData.View(ml, int.Parse(args[2]), Classes(args[3]), int.Parse(args[4]), int.Parse(args[5]));
                var model = ml.Transforms.NormalizeMinMax("Features").Append(ml.Continual().Trainers.FineTune(TestData.Options())).Fit(data);
                ml.Model.Save(model, data.Schema, args[1]);
                if (args.Length > 6)
                    File.WriteAllBytes(args[6], TestData.Bytes(TestData.Scores(model, TestData.View(ml, int.Parse(args[2]), Classes(args[3]), 700, 2))));
                return 0;
            }
            case "refit": // refit <model.zip> <task> <classes,comma> <rows> <seed> <out.zip>
            {
                ITransformer model = ml.Model.Load(args[1], out var schema);
                var data = TestData.View(ml, int.Parse(args[2]), Classes(args[3]), int.Parse(args[4]), int.Parse(args[5]));
                ITransformer next = ml.Continual().Refit(model, data);
                ml.Model.Save(next, schema, args[6]);
                return 0;
            }
            case "fixture": // fixture <out.zip> <scores.bin>: the format-compatibility fixture (made once, kept in Fixtures/)
            {
                var data = TestData.View(ml, 0, [0, 1, 2], 120, 1);
                var options = new EwcTrainer.Options { HiddenLayerSizes = [8], NumberOfEpochs = 2, Seed = 7, Lambda = 10 };
                var model = ml.Continual().Trainers.Ewc(options).Fit(data);
                var next = ml.Continual().Refit(model, TestData.View(ml, 1, [0, 1, 2, 3], 120, 2));
                ml.Model.Save(next, data.Schema, args[1]);
                File.WriteAllBytes(args[2], TestData.Bytes(TestData.Scores(next, TestData.View(ml, 1, [0, 1, 2, 3], 40, 3))));
                return 0;
            }
            default:
                Console.Error.WriteLine("usage: score|train|refit|fixture ...");
                return 2;
        }
    }

    private static int[] Classes(string text) => text.Split(',').Select(int.Parse).ToArray();

    /// <summary>Runs this assembly in a new process and fails with its output if it fails.</summary>
    public static void RunFresh(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(typeof(Program).Assembly.Location);
        foreach (string a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        if (!process.WaitForExit(120_000)) { process.Kill(true); throw new TimeoutException("The helper process did not finish in 120 s."); }
        if (process.ExitCode != 0) throw new Xunit.Sdk.XunitException($"Helper process failed ({process.ExitCode}): {output}");
    }
}
