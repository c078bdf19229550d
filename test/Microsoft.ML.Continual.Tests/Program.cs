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
            case "plugin-refit": // plugin-refit <model.zip> <task> <classes,comma> <rows> <seed> <out.zip>: as refit, with the tests' own plugin registered
            {
                RecordingPlugin.EnsureRegistered();
                ITransformer model = ml.Continual().LoadModel(args[1], out var schema);
                var data = TestData.View(ml, int.Parse(args[2]), Classes(args[3]), int.Parse(args[4]), int.Parse(args[5]));
                ml.Model.Save(ml.Continual().Refit(model, data), schema, args[6]);
                return 0;
            }
            case "trees-refit": // trees-refit <model.zip> <period> <out.zip>: loads boosted trees, refits on a customer period, saves
            {
                ITransformer model = ml.Continual().LoadModel(args[1], out var schema);
                ml.Model.Save(ml.Continual().Refit(model, TreesTests.Period(ml, int.Parse(args[2]))), schema, args[3]);
                return 0;
            }
            case "load-only": // load-only <model.zip>: loads with nothing registered beyond the library's own; prints the error, if any
            {
                try { ml.Continual().LoadModel(args[1], out _); Console.WriteLine("loaded"); }
                catch (Exception e) { Console.WriteLine($"{e.GetType().Name}: {e.Message}"); }
                return 0;
            }
            case "fuzz-structured": // fuzz-structured <summary.json>: the structured fuzzer, in a process of its own so that its peak memory is its own
                StructuredFuzz.Run(args[1]);
                return 0;
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
            case "distributed": // distributed <out.bin> <trainer>[,<trainer>...] [Name=Value ...]: three tasks per trainer, trained by every process of ContinualCommunicator.World; each process writes every model's scores to <out.bin>.<rank>
            {
                var scores = new List<float>();
                foreach (string trainer in args[2].Split(','))
                {
                    var settings = new Dictionary<string, string> { ["HiddenLayerSizes"] = "16", ["NumberOfEpochs"] = "3", ["BatchSize"] = "30", ["LearningRate"] = "0.01", ["Seed"] = "3", ["NumberOfThreads"] = "1" };
                    foreach (string pair in args.Skip(3)) settings[pair.Split('=')[0]] = pair.Split('=', 2)[1];
                    // 301 rows: the last batch has one row, so one process's share of it is empty.
                    var model = ml.Continual().Trainers.Create(trainer, settings).Fit(TestData.View(ml, 0, [0, 1, 2], 301, 1));
                    var next = ml.Continual().Refit(model, TestData.View(ml, 1, [3, 4, 5], 300, 2));
                    next = ml.Continual().Refit(next, TestData.View(ml, 2, [6, 7], 200, 3)); // two past tasks: GEM shares them out
                    foreach (var (task, classes) in new[] { (0, new[] { 0, 1, 2 }), (1, new[] { 3, 4, 5 }), (2, new[] { 6, 7 }) })
                        scores.AddRange(TestData.Scores(next, TestData.View(ml, task, classes, 100, 9)));
                }
                File.WriteAllBytes($"{args[1]}.{ContinualCommunicator.World.Rank}", TestData.Bytes(scores.ToArray()));
                if (ContinualCommunicator.World.Rank == 0)
                    File.WriteAllText(args[1] + ".processes", ContinualCommunicator.World.Size.ToString(System.Globalization.CultureInfo.InvariantCulture));
                return 0;
            }
            case "distributed-failure": // distributed-failure <out> <rank>: that process's task has a NaN feature; every process writes the error its fit threw to <out>.<rank>
            {
                int failing = int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture);
                var rows = TestData.Rows(0, [0, 1, 2], 300, 1);
                if (ContinualCommunicator.World.Rank == failing) rows[17].Features[3] = float.NaN;
                string outcome = "no error";
                try { ml.Continual().Trainers.FineTune(TestData.Options()).Fit(ml.Data.LoadFromEnumerable(rows)); }
                catch (Exception e) { outcome = $"{e.GetType().Name}: {e.Message}"; }
                File.WriteAllText($"{args[1]}.{ContinualCommunicator.World.Rank}", outcome);
                return 0;
            }
            case "distributed-cancel": // distributed-cancel <rank>: that process cancels its fit in the middle of training
            {
                using var cancel = new CancellationTokenSource();
                bool cancelling = ContinualCommunicator.World.Rank == int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture);
                var fit = new ContinualFitOptions { Progress = p => { if (cancelling && p.Epoch == 1) cancel.Cancel(); } };
                var options = TestData.Options();
                options.NumberOfEpochs = 50;
                ml.Continual().Trainers.FineTune(options).Fit(TestData.View(ml, 0, [0, 1, 2], 3000, 1), null, fit, cancel.Token);
                return 0;
            }
            case "collectives": // collectives <out>: every process of ContinualCommunicator.World writes what the collectives gave it to <out>.<rank>
            {
                var world = ContinualCommunicator.World;
                float[] floats = [world.Rank + 1, 10 * (world.Rank + 1), -1];
                world.AllReduceSum(floats);
                double[] doubles = [world.Rank + 0.5];
                world.AllReduceSum(doubles);
                using var tensor = TorchSharp.torch.ones(10);
                world.AllReduceSum(tensor);
                byte[] data = world.Rank == 1 ? [1, 2, 3] : [0, 0, 0];
                world.Broadcast(data, root: 1);
                world.Barrier();
                File.WriteAllText($"{args[1]}.{world.Rank}", string.Create(System.Globalization.CultureInfo.InvariantCulture,
                    $"rank {world.Rank} of {world.Size}; floats {string.Join(",", floats)}; doubles {string.Join(",", doubles)}; tensor {string.Join(",", tensor.data<float>().ToArray())}; broadcast from 1: {string.Join(",", data)}"));
                return 0;
            }
            default:
                Console.Error.WriteLine("usage: score|train|refit|fixture|distributed|collectives ...");
                return 2;
        }
    }

    private static int[] Classes(string text) => text.Split(',').Select(int.Parse).ToArray();

    /// <summary>Runs this assembly in a new process and fails with its output if it fails.</summary>
    public static void RunFresh(params string[] args) => RunFreshForOutput(args);

    /// <summary>As <see cref="RunFresh"/>, returning what the process wrote.</summary>
    public static string RunFreshForOutput(params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(typeof(Program).Assembly.Location);
        foreach (string a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        if (!process.WaitForExit(600_000)) { process.Kill(true); throw new TimeoutException("The helper process did not finish in 600 s."); }
        if (process.ExitCode != 0) throw new Xunit.Sdk.XunitException($"Helper process failed ({process.ExitCode}): {output}");
        return output;
    }
}
