using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using Parquet.Serialization;

/// <summary>
/// Real, time-ordered business tables for the tabular benchmark, fetched once through a registry this project's machines
/// reach (npm, with the machine's <c>npm pack</c>), checked against their SHA-256 sums and cached, as MNIST is.
/// </summary>
internal static class TabularDatasets
{
    /// <summary>US domestic flights, January to June 2001 (BTS on-time data, 3,000,000 flown flights: actual departure
    /// date-time, arrival delay in minutes, distance, origin and destination airport), in the npm package
    /// <c>vega-datasets</c> 3.2.1 (BSD-3-Clause; the data is the US Department of Transportation's).</summary>
    private const string FlightsPackage = "vega-datasets@3.2.1";
    private const string FlightsFile = "flights-3m.parquet";
    private const string FlightsSha256 = "dbeb920c90f59b6ccaff823dcc3d08f25a97fa1ce128d93f40be4e931f5900b0";

    public static string CacheDirectory(string name) =>
        Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } cache ? cache
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "continual-ml", name);

    /// <summary>The flights file, fetched and checked on first use.</summary>
    public static string FlightsPath()
    {
        string directory = CacheDirectory("flights");
        string path = Path.Combine(directory, FlightsFile);
        if (File.Exists(path)) return path;
        Directory.CreateDirectory(directory);
        string work = Path.Combine(directory, ".fetch-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(work);
        try
        {
            string archive = NpmPack(FlightsPackage, work);
            using var file = File.OpenRead(archive);
            using var gzip = new GZipStream(file, CompressionMode.Decompress);
            using var tar = new TarReader(gzip);
            while (tar.GetNextEntry() is { } entry)
            {
                if (entry.Name != "package/data/" + FlightsFile || entry.DataStream is null) continue;
                string temporary = Path.Combine(work, FlightsFile);
                using (var output = File.Create(temporary)) entry.DataStream.CopyTo(output);
                string actual = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(temporary))).ToLowerInvariant();
                if (actual != FlightsSha256) throw new InvalidDataException($"{FlightsFile} from {FlightsPackage} has SHA-256 {actual}; {FlightsSha256} was expected.");
                File.Move(temporary, path, overwrite: true);
                return path;
            }
            throw new InvalidDataException($"{FlightsPackage} has no data/{FlightsFile}.");
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }
    }

    public sealed class FlightRecord
    {
        public DateTime? date { get; set; }
        public long? delay { get; set; }
        public long? distance { get; set; }
        public string? origin { get; set; }
        public string? destination { get; set; }
    }

    /// <summary>A flight as the benchmark's tables hold it: the departure time (text, as a CSV would have it), distance,
    /// airports and whether it arrived 15 minutes late or more (the BTS definition of a late flight).</summary>
    public sealed class Flight
    {
        public string Departure { get; set; } = "";
        public float Distance { get; set; }
        public string Origin { get; set; } = "";
        public string Destination { get; set; } = "";
        public bool Late { get; set; }
    }

    /// <summary>The six months, each a uniform sample of <paramref name="rowsPerMonth"/> flights (seeded); the 6 flights
    /// stamped 2001-07-01 00:00 are dropped.</summary>
    public static List<List<Flight>> FlightsByMonth(int rowsPerMonth, int seed)
    {
        var clock = Stopwatch.StartNew();
        using var stream = File.OpenRead(FlightsPath());
        var records = ParquetSerializer.DeserializeAsync<FlightRecord>(stream).GetAwaiter().GetResult().Data;
        var months = Enumerable.Range(1, 6).Select(_ => new List<FlightRecord>()).ToList();
        foreach (var r in records)
            if (r.date is DateTime d && d.Year == 2001 && d.Month <= 6 && r.delay is long && r.distance is long) months[d.Month - 1].Add(r);
        var random = new Random(seed);
        var result = months.Select(month =>
        {
            var chosen = month.Count <= rowsPerMonth ? month : month.OrderBy(_ => random.Next()).Take(rowsPerMonth).OrderBy(r => r.date).ToList();
            return chosen.Select(r => new Flight
            {
                Departure = r.date!.Value.ToString("yyyy-MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture),
                Distance = r.distance!.Value, Origin = r.origin ?? "", Destination = r.destination ?? "", Late = r.delay >= 15,
            }).ToList();
        }).ToList();
        Console.Error.WriteLine($"flights: {records.Count:N0} records read in {clock.Elapsed.TotalSeconds:F1} s; {string.Join(", ", result.Select(m => $"{m.Count:N0}"))} rows per month");
        return result;
    }

    private static string NpmPack(string package, string work)
    {
        var start = new ProcessStartInfo("npm") { WorkingDirectory = work, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "pack", package, "--silent" }) start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new IOException("npm could not be started.");
        string output = process.StandardOutput.ReadToEnd(), error = process.StandardError.ReadToEnd();
        if (!process.WaitForExit(600_000)) { process.Kill(true); throw new IOException("npm pack did not finish in 10 minutes."); }
        if (process.ExitCode != 0) throw new IOException($"'npm pack {package}' failed ({process.ExitCode}): {error.Trim()}");
        return Directory.GetFiles(work, "*.tgz").SingleOrDefault() ?? throw new IOException($"'npm pack {package}' wrote no archive: {output.Trim()}");
    }
}
