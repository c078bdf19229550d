using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Continual;

/// <summary>
/// Data-parallel training under OpenMPI: the same fit (Permuted MNIST tasks, one thread per process) in one plain process,
/// in two processes over shared memory and in two processes over TCP loopback, alternating, each run a fresh
/// <c>mpirun</c>; plus the allreduce time per step that the cost model in docs/scale-out.md uses.
/// </summary>
internal static class ScaleOutBenchmarks
{
    private static string Self => typeof(ScaleOutBenchmarks).Assembly.Location;

    public static void Run(string trainer, int tasks, int rows, int epochs, int batch, int[] hidden, int repeats)
    {
        string setup = $"{trainer}, {tasks} Permuted MNIST task(s) x {rows:N0} rows, MLP 784-{string.Join("-", hidden)}-10, Adam, batch {batch}, {epochs} epoch(s), 1 thread per process";
        Console.WriteLine($"Scale-out: {setup}; {repeats} rounds, alternating");
        // Weak scaling (each process keeps the single process's batch: the global batch doubles, as Horovod's figures are
        // made) and strong scaling (the same global batch, split in two: the same model as one process, within rounding).
        string[] Worker(int globalBatch) => ["scale-out-worker", "--trainer", trainer, "--tasks", $"{tasks}", "--rows", $"{rows}", "--epochs", $"{epochs}", "--batch", $"{globalBatch}", "--hidden", string.Join(",", hidden)];
        var configurations = new (string Name, int Processes, string? Transports, int GlobalBatch)[]
        {
            ("1 process", 1, null, batch),
            ($"1 process, batch {batch / 2} (a process's share under strong scaling)", 1, null, batch / 2),
            ($"2 processes, shared memory, batch {batch} each (global {2 * batch})", 2, "vader,self", 2 * batch),
            ($"2 processes, TCP loopback, batch {batch} each (global {2 * batch})", 2, "tcp,self", 2 * batch),
            ($"2 processes, shared memory, global batch {batch} ({batch / 2} each)", 2, "vader,self", batch),
            ($"2 processes, TCP loopback, global batch {batch} ({batch / 2} each)", 2, "tcp,self", batch),
        };
        var runs = configurations.ToDictionary(c => c.Name, _ => new List<(double SamplesPerSecond, double Acc)>());
        for (int r = 0; r < repeats; r++)
        {
            foreach (var c in configurations) runs[c.Name].Add(ParseResult(Launch(c.Processes, c.Transports, Worker(c.GlobalBatch))));
            Console.WriteLine($"round {r + 1}: " + string.Join("; ", runs.Select(kv => $"{kv.Key} {kv.Value[^1].SamplesPerSecond:N0}/s")));
        }
        Console.WriteLine();
        Console.WriteLine("| run | training samples/s, median (per round) | vs 1 process, median of rounds (per round) | ACC |");
        Console.WriteLine("| --- | ---: | ---: | ---: |");
        var single = runs["1 process"];
        foreach (var (name, list) in runs)
        {
            var ratios = list.Select((x, i) => x.SamplesPerSecond / single[i].SamplesPerSecond).ToList();
            Console.WriteLine($"| {name} | {Median(list.Select(x => x.SamplesPerSecond)):N0} ({string.Join(", ", list.Select(x => x.SamplesPerSecond.ToString("N0", CultureInfo.InvariantCulture)))}) | "
                + $"{Median(ratios):F2}x ({string.Join(", ", ratios.Select(x => x.ToString("F2", CultureInfo.InvariantCulture)))}) | {list[^1].Acc:F4} |");
        }

        long parameters = 784L * hidden[0] + hidden[0];
        for (int i = 1; i < hidden.Length; i++) parameters += (long)hidden[i - 1] * hidden[i] + hidden[i];
        parameters += hidden[^1] * 10L + 10;
        Console.WriteLine();
        Console.WriteLine("| allreduce, 2 processes | floats | ms per call (median of 200) | GB/s (4·n bytes / time) |");
        Console.WriteLine("| --- | ---: | ---: | ---: |");
        foreach (var (name, transports) in new[] { ("shared memory", "vader,self"), ("TCP loopback", "tcp,self") })
            foreach (long floats in new[] { parameters, 1_000_000L, 10_000_000L })
            {
                string output = Launch(2, transports, ["scale-out-allreduce", "--floats", $"{floats}", "--reps", "200"]);
                double ms = double.Parse(Line(output, "ALLREDUCE ").Split(' ')[1], CultureInfo.InvariantCulture);
                Console.WriteLine($"| {name} | {floats:N0} | {ms:F3} | {4.0 * floats / (ms / 1000) / 1e9:F2} |");
            }
    }

    /// <summary>One fit through the stream, in every process of ContinualCommunicator.World; rank 0 prints the result.</summary>
    public static void Worker(string trainer, int tasks, int rows, int epochs, int batch, int[] hidden)
    {
        var ml = new MLContext(seed: 0);
        var stream = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: tasks, trainSamplesPerTask: rows, testSamplesPerTask: 10_000);
        var estimator = ml.Continual().Trainers.Create(trainer, new Dictionary<string, string>
        {
            ["HiddenLayerSizes"] = string.Join(",", hidden), ["NumberOfEpochs"] = $"{epochs}", ["BatchSize"] = $"{batch}",
            ["NumberOfThreads"] = "1", ["Seed"] = "0", ["LearningRate"] = "0.001",
        });
        var result = ml.Continual().Run(estimator, stream, new ContinualRunOptions { EvaluateBeforeTraining = false });
        double seconds = result.Tasks.Sum(t => t.MeanEpochSeconds * epochs);
        double samples = result.Tasks.Sum(t => (double)t.TrainingRows * epochs);
        if (ContinualCommunicator.World.Rank == 0)
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"RESULT {samples / seconds} {result.Metrics.AverageAccuracy}"));
    }

    /// <summary>Times <paramref name="reps"/> allreduces of <paramref name="floats"/> floats; rank 0 prints the median in ms.</summary>
    public static void AllReduce(long floats, int reps)
    {
        var world = ContinualCommunicator.World;
        var values = new float[floats];
        var times = new List<double>();
        for (int i = 0; i < reps + 10; i++)
        {
            world.Barrier();
            var clock = Stopwatch.StartNew();
            world.AllReduceSum(values);
            if (i >= 10) times.Add(clock.Elapsed.TotalMilliseconds); // the first calls set up connections
        }
        if (world.Rank == 0) Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ALLREDUCE {Median(times)}"));
    }

    private static (double, double) ParseResult(string output)
    {
        string line = Line(output, "RESULT ");
        var parts = line.Split(' ');
        return (double.Parse(parts[1], CultureInfo.InvariantCulture), double.Parse(parts[2], CultureInfo.InvariantCulture));
    }

    /// <summary>The worker's line that starts with <paramref name="tag"/> (anything a terminal-aware console wrote before it is dropped).</summary>
    private static string Line(string output, string tag)
    {
        int at = output.IndexOf(tag, StringComparison.Ordinal);
        if (at < 0) throw new InvalidOperationException($"The worker printed no '{tag.Trim()}' line:\n{output}");
        return output[at..].Split('\n')[0].Trim();
    }

    /// <summary>Runs this program with <paramref name="args"/> in one plain process, or under mpirun with N processes.</summary>
    private static string Launch(int processes, string? transports, string[] args)
    {
        var start = processes == 1 && transports is null ? new ProcessStartInfo("dotnet") : new ProcessStartInfo("mpirun");
        if (start.FileName == "mpirun")
            foreach (string a in new[] { "-np", $"{processes}", "--oversubscribe", "--mca", "btl", transports!, "--mca", "btl_tcp_if_include", "lo", "dotnet" }) start.ArgumentList.Add(a);
        start.ArgumentList.Add(Self);
        foreach (string a in args) start.ArgumentList.Add(a);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
        start.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{start.FileName} {string.Join(" ", start.ArgumentList)} failed ({process.ExitCode}):\n{output}\n{error.Result}");
        return output;
    }

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }
}
