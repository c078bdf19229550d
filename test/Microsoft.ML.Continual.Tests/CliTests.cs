using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Parquet.Serialization;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

/// <summary>The <c>continual</c> tool, run as a real process.</summary>
public class CliTests
{
    internal sealed record Result(int ExitCode, string Output, string Error);

    private static ProcessStartInfo Start(string workingDirectory, IEnumerable<string> args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = workingDirectory };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Microsoft.ML.Continual.Cli.dll"));
        foreach (string a in args) start.ArgumentList.Add(a);
        return start;
    }

    internal static Result Cli(string workingDirectory, params string[] args)
    {
        using var process = Process.Start(Start(workingDirectory, args))!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(180_000)) { process.Kill(true); throw new TimeoutException($"continual {string.Join(" ", args)} did not finish in 180 s."); }
        return new Result(process.ExitCode, output.Result, error.Result);
    }

    /// <summary>Writes task CSVs: three numeric features, a text column with separators and quotes, a text label.</summary>
    internal static void WriteCsv(string path, int task, int rows, int[] classes, int seed, bool dropX3 = false)
    {
        var random = new Random(seed);
        using var writer = new StreamWriter(path);
        writer.WriteLine(dropX3 ? "x1,x2,note,Label" : "x1,x2,x3,note,Label");
        for (int i = 0; i < rows; i++)
        {
            int c = classes[i % classes.Length];
            string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
            double x1 = c + 0.5 * task + 0.3 * Gaussian(random), x2 = -c + 0.3 * Gaussian(random), x3 = task + Gaussian(random);
            writer.WriteLine(dropX3 ? $"{F(x1)},{F(x2)},\"row {i}, \"\"q\"\"\",c{c}" : $"{F(x1)},{F(x2)},{F(x3)},\"row {i}, \"\"q\"\"\",c{c}");
        }
    }

    private static double Gaussian(Random r) => Math.Sqrt(-2 * Math.Log(1 - r.NextDouble())) * Math.Cos(2 * Math.PI * r.NextDouble());

    public sealed class ParquetRow
    {
        public float x1 { get; set; }
        public float x2 { get; set; }
        public float x3 { get; set; }
        public string note { get; set; } = "";
        public string Label { get; set; } = "";
    }

    [Fact]
    public async Task TrainRefitEvaluateInspect_FromCsvAndParquet_WithJsonOutput()
    {
        using var temp = new TempFolder();
        WriteCsv(temp.File("task1.csv"), 0, 300, [0, 1, 2], 1);
        // The second task as Parquet (same columns).
        var rows = File.ReadAllLines(temp.File("task1.csv")).Length;
        Assert.Equal(301, rows);
        WriteCsv(temp.File("task2.csv"), 1, 300, [0, 1, 2, 3], 2);
        var parquetRows = new List<ParquetRow>();
        var random = new Random(3);
        for (int i = 0; i < 300; i++)
        {
            int c = i % 4;
            parquetRows.Add(new ParquetRow { x1 = (float)(c + 0.5 + 0.3 * Gaussian(random)), x2 = (float)(-c + 0.3 * Gaussian(random)), x3 = (float)(1 + Gaussian(random)), note = $"n{i}", Label = $"c{c}" });
        }
        await ParquetSerializer.SerializeAsync(parquetRows, temp.File("task2.parquet"));

        var train = Cli(temp.Path, "train", "--data", "task1.csv", "--label", "Label", "--trainer", "replay", "--set", "MemorySize=50", "--set", "NumberOfEpochs=30", "--out", "m1.zip", "--json");
        Assert.True(train.ExitCode == 0, train.Error);
        var json = JsonDocument.Parse(train.Output).RootElement;
        Assert.Equal("Replay", json.GetProperty("trainer").GetString());
        Assert.Equal(3, json.GetProperty("features").GetInt32()); // x1..x3; the text column is not a feature

        var refit = Cli(temp.Path, "refit", "--model", "m1.zip", "--data", "task2.parquet", "--out", "m2.zip", "--json");
        Assert.True(refit.ExitCode == 0, refit.Error);
        Assert.Equal(2, JsonDocument.Parse(refit.Output).RootElement.GetProperty("tasksSeen").GetInt32());

        WriteCsv(temp.File("test1.csv"), 0, 100, [0, 1, 2], 11);
        WriteCsv(temp.File("test2.csv"), 1, 100, [0, 1, 2, 3], 12);
        var evaluate = Cli(temp.Path, "evaluate", "--model", "m1.zip", "--model", "m2.zip", "--data", "test1.csv", "--data", "test2.csv", "--json");
        Assert.True(evaluate.ExitCode == 0, evaluate.Error);
        var result = JsonDocument.Parse(evaluate.Output).RootElement;
        var scores = result.GetProperty("scores").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetDouble()).ToArray()).ToArray();
        Assert.True(scores[0][0] > 0.7 && scores[1][1] > 0.7, evaluate.Output); // each model is well above chance (1/3, 1/4) on its own task
        Assert.Equal((scores[1][0] + scores[1][1]) / 2, result.GetProperty("ACC").GetDouble(), 5);
        Assert.Equal(scores[1][0] - scores[0][0], result.GetProperty("BWT").GetDouble(), 5);

        var inspect = Cli(temp.Path, "inspect", "m2.zip", "--json");
        Assert.True(inspect.ExitCode == 0, inspect.Error);
        var info = JsonDocument.Parse(inspect.Output).RootElement;
        Assert.Equal($"0x{Internal.ModelFormat.CurrentVersion:X8}", info.GetProperty("formatVersion").GetString());
        Assert.Equal(["c0", "c1", "c2", "c3"], info.GetProperty("classes").EnumerateArray().Select(c => c.GetString()));
        Assert.Equal(50, info.GetProperty("state").GetProperty("memory rows").GetInt64());
        Assert.Equal("50", info.GetProperty("options").GetProperty("MemorySize").GetString());
    }

    [Fact]
    public void RunAndSweep_OnAGeneratedStream_PrintJson_AndWriteTheirReports()
    {
        using var temp = new TempFolder();
        var run = Cli(temp.Path, "run", "--benchmark", "rotating-hyperplane", "--trainers", "finetune,ewc", "--tasks", "2", "--train-samples", "1000",
            "--set", "NumberOfEpochs=10", "--set", "BatchSize=32", "--set", "HiddenLayerSizes=8", "--report", "run-report", "--json");
        Assert.True(run.ExitCode == 0, run.Error);
        var runs = JsonDocument.Parse(run.Output).RootElement.GetProperty("runs").EnumerateArray().ToList();
        Assert.Equal(["finetune", "ewc"], runs.Select(r => r.GetProperty("trainer").GetString()));
        Assert.All(runs, r => Assert.InRange(r.GetProperty("ACC").GetDouble(), 0.6, 1.0)); // two classes: well above chance
        Assert.True(File.Exists(temp.File(Path.Combine("run-report", "comparison.csv"))));

        var sweep = Cli(temp.Path, "sweep", "--benchmark", "rotating-hyperplane", "--trainer", "ewc", "--range", "Lambda=1:1000:log", "--range", "BatchSize=16:64:int",
            "--tasks", "2", "--train-samples", "1000", "--set", "NumberOfEpochs=10", "--set", "HiddenLayerSizes=8", "--trials", "4", "--tuner", "Grid", "--report", "sweep-report", "--json");
        Assert.True(sweep.ExitCode == 0, sweep.Error);
        var result = JsonDocument.Parse(sweep.Output).RootElement;
        var trials = result.GetProperty("trials").EnumerateArray().ToList();
        Assert.Equal(4, trials.Count);
        Assert.All(trials, t => Assert.Equal("Completed", t.GetProperty("status").GetString()));
        // The grid's corners: λ at both ends of its log range, batch sizes at both ends of theirs.
        var lambdas = trials.Select(t => double.Parse(t.GetProperty("parameters").GetProperty("Lambda").GetString()!, CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(1, lambdas.Min(), 6);
        Assert.Equal(1000, lambdas.Max(), 3);
        Assert.Equal(["16", "64"], trials.Select(t => t.GetProperty("parameters").GetProperty("BatchSize").GetString()).Distinct().Order());
        Assert.InRange(result.GetProperty("bestTestACC").GetDouble(), 0.6, 1.0);
        Assert.Equal(5, File.ReadAllLines(temp.File(Path.Combine("sweep-report", "trials.csv"))).Length);
    }

    [Fact]
    public void Help_IsReadable_AndBadInput_GetsItsExitCodeAndAClearMessage()
    {
        using var temp = new TempFolder();
        var help = Cli(temp.Path, "--help");
        Assert.Equal(0, help.ExitCode);
        foreach (string command in new[] { "train", "refit", "evaluate", "run", "sweep", "inspect" }) Assert.Contains(command, help.Output);
        Assert.Contains("Exit codes", help.Output);
        var trainHelp = Cli(temp.Path, "train", "--help");
        Assert.Equal(0, trainHelp.ExitCode);
        Assert.Contains("--checkpoint-every", trainHelp.Output);
        Assert.Contains("Lambda=1000", trainHelp.Output);

        Assert.Equal(2, Cli(temp.Path, "train", "--label", "Label").ExitCode); // missing --data and --out
        WriteCsv(temp.File("task1.csv"), 0, 120, [0, 1], 1);
        var unknownOption = Cli(temp.Path, "train", "--data", "task1.csv", "--label", "Label", "--trainer", "ewc", "--set", "Lamda=1", "--out", "m.zip");
        Assert.Equal(2, unknownOption.ExitCode);
        Assert.Contains("Lambda", unknownOption.Error);
        var missingLabel = Cli(temp.Path, "train", "--data", "task1.csv", "--label", "Target", "--out", "m.zip");
        Assert.Equal(3, missingLabel.ExitCode);
        Assert.Contains("'Target' is missing", missingLabel.Error);

        Assert.Equal(0, Cli(temp.Path, "train", "--data", "task1.csv", "--label", "Label", "--set", "NumberOfEpochs=1", "--out", "m.zip").ExitCode);
        // A later task without x3 and with text in x2: both differences are listed, before any training.
        WriteCsv(temp.File("bad.csv"), 1, 50, [0, 1], 2, dropX3: true);
        File.WriteAllText(temp.File("bad.csv"), File.ReadAllText(temp.File("bad.csv")).Replace("x1,x2,note", "x1,x2,note").Replace(",-", ",minus"));
        var mismatch = Cli(temp.Path, "refit", "--model", "m.zip", "--data", "bad.csv", "--out", "m2.zip");
        Assert.Equal(3, mismatch.ExitCode);
        Assert.Contains("column 'x3' (Single) is missing", mismatch.Error);
        Assert.Contains("column 'x2' is Text here but Single", mismatch.Error);
        Assert.False(File.Exists(temp.File("m2.zip")));

        File.WriteAllBytes(temp.File("foreign.zip"), [0x50, 0x4B, 3, 4, 1, 2, 3]);
        var foreign = Cli(temp.Path, "inspect", "foreign.zip");
        Assert.Equal(4, foreign.ExitCode);
        Assert.Contains("not a readable ML.NET model", foreign.Error);
    }

    [Fact]
    public void TwoJobsOnOneOutput_OneFailsClearly_NeitherCorruptsIt()
    {
        using var temp = new TempFolder();
        WriteCsv(temp.File("task1.csv"), 0, 3000, [0, 1, 2], 1);
        Assert.Equal(0, Cli(temp.Path, "train", "--data", "task1.csv", "--label", "Label", "--set", "NumberOfEpochs=40", "--out", "m.zip").ExitCode);
        WriteCsv(temp.File("task2.csv"), 1, 3000, [0, 1, 2], 2);
        // Waits until a job holds next.zip's lock (opening a locked file fails), so the second job surely meets it.
        void WaitForLock(Process job)
        {
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromSeconds(60) && !job.HasExited)
            {
                try { using (new FileStream(temp.File("next.zip.lock"), FileMode.Open, FileAccess.Read, FileShare.ReadWrite)) { } }
                catch (FileNotFoundException) { }
                catch (IOException) { return; }
                Thread.Sleep(10);
            }
            Assert.Fail("the first job never held the lock");
        }
        var a = Process.Start(Start(temp.Path, ["refit", "--model", "m.zip", "--data", "task2.csv", "--out", "next.zip"]))!;
        WaitForLock(a);
        var b = Cli(temp.Path, "refit", "--model", "m.zip", "--data", "task2.csv", "--out", "next.zip");
        a.WaitForExit(120_000);
        Assert.Equal(0, a.ExitCode);
        Assert.Equal(5, b.ExitCode);
        Assert.Contains("Another job is writing", b.Error);
        var ml = new MLContext();
        Assert.Equal(2, ContinualCatalog.FindContinual(ml.Continual().LoadModel(temp.File("next.zip"), out _))!.TasksSeen);
        // With --wait, the second job waits for the lock instead and then succeeds.
        var c = Process.Start(Start(temp.Path, ["refit", "--model", "m.zip", "--data", "task2.csv", "--out", "next.zip"]))!;
        WaitForLock(c);
        var d = Cli(temp.Path, "refit", "--model", "m.zip", "--data", "task2.csv", "--out", "next.zip", "--wait", "120");
        c.WaitForExit(120_000);
        Assert.Equal((0, 0), (c.ExitCode, d.ExitCode));
    }

    [Fact]
    public void KilledAtRandomMoments_LeavesThePreviousModelIntact_AndNoPartialFile()
    {
        using var temp = new TempFolder();
        WriteCsv(temp.File("task1.csv"), 0, 500, [0, 1, 2], 1);
        Assert.Equal(0, Cli(temp.Path, "train", "--data", "task1.csv", "--label", "Label", "--set", "NumberOfEpochs=1", "--out", "base.zip").ExitCode);
        WriteCsv(temp.File("task2.csv"), 1, 6000, [0, 1, 2], 2);
        string original = TestData.Hash(temp.File("base.zip"));
        var random = new Random(17);
        var ml = new MLContext();
        int completed = 0, interrupted = 0;
        for (int run = 0; run < 12; run++)
        {
            File.Copy(temp.File("base.zip"), temp.File("model.zip"), overwrite: true);
            File.Delete(temp.File("model.zip.bak"));
            using var process = Process.Start(Start(temp.Path, ["refit", "--model", "model.zip", "--data", "task2.csv", "--in-place"]))!;
            Thread.Sleep(random.Next(200, 4500)); // from start-up through reading, training, backing up and saving
            bool killed = !process.HasExited;
            if (killed) process.Kill(entireProcessTree: true);
            process.WaitForExit();
            // Whatever the moment: model.zip is the previous model or the complete new one, and it loads.
            string now = TestData.Hash(temp.File("model.zip"));
            var model = ContinualCatalog.FindContinual(ml.Continual().LoadModel(temp.File("model.zip"), out _))!;
            if (now == original) { Assert.Equal(1, model.TasksSeen); interrupted++; }
            else { Assert.Equal(2, model.TasksSeen); Assert.Equal(original, TestData.Hash(temp.File("model.zip.bak"))); completed++; }
            if (File.Exists(temp.File("model.zip.bak"))) Assert.Equal(original, TestData.Hash(temp.File("model.zip.bak")));
        }
        Assert.True(interrupted > 0 && completed > 0, $"{interrupted} interrupted, {completed} completed: the kill times should cover both");
    }

    [Fact]
    public void ResumeAfterAKill_EndsWithTheSameModel_AsAnUninterruptedRun()
    {
        using var temp = new TempFolder();
        WriteCsv(temp.File("task1.csv"), 0, 20000, [0, 1, 2], 1);
        string[] train = ["train", "--data", "task1.csv", "--label", "Label", "--trainer", "ewc", "--set", "NumberOfEpochs=6", "--set", "Dropout=0.1", "--set", "HiddenLayerSizes=64", "--set", "Seed=3", "--checkpoint-every", "1"];
        Assert.Equal(0, Cli(temp.Path, [.. train, "--out", "straight.zip"]).ExitCode);
        // Kill the same job once its first checkpoint is on disk, then resume it.
        using (var process = Process.Start(Start(temp.Path, [.. train, "--out", "resumed.zip"]))!)
        {
            var clock = Stopwatch.StartNew();
            while (!File.Exists(temp.File("resumed.zip.ckpt")) && !process.HasExited && clock.Elapsed < TimeSpan.FromSeconds(120)) Thread.Sleep(20);
            Assert.False(process.HasExited, "the run ended before its first checkpoint");
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
        }
        Assert.False(File.Exists(temp.File("resumed.zip")));
        var resumed = Cli(temp.Path, [.. train, "--out", "resumed.zip", "--resume"]);
        Assert.True(resumed.ExitCode == 0, resumed.Error);
        Assert.Contains("resumed from the checkpoint", resumed.Error);
        Assert.True(resumed.Error.Split('\n').Count(l => l.StartsWith("train: epoch")) < 6, resumed.Error); // only the remaining epochs ran
        Assert.False(File.Exists(temp.File("resumed.zip.ckpt")));
        var ml = new MLContext();
        Assert.Equal(ScoresOf(ml, temp.File("straight.zip"), temp.File("task1.csv")), ScoresOf(ml, temp.File("resumed.zip"), temp.File("task1.csv")));
    }

    /// <summary>The Score column of a saved model on a CSV written by <see cref="WriteCsv"/>.</summary>
    internal static float[] ScoresOf(MLContext ml, string modelPath, string csv)
    {
        var model = ml.Continual().LoadModel(modelPath, out _);
        var data = ml.Data.LoadFromTextFile(csv, [
            new Microsoft.ML.Data.TextLoader.Column("x1", Microsoft.ML.Data.DataKind.Single, 0),
            new Microsoft.ML.Data.TextLoader.Column("x2", Microsoft.ML.Data.DataKind.Single, 1),
            new Microsoft.ML.Data.TextLoader.Column("x3", Microsoft.ML.Data.DataKind.Single, 2),
            new Microsoft.ML.Data.TextLoader.Column("note", Microsoft.ML.Data.DataKind.String, 3),
            new Microsoft.ML.Data.TextLoader.Column("Label", Microsoft.ML.Data.DataKind.String, 4)], separatorChar: ',', hasHeader: true, allowQuoting: true);
        return ml.Data.CreateEnumerable<ScoreRow>(model.Transform(ml.Data.TakeRows(data, 500)), reuseRowObject: false).SelectMany(r => r.Score).ToArray();
    }

    private sealed class ScoreRow
    {
        public float[] Score { get; set; } = [];
    }
}
