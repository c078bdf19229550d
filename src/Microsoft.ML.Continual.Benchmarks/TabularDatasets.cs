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

    /// <summary>Wildlife strikes on aircraft reported to the FAA, 1990–2002 (10,000 strikes: airport, aircraft, operator, state,
    /// phase of flight, wildlife size and species, time of day, speed, the damage and its cost), in the same npm package.</summary>
    private const string BirdStrikesFile = "birdstrikes.csv";
    private const string BirdStrikesSha256 = "45777edf69984b37599e73dbfb34dbc976055243547407214261a4fcb9466462";

    /// <summary>The flights file, fetched and checked on first use.</summary>
    public static string FlightsPath() => VegaFile(FlightsFile, FlightsSha256, "flights");

    /// <summary>The bird-strikes file, fetched and checked on first use.</summary>
    public static string BirdStrikesPath() => VegaFile(BirdStrikesFile, BirdStrikesSha256, "birdstrikes");

    private static string VegaFile(string fileName, string sha256, string cacheName)
    {
        string directory = CacheDirectory(cacheName);
        string path = Path.Combine(directory, fileName);
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
                if (entry.Name != "package/data/" + fileName || entry.DataStream is null) continue;
                string temporary = Path.Combine(work, fileName);
                using (var output = File.Create(temporary)) entry.DataStream.CopyTo(output);
                string actual = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(temporary))).ToLowerInvariant();
                if (actual != sha256) throw new InvalidDataException($"{fileName} from {FlightsPackage} has SHA-256 {actual}; {sha256} was expected.");
                File.Move(temporary, path, overwrite: true);
                return path;
            }
            throw new InvalidDataException($"{FlightsPackage} has no data/{fileName}.");
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

    /// <summary>A bird strike as the benchmark's tables hold it; the cost columns are left out (a cost means damage).</summary>
    public sealed class BirdStrike
    {
        public string Airport { get; set; } = "";
        public string Aircraft { get; set; } = "";
        public string Date { get; set; } = "";
        public string Operator { get; set; } = "";
        public string State { get; set; } = "";
        public string Phase { get; set; } = "";
        public string WildlifeSize { get; set; } = "";
        public string Species { get; set; } = "";
        public string TimeOfDay { get; set; } = "";
        public float Speed { get; set; }
        public bool Damaged { get; set; }
    }

    /// <summary>Six two-year periods, 1990–91 to 2000–01, each in date order (the 627 strikes of 2002, a part year, are left out).</summary>
    public static List<List<BirdStrike>> BirdStrikesByPeriod()
    {
        var lines = File.ReadAllLines(BirdStrikesPath());
        var header = lines[0].Split(',');
        int Column(string name) => Array.IndexOf(header, name) is int i and >= 0 ? i : throw new InvalidDataException($"{BirdStrikesFile} has no column '{name}'.");
        int airport = Column("Airport Name"), aircraft = Column("Aircraft Make Model"), damage = Column("Effect Amount of damage"), date = Column("Flight Date"),
            op = Column("Aircraft Airline Operator"), state = Column("Origin State"), phase = Column("Phase of flight"), size = Column("Wildlife Size"),
            species = Column("Wildlife Species"), time = Column("Time of day"), speed = Column("Speed IAS in knots");
        var periods = Enumerable.Range(0, 6).Select(_ => new List<BirdStrike>()).ToList();
        foreach (string line in lines.Skip(1))
        {
            var f = line.Split(',');
            if (f.Length != header.Length) throw new InvalidDataException($"{BirdStrikesFile}: a row has {f.Length} fields, not {header.Length}.");
            int year = int.Parse(f[date][..4], System.Globalization.CultureInfo.InvariantCulture);
            if (year < 1990 || year > 2001) continue;
            periods[(year - 1990) / 2].Add(new BirdStrike
            {
                Airport = f[airport], Aircraft = f[aircraft], Date = f[date], Operator = f[op], State = f[state], Phase = f[phase], WildlifeSize = f[size],
                Species = f[species], TimeOfDay = f[time], Damaged = f[damage] != "None",
                Speed = float.TryParse(f[speed], System.Globalization.CultureInfo.InvariantCulture, out float v) ? v : float.NaN,
            });
        }
        foreach (var period in periods) period.Sort((a, b) => string.CompareOrdinal(a.Date, b.Date));
        Console.Error.WriteLine($"birdstrikes: {string.Join(", ", periods.Select(p => $"{p.Count:N0}"))} rows per two-year period");
        return periods;
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
