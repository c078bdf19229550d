using System.Diagnostics;
using System.Globalization;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

/// <summary>
/// Data-parallel training under OpenMPI's <c>mpirun</c> (real processes, shared memory and TCP loopback): two processes
/// must train the same model as one process with the same global batch and seed. The tolerance: the two processes sum two
/// half-batch gradients where one process averages the whole batch, so results differ by float rounding only; measured
/// at most 4e-7 on the scores of every trainer, checked against 1e-5.
/// </summary>
public class DistributedTests
{
    private const float Tolerance = 1e-5f;
    private static readonly string Helper = typeof(Program).Assembly.Location;

    [Theory]
    [InlineData("vader,self")] // shared memory
    [InlineData("tcp,self")]   // TCP over loopback
    public void TwoProcesses_TrainTheSameModelAsOne_FineTuneEwcGemReplay(string transports)
    {
        using var temp = new TempFolder();
        const string trainers = "FineTune,Ewc,Gem,Replay";
        float[] single = RunHelper(temp.File("single.bin"), processes: 1, transports, trainers);
        float[] two = RunHelper(temp.File("two.bin"), processes: 2, transports, trainers);
        AssertSame(single, two, trainers);
    }

    [Fact]
    public void ThreeProcesses_TrainTheSameModelAsOne()
    {
        using var temp = new TempFolder();
        const string trainers = "FineTune,Ewc,Gem,AGem"; // GEM's two past tasks go to ranks 0 and 1, none to rank 2
        AssertSame(RunHelper(temp.File("one.bin"), 1, "vader,self", trainers), RunHelper(temp.File("three.bin"), 3, "vader,self", trainers), trainers);
    }

    [Fact]
    public void BadDataInOneProcess_FailsTheFitInEveryProcess_AsACatchableError()
    {
        using var temp = new TempFolder();
        var clock = Stopwatch.StartNew();
        var result = Mpi(2, "vader,self", Helper, "distributed-failure", temp.File("outcome"), "1");
        Assert.True(result.ExitCode == 0, result.Output + result.Error); // both processes caught their fit's error and went on
        Assert.StartsWith("ContinualDistributedException: Another process of this data-parallel fit", File.ReadAllText(temp.File("outcome.0")));
        Assert.StartsWith("ContinualDataException:", File.ReadAllText(temp.File("outcome.1")));
        Assert.Contains("NaN", File.ReadAllText(temp.File("outcome.1")));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"the job took {clock.Elapsed.TotalSeconds:F0} s"); // no process waited forever
    }

    [Fact]
    public void AFailureInOneProcessDuringTraining_EndsTheWholeJob_WithItsMessage()
    {
        var clock = Stopwatch.StartNew();
        var result = Mpi(2, "vader,self", Helper, "distributed-cancel", "1");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("rank 1 of 2: OperationCanceledException", result.Error);
        Assert.Contains("ending the data-parallel job", result.Error);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"the job took {clock.Elapsed.TotalSeconds:F0} s to end"); // rank 0 does not wait forever
    }

    [Fact]
    public void TwoProcesses_TrainTheSameModelAsOne_EveryOtherTrainer()
    {
        using var temp = new TempFolder();
        const string shared = "L2,Si,Mas,RWalk,Scp,AGem,GenerativeReplay,Joint";
        AssertSame(RunHelper(temp.File("s1.bin"), 1, "vader,self", shared), RunHelper(temp.File("s2.bin"), 2, "vader,self", shared), shared);
        AssertSame(RunHelper(temp.File("e1.bin"), 1, "vader,self", "Ewc", "FisherLabels=Sampled"),
            RunHelper(temp.File("e2.bin"), 2, "vader,self", "Ewc", "FisherLabels=Sampled"), "Ewc with sampled Fisher labels");
        const string perTask = "PackNet,Cpg,ProgressiveNetworks,Independent,Gem,AGem"; // multi-head: GEM's and A-GEM's shares reach other tasks' heads
        AssertSame(RunHelper(temp.File("t1.bin"), 1, "vader,self", perTask, "TaskIdColumnName=Task"),
            RunHelper(temp.File("t2.bin"), 2, "vader,self", perTask, "TaskIdColumnName=Task"), perTask);
    }

    [Theory]
    [InlineData("vader,self")]
    [InlineData("tcp,self")]
    public void Collectives_SumBroadcastAndBarrier_AcrossThreeProcesses(string transports)
    {
        using var temp = new TempFolder();
        var result = Mpi(3, transports, Helper, "collectives", temp.File("c"));
        Assert.True(result.ExitCode == 0, result.Output + result.Error);
        for (int rank = 0; rank < 3; rank++)
            Assert.Equal($"rank {rank} of 3; floats 6,60,-3; doubles 4.5; tensor 3,3,3,3,3,3,3,3,3,3; broadcast from 1: 1,2,3", File.ReadAllText(temp.File($"c.{rank}")));
    }

    [Fact]
    public void WithoutMpirun_TheWorldIsOneProcess_AndCollectivesReturnTheirInput()
    {
        Assert.Null(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE"));
        var world = ContinualCommunicator.World;
        Assert.Same(ContinualCommunicator.SingleProcess, world);
        Assert.Equal((0, 1), (world.Rank, world.Size));
        float[] values = [1, 2];
        world.AllReduceSum(values);
        Assert.Equal([1f, 2f], values);
        Assert.Throws<ArgumentOutOfRangeException>(() => world.Broadcast(new byte[1], root: 1));
    }

    [Fact]
    public void Dropout_UnderTwoProcesses_IsRefusedClearly()
    {
        using var temp = new TempFolder();
        var result = Mpi(2, "vader,self", Helper, "distributed", temp.File("x.bin"), "FineTune", "Dropout=0.2");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("Dropout (0.2) with data-parallel training", result.Output + result.Error);
        Assert.False(File.Exists(temp.File("x.bin.0")));
    }

    [Fact]
    public void Cli_RefitUnderTwoProcesses_WritesOneModel_EqualToTheSingleProcessRefit()
    {
        using var temp = new TempFolder();
        CliTests.WriteCsv(temp.File("task1.csv"), 0, 300, [0, 1, 2], 1);
        CliTests.WriteCsv(temp.File("task2.csv"), 1, 301, [0, 1, 2, 3], 2);
        var train = CliTests.Cli(temp.Path, "train", "--data", "task1.csv", "--label", "Label", "--trainer", "ewc", "--featurize", "none",
            "--set", "NumberOfEpochs=3", "--set", "BatchSize=16", "--set", "NumberOfThreads=1", "--out", "m1.zip");
        Assert.True(train.ExitCode == 0, train.Error);
        var single = CliTests.Cli(temp.Path, "refit", "--model", "m1.zip", "--data", "task2.csv", "--out", "one.zip");
        Assert.True(single.ExitCode == 0, single.Error);
        string cli = Path.Combine(AppContext.BaseDirectory, "Microsoft.ML.Continual.Cli.dll");
        // Another job holds the output: rank 0 fails with the tool's exit code, and the job ends (rank 1 does not wait for it forever).
        using (new FileStream(temp.File("two.zip.lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None))
        {
            var locked = Mpi(2, "vader,self", cli, "refit", "--model", "m1.zip", "--data", "task2.csv", "--out", "two.zip", "--workdir", temp.Path);
            Assert.Equal(5, locked.ExitCode);
            Assert.Contains("Another job is writing", locked.Error);
            Assert.False(File.Exists(temp.File("two.zip")));
        }
        var two = Mpi(2, "vader,self", cli, "refit", "--model", "m1.zip", "--data", "task2.csv", "--out", "two.zip", "--workdir", temp.Path);
        Assert.True(two.ExitCode == 0, two.Output + two.Error);
        Assert.Equal(1, CountOf(two.Output, "Refitted Ewc")); // rank 0 reports; the other process is silent
        Assert.Equal(["m1.zip", "one.zip", "task1.csv", "task2.csv", "two.zip"],
            Directory.GetFiles(temp.Path).Select(Path.GetFileName).Where(f => !f!.EndsWith(".lock", StringComparison.Ordinal)).Order(StringComparer.Ordinal));

        var ml = new MLContext(seed: 1);
        CliTests.WriteCsv(temp.File("test.csv"), 1, 200, [0, 1, 2, 3], 5);
        var one = ml.Model.Load(temp.File("one.zip"), out _);
        var other = ml.Model.Load(temp.File("two.zip"), out _);
        var data = ml.Data.LoadFromTextFile(temp.File("test.csv"), [new("x1", Data.DataKind.Single, 0), new("x2", Data.DataKind.Single, 1), new("x3", Data.DataKind.Single, 2), new("Label", Data.DataKind.String, 4)],
            separatorChar: ',', hasHeader: true, allowQuoting: true);
        AssertSame(TestData.Scores(one, data), TestData.Scores(other, data), "continual refit");
    }

    /// <summary>Runs the test assembly's "distributed" helper in <paramref name="processes"/> processes under mpirun and
    /// returns rank 0's scores, after checking that the helper saw that many processes.</summary>
    private static float[] RunHelper(string output, int processes, string transports, string trainers, params string[] settings)
    {
        if (processes == 1) Program.RunFresh(["distributed", output, trainers, .. settings]); // a plain process, no MPI
        else
        {
            var result = Mpi(processes, transports, Helper, ["distributed", output, trainers, .. settings]);
            Assert.True(result.ExitCode == 0, $"mpirun -np {processes} failed ({result.ExitCode}): {result.Output}{result.Error}");
        }
        Assert.Equal(processes.ToString(CultureInfo.InvariantCulture), File.ReadAllText(output + ".processes"));
        float[] Scores(int rank) => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(File.ReadAllBytes($"{output}.{rank}")).ToArray();
        float[] rankZero = Scores(0);
        for (int rank = 1; rank < processes; rank++)
            Assert.True(rankZero.AsSpan().SequenceEqual(Scores(rank)), $"process {rank}'s model differs from rank 0's"); // every process holds the same model, bit for bit
        return rankZero;
    }

    private static void AssertSame(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        Assert.True(expected.Length > 0);
        Assert.All(expected, v => Assert.True(float.IsFinite(v)));
        float worst = expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(worst <= Tolerance, $"{what}: two processes' scores differ from one process's by up to {worst:G3} (tolerance {Tolerance:G3}).");
    }

    private static int CountOf(string text, string part) => (text.Length - text.Replace(part, "", StringComparison.Ordinal).Length) / part.Length;

    /// <summary>Runs <c>mpirun -np N --mca btl TRANSPORTS dotnet ASSEMBLY ARGS</c> (as root too; TCP on the loopback device) and waits for it.</summary>
    internal static CliTests.Result Mpi(int processes, string transports, string assembly, params string[] args)
    {
        string? mpirun = FindMpirun();
        Assert.True(mpirun is not null, "mpirun was not found on PATH: these tests need OpenMPI 4 (Debian: apt-get install openmpi-bin; build/test.sh installs it).");
        var start = new ProcessStartInfo(mpirun!) { RedirectStandardOutput = true, RedirectStandardError = true };
        // Spelled out so that the test means the same on any machine: N processes on this host, the given transports.
        foreach (string a in new[] { "-np", processes.ToString(CultureInfo.InvariantCulture), "--oversubscribe", "--mca", "btl", transports }) start.ArgumentList.Add(a);
        if (transports.Contains("tcp", StringComparison.Ordinal)) // OpenMPI leaves 127.0.0.1 out of TCP by default; name the loopback device
            foreach (string a in new[] { "--mca", "btl_tcp_if_include", "lo" }) start.ArgumentList.Add(a);
        int workdir = Array.IndexOf(args, "--workdir");
        if (workdir >= 0) { start.WorkingDirectory = args[workdir + 1]; args = [.. args[..workdir], .. args[(workdir + 2)..]]; }
        start.ArgumentList.Add("dotnet");
        start.ArgumentList.Add(assembly);
        foreach (string a in args) start.ArgumentList.Add(a);
        start.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
        start.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(180_000)) { process.Kill(true); throw new TimeoutException($"mpirun -np {processes} {assembly} did not finish in 180 s."); }
        return new CliTests.Result(process.ExitCode, output.Result, error.Result);
    }

    private static string? FindMpirun() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, "mpirun")).FirstOrDefault(File.Exists);
}
