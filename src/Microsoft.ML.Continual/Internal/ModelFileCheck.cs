using System.IO.Compression;
using System.Reflection;
using System.Text;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Continual.Internal;

/// <summary>
/// What <see cref="ContinualCatalog.LoadModel(string, out DataViewSchema, ContinualLoadOptions)"/> checks in a model zip
/// before ML.NET reads any of it: the entries' names, their declared sizes (and, by decompressing each once into a
/// counter, their actual sizes) against a budget, every <c>Model.key</c> header's loader assembly and loader signature
/// against an allowlist, and the <c>Schema</c> entry's table of contents (<see cref="SchemaEntryCheck"/>).
/// </summary>
/// <remarks>
/// Why: ML.NET's loader extracts every entry to the temporary folder (a 2 MB zip of zeros can fill gigabytes of disk),
/// calls <c>Assembly.Load</c> on the assembly name each <c>Model.key</c> stores and creates whichever registered class
/// answers to its loader signature (so any loadable class of any assembly the app ships is reachable from a file), and
/// loops forever on a damaged vector dimension in the schema. None of that can be configured in ML.NET 5.0, so it is
/// checked here first. ML.NET's <c>ComponentCatalog</c> members used here are internal (this folder's README).
/// </remarks>
internal static class ModelFileCheck
{
    private const ulong HeaderSignature = 0x4C45444F4D004C4DUL; // "ML\0MODEL", ML.NET's ModelHeader.SignatureValue
    private const int HeaderSize = 0x100;
    private const int MaxEntries = 10_000;
    private const long MaxHeaderEntryBytes = 64 << 20;

    /// <summary>ML.NET's own assemblies (its packages' simple names) and this library: the loaders a model file may name.</summary>
    private static readonly HashSet<string> MLNetAssemblies = new(StringComparer.Ordinal)
    {
        "Microsoft.ML.Continual", "Microsoft.ML.Core", "Microsoft.ML.Data", "Microsoft.ML.DataView", "Microsoft.ML.Transforms",
        "Microsoft.ML.StandardTrainers", "Microsoft.ML.KMeansClustering", "Microsoft.ML.PCA", "Microsoft.ML.FastTree", "Microsoft.ML.LightGbm",
        "Microsoft.ML.Mkl.Components", "Microsoft.ML.TimeSeries", "Microsoft.ML.ImageAnalytics", "Microsoft.ML.OnnxTransformer",
        "Microsoft.ML.TensorFlow", "Microsoft.ML.Recommender", "Microsoft.ML.Vision", "Microsoft.ML.TorchSharp", "Microsoft.ML.Ensemble",
        "Microsoft.ML.Parquet", "Microsoft.ML.Experimental", "Microsoft.ML.Featurizers", "Microsoft.ML.Tokenizers", "Microsoft.ML.CpuMath",
        "Microsoft.ML.EntryPoints", "Microsoft.ML.Maml", "Microsoft.ML.ResultProcessor", "Microsoft.ML.Sweeper",
    };

    /// <summary>Checks the zip in <paramref name="stream"/> (seekable); leaves the stream at its start. Throws
    /// <see cref="ContinualModelFormatException"/> naming what is wrong.</summary>
    public static void Check(Stream stream, string what, IHostEnvironment env, ContinualLoadOptions options)
    {
        long start = stream.Position;
        long fileBytes = stream.Length - start;
        long budget = Math.Min(options.MaxUncompressedBytes, Math.Max(options.MaxExpansion * fileBytes, 64L << 20));
        try
        {
            using var zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true);
            if (zip.Entries.Count > MaxEntries) throw Fail(what, $"has {zip.Entries.Count:N0} entries (at most {MaxEntries:N0})");
            long declared = 0;
            var names = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
            foreach (var entry in zip.Entries)
            {
                CheckName(entry.FullName, what);
                if (!names.Add(entry.FullName)) throw Fail(what, $"holds entry '{entry.FullName}' twice");
                declared += entry.Length;
                if (entry.Length < 0 || declared > budget)
                    throw Fail(what, $"declares {declared:N0}+ bytes of content in a {fileBytes:N0}-byte file, more than the {budget:N0} bytes allowed (ContinualLoadOptions.MaxExpansion, MaxUncompressedBytes)");
            }
            long actual = 0;
            foreach (var entry in zip.Entries)
            {
                bool header = entry.Name.Equals("Model.key", StringComparison.OrdinalIgnoreCase);
                bool schema = entry.FullName.Equals("Schema", StringComparison.Ordinal);
                byte[]? kept = (header || schema) && entry.Length <= MaxHeaderEntryBytes ? new byte[entry.Length] : null;
                if ((header || schema) && kept is null) throw Fail(what, $"has a '{entry.FullName}' entry of {entry.Length:N0} bytes, far more than it needs");
                long read = Inflate(entry, kept, what);
                actual += read;
                if (actual > budget) throw Fail(what, $"inflates to more than the {budget:N0} bytes allowed");
                if (header) CheckHeader(kept!, entry.FullName, what, env, options);
                if (schema) SchemaEntryCheck.Check(kept!, what);
            }
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException or IOException or ArgumentException or NotSupportedException)
        {
            throw new ContinualModelFormatException($"{what} is not a readable ML.NET model zip ({e.GetType().Name}: {e.Message}).", e);
        }
        finally
        {
            stream.Position = start;
        }
    }

    /// <summary>Decompresses one entry into <paramref name="into"/> (or a counter), failing when it holds more than it declares.</summary>
    private static long Inflate(ZipArchiveEntry entry, byte[]? into, string what)
    {
        using var content = entry.Open();
        var buffer = new byte[81920];
        long total = 0;
        int read;
        while ((read = content.Read(buffer, 0, buffer.Length)) > 0)
        {
            if (total + read > entry.Length) throw Fail(what, $"has an entry '{entry.FullName}' that inflates to more than the {entry.Length:N0} bytes it declares");
            if (into is not null) Buffer.BlockCopy(buffer, 0, into, (int)total, read);
            total += read;
        }
        if (total != entry.Length) throw Fail(what, $"has an entry '{entry.FullName}' of {total:N0} bytes where it declares {entry.Length:N0}");
        return total;
    }

    /// <summary>Entry names stay inside the folder ML.NET extracts to (no "..", no rooted or drive paths, no control characters).</summary>
    private static void CheckName(string name, string what)
    {
        if (name.Length == 0 || name.Length > 1024 || name.StartsWith('/') || name.StartsWith('\\') || name.Contains(':') || name.Contains('\\')
            || name.Split('/').Any(part => part is ".." or ".") || name.Any(char.IsControl))
            throw Fail(what, $"has an entry named '{Printable(name)}', which is not a relative path inside the model");
    }

    /// <summary>One <c>Model.key</c> header: ML.NET's signature, then the loader assembly and signature on the allowlist.</summary>
    private static void CheckHeader(byte[] bytes, string entry, string what, IHostEnvironment env, ContinualLoadOptions options)
    {
        if (bytes.Length < HeaderSize || BitConverter.ToUInt64(bytes, 0) != HeaderSignature)
            throw Fail(what, $"has a '{entry}' entry without ML.NET's model header");
        string signature = Encoding.ASCII.GetString(bytes, 0x50, 24).TrimEnd('\0');
        long assemblyAt = BitConverter.ToInt64(bytes, 0x90);
        uint assemblyBytes = BitConverter.ToUInt32(bytes, 0x98);
        string? assemblyName = null;
        if (assemblyBytes > 0)
        {
            if (assemblyAt < HeaderSize || assemblyBytes > 4096 || assemblyBytes % 2 != 0 || assemblyAt + assemblyBytes > bytes.Length)
                throw Fail(what, $"has a damaged loader assembly name in '{entry}'");
            assemblyName = Encoding.Unicode.GetString(bytes, (int)assemblyAt, (int)assemblyBytes);
        }
        if (signature.Length == 0 || signature.Any(c => c < 0x20 || c > 0x7E))
            throw Fail(what, $"has a damaged loader signature in '{entry}'");
        var allowed = new HashSet<string>(MLNetAssemblies, StringComparer.Ordinal);
        allowed.UnionWith(options.AllowedAssemblies);
        if (assemblyName is not null)
        {
            string simple;
            try { simple = new AssemblyName(assemblyName).Name ?? ""; }
            catch (Exception e) when (e is ArgumentException or FileLoadException) { throw Fail(what, $"names an unreadable loader assembly '{Printable(assemblyName)}' in '{entry}'"); }
            if (!allowed.Contains(simple))
                throw Fail(what, $"asks for loader assembly '{Printable(assemblyName)}' in '{entry}', which is not ML.NET's or this library's (allowed: ML.NET's assemblies, Microsoft.ML.Continual{(options.AllowedAssemblies.Count > 0 ? ", " + string.Join(", ", options.AllowedAssemblies) : "")}); it was not loaded");
            RegisterAllowed(assemblyName, env);
        }
        CheckSignature(signature, entry, what, env, allowed);
    }

    /// <summary>Loads an allowed assembly and registers it with ML.NET's catalog, as ML.NET itself would.</summary>
    private static void RegisterAllowed(string assemblyName, IHostEnvironment env)
    {
        try
        {
            var assembly = Assembly.Load(assemblyName);
            env.ComponentCatalog.RegisterAssembly(assembly);
        }
        catch (Exception e) when (e is FileNotFoundException or FileLoadException or BadImageFormatException)
        {
            // ML.NET reports a missing assembly itself, with its own message.
        }
    }

    /// <summary>The loader signature must name classes of allowed assemblies only (ML.NET creates whichever registered class answers to it).</summary>
    private static void CheckSignature(string signature, string entry, string what, IHostEnvironment env, HashSet<string> allowed)
    {
        var classes = env.ComponentCatalog.GetAllClasses().Where(c => c.LoadNames.Contains(signature, StringComparer.OrdinalIgnoreCase)).ToList();
        var foreign = classes.Where(c => !allowed.Contains(c.LoaderType.Assembly.GetName().Name ?? "")).ToList();
        if (foreign.Count > 0)
            throw Fail(what, $"has loader signature '{signature}' in '{entry}', which names {foreign[0].LoaderType.FullName} of assembly {foreign[0].LoaderType.Assembly.GetName().Name}, not ML.NET's or this library's; it was not created");
    }

    private static ContinualModelFormatException Fail(string what, string why) => new($"{what} {why}.");

    private static string Printable(string text) => new(text.Take(200).Select(c => char.IsControl(c) ? '?' : c).ToArray());
}
