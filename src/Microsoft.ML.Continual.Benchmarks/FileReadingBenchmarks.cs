using System.Diagnostics;
using System.Globalization;
using System.Text;
using Microsoft.ML;
using Microsoft.ML.Continual.Cli;
using Microsoft.ML.Data;

/// <summary>
/// The tool's reading of a multi-million-row business CSV (numbers with missing values, categories, true/false, a Boolean
/// label): rows/s of its scan and of one cursor pass beside ML.NET's <c>LoadFromTextFile</c> on the same file, in one run;
/// then <c>continual train</c> on the file with and without <c>MemoryBudgetMegabytes</c>, each job's peak resident memory,
/// optionally inside a memory cgroup smaller than the file (a file larger than the memory the job may use).
/// </summary>
internal static class FileReadingBenchmarks
{
    private static readonly string[] Regions = Enumerable.Range(0, 30).Select(i => $"region-{i:D2}").ToArray();
    private static readonly string[] Channels = ["web", "store", "phone", "partner"];

    public static void Run(long rows, int budgetMegabytes, int limitMegabytes, bool readOnly, bool limitedOnly, int treesRows, bool treesOnly, string report)
    {
        string folder = Path.Combine(report, "file-reading");
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, $"business-{rows}.csv");
        if (!File.Exists(path)) Generate(path, rows);
        long bytes = new FileInfo(path).Length;
        Console.WriteLine($"File: {rows:N0} rows, 12 columns (7 numbers with missing values, 3 categories of 4 to 2,000 values, a true/false, a Boolean label), {bytes / 1048576.0:N0} MB.");
        CompareReading(path, rows);
        if (readOnly) return;
        Console.WriteLine();
        Console.WriteLine("`continual train --data <file> --label churn` (featurizer; the tabular network for 1 epoch, or the boosted trees), one process each:");
        Console.WriteLine("| job | memory limit | exit code | peak resident memory | seconds |");
        Console.WriteLine("| --- | --- | ---: | ---: | ---: |");
        var limits = new List<int?>();
        if (!limitedOnly) limits.Add(null);
        if (limitMegabytes > 0) limits.Add(limitMegabytes);
        foreach (int? limit in limits)
        {
            if (!treesOnly)
            {
                Train(path, folder, ["--set", $"MemoryBudgetMegabytes={budgetMegabytes}"], $"MemoryBudgetMegabytes={budgetMegabytes}", limit);
                Train(path, folder, [], "no budget (the task read into memory)", limit);
            }
            if (treesRows > 0) // the boosted trees: a sample of each period, or the period held
            {
                Train(path, folder, ["--trainer", "lightgbm", "--set", $"MaximumRowsPerPeriod={treesRows}"], $"lightgbm, MaximumRowsPerPeriod={treesRows}", limit);
                Train(path, folder, ["--trainer", "lightgbm"], "lightgbm, no limit (the period held)", limit);
            }
        }
    }

    /// <summary>A churn-like table: the label depends on the amount, tenure, the channel and the region, with noise.</summary>
    private static void Generate(string path, long rows)
    {
        var random = new Random(20);
        string temporary = path + ".tmp";
        using (var writer = new StreamWriter(temporary, false, new UTF8Encoding(false), 1 << 20))
        {
            writer.WriteLine("customer,region,product,channel,member,amount,quantity,discount,age,tenure,visits,churn");
            var regionEffect = Regions.Select(_ => random.NextDouble() - 0.5).ToArray();
            string F(double v) => v.ToString("0.###", CultureInfo.InvariantCulture);
            for (long i = 0; i < rows; i++)
            {
                int region = random.Next(Regions.Length), channel = random.Next(Channels.Length), product = (int)Math.Min(1999, -Math.Log(1 - random.NextDouble()) * 300);
                bool member = random.NextDouble() < 0.4;
                double amount = Math.Exp(3 + random.NextDouble() * 2), tenure = random.NextDouble() * 10, age = 18 + random.NextDouble() * 60;
                int quantity = 1 + random.Next(9), visits = random.Next(50);
                string discount = random.NextDouble() < 0.05 ? "" : F(random.NextDouble() * 0.3);
                string ageText = random.NextDouble() < 0.02 ? "" : F(age);
                double logit = -0.5 + regionEffect[region] - 0.25 * tenure + 0.01 * amount + (channel == 1 ? 0.6 : 0) + (member ? -0.8 : 0) + 0.03 * visits + (product % 7 == 0 ? 0.5 : 0);
                bool churn = random.NextDouble() < 1 / (1 + Math.Exp(-logit));
                writer.Write($"{i},{Regions[region]},p{product},{Channels[channel]},{(member ? "true" : "false")},{F(amount)},{quantity},{discount},{ageText},{F(tenure)},{visits},{(churn ? "true" : "false")}\n");
            }
        }
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>The tool's scan and one pass over every column, beside ML.NET's text loader (declared columns, quoting on)
    /// making one pass over the same columns; each with its peak resident memory above the level before it.</summary>
    private static void CompareReading(string path, long rows)
    {
        var ml = new MLContext(seed: 0);
        Console.WriteLine("| reader | seconds | rows/s | peak resident memory above the start |");
        Console.WriteLine("| --- | ---: | ---: | ---: |");
        Table? table = null;
        Measure("continual's scan (Table.Read: types, checks, profiles)", () => { table = Table.Read(path, null, [], ["churn"]); return table.Rows; });
        Measure("continual's pass (one cursor, every column)", () => Pass(table!.ToDataView()));
        var loader = ml.Data.LoadFromTextFile(path, new TextLoader.Options
        {
            HasHeader = true, Separators = [','], AllowQuoting = true,
            Columns =
            [
                new("customer", DataKind.Single, 0), new("region", DataKind.String, 1), new("product", DataKind.String, 2),
                new("channel", DataKind.String, 3), new("member", DataKind.Boolean, 4), new("amount", DataKind.Single, 5),
                new("quantity", DataKind.Single, 6), new("discount", DataKind.Single, 7), new("age", DataKind.Single, 8),
                new("tenure", DataKind.Single, 9), new("visits", DataKind.Single, 10), new("churn", DataKind.Boolean, 11),
            ],
        });
        Measure("ML.NET LoadFromTextFile (one cursor, every column)", () => Pass(loader));

        void Measure(string name, Func<long> read)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            long before = ProcessMemory.ResidentBytes();
            ProcessMemory.ResetPeak();
            var clock = Stopwatch.StartNew();
            long read_ = read();
            double seconds = clock.Elapsed.TotalSeconds;
            if (read_ != rows) throw new InvalidOperationException($"{name} read {read_:N0} rows, not {rows:N0}.");
            Console.WriteLine($"| {name} | {seconds:F1} | {rows / seconds:N0} | {(ProcessMemory.PeakResidentBytes() - before) / 1048576.0:N0} MB |");
        }
    }

    /// <summary>Reads every column of every row through the view's getters; returns the rows.</summary>
    private static long Pass(IDataView view)
    {
        using var cursor = view.GetRowCursor(view.Schema);
        var getters = view.Schema.Select<DataViewSchema.Column, Action>(c => c.Type switch
        {
            NumberDataViewType => Reader<float>(cursor, c),
            BooleanDataViewType => Reader<bool>(cursor, c),
            _ => Reader<ReadOnlyMemory<char>>(cursor, c),
        }).ToArray();
        long rows = 0;
        while (cursor.MoveNext())
        {
            foreach (var get in getters) get();
            rows++;
        }
        return rows;
    }

    private static Action Reader<T>(DataViewRowCursor cursor, DataViewSchema.Column column)
    {
        var getter = cursor.GetGetter<T>(column);
        T value = default!;
        return () => getter(ref value);
    }

    /// <summary>One <c>continual train</c> job on the file, its peak resident memory read from /proc while it runs; with a
    /// limit, inside a new memory cgroup (v1, root) that caps memory and swap.</summary>
    private static void Train(string path, string folder, string[] options, string job, int? limitMegabytes)
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "Microsoft.ML.Continual.Cli.dll");
        var arguments = new List<string> { cli, "train", "--data", path, "--label", "churn", "--ignore", "customer", "--out", Path.Combine(folder, "model.zip") };
        if (!options.Contains("lightgbm")) arguments.AddRange(["--set", "NumberOfEpochs=1"]);
        arguments.AddRange(options);
        string? group = limitMegabytes is int limit ? MemoryGroup(limit) : null;
        var start = new ProcessStartInfo(group is null ? "dotnet" : "sh") { RedirectStandardError = true, RedirectStandardOutput = true };
        if (group is not null)
        {
            start.ArgumentList.Add("-c");
            start.ArgumentList.Add($"echo $$ > {group}/cgroup.procs && exec dotnet \"$@\"");
            start.ArgumentList.Add("sh");
        }
        foreach (string a in arguments) start.ArgumentList.Add(a);
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        long peak = 0;
        while (!process.WaitForExit(50)) peak = Math.Max(peak, ProcessMemory.PeakResidentBytes(process.Id) ?? 0);
        double seconds = clock.Elapsed.TotalSeconds;
        if (group is not null) Directory.Delete(group);
        Console.WriteLine($"| {job} | {(limitMegabytes is null ? "none" : $"{limitMegabytes} MB (cgroup)")} | {process.ExitCode} | {peak / 1048576.0:N0} MB | {seconds:F0} |");
        if (process.ExitCode != 0) Console.Error.WriteLine($"  ({job}: {error.Result.Trim().Split('\n').LastOrDefault()})");
        else Console.Error.WriteLine($"  ({output.Result.Trim().Split('\n').LastOrDefault()})");
    }

    /// <summary>A new cgroup-v1 memory group capping memory and memory+swap at <paramref name="megabytes"/>.</summary>
    private static string MemoryGroup(int megabytes)
    {
        string group = $"/sys/fs/cgroup/memory/continual-file-reading-{Environment.ProcessId}-{megabytes}";
        if (!Directory.Exists("/sys/fs/cgroup/memory"))
            throw new InvalidOperationException("--limit-mb needs the cgroup-v1 memory controller at /sys/fs/cgroup/memory (and root).");
        Directory.CreateDirectory(group);
        File.WriteAllText(Path.Combine(group, "memory.limit_in_bytes"), $"{megabytes * 1048576L}");
        string swap = Path.Combine(group, "memory.memsw.limit_in_bytes");
        if (File.Exists(swap)) File.WriteAllText(swap, $"{megabytes * 1048576L}");
        return group;
    }
}
