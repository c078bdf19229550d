using System.Security.Cryptography;
using System.Text;
using Microsoft.ML;
using Microsoft.ML.Continual;
using Microsoft.ML.Continual.Internal;
using Microsoft.ML.Continual.Trees;
using Microsoft.ML.Runtime;

[assembly: LoadableClass(typeof(ContinualLightGbmTransformer), null, typeof(SignatureLoadModel),
    "Continual LightGBM Transformer", BoostedTreesFormat.LoaderSignature)]

namespace Microsoft.ML.Continual.Internal;

/// <summary>
/// The boosted-trees model's layout inside the ML.NET zip: the main entry holds the header (format version, options as
/// name/value text, prediction kind, feature size, rows seen, rounds per task, and the SHA-256 of the two other entries);
/// <c>Trees.txt</c> the trees in LightGBM's model text; <c>Memory.bin</c> the replay memory. Every count is bounded and
/// checked against the bytes its entry holds before anything is allocated, each entry must match its hash, and the trees
/// are checked in full (<see cref="LightGbmModelText"/>) before LightGBM parses them.
/// </summary>
internal static class BoostedTreesFormat
{
    public const string LoaderSignature = "ContinualLightGbm";
    public const string ModelSignature = "CONTLGBM";
    public const int CurrentVersion = 0x00010001;
    private const string TreesEntry = "Trees.txt";
    private const string MemoryEntry = "Memory.bin";
    private const int MaxTasks = 1 << 20;

    private static VersionInfo GetVersionInfo() => new(
        modelSignature: ModelSignature,
        verWrittenCur: CurrentVersion,
        verReadableCur: CurrentVersion,
        verWeCanReadBack: CurrentVersion,
        loaderSignature: LoaderSignature,
        loaderAssemblyName: typeof(ContinualLightGbmTransformer).Assembly.FullName);

    public static void Save(BoostedTreesState state, ModelSaveContext ctx)
    {
        ctx.CheckAtModel();
        ctx.SetVersionInfo(GetVersionInfo());
        var w = ctx.Writer;
        w.Write(CurrentVersion);
        var pairs = state.Options.ToPairs();
        w.Write(pairs.Count);
        foreach (var (name, value) in pairs) { w.Write(name); w.Write(value); }
        w.Write((int)state.Kind);
        w.Write(state.FeatureSize);
        w.Write(state.RowsSeen);
        w.Write(state.RoundsPerTask.Count);
        foreach (int rounds in state.RoundsPerTask) w.Write(rounds);
        byte[] trees = Encoding.UTF8.GetBytes(state.ModelText);
        byte[] memory = MemoryBytes(state.Memory);
        // SHA-256 of both entries: a damaged digit of a leaf value or of a replayed row is still a valid number, and
        // would otherwise load and predict differently without a word.
        w.Write(SHA256.HashData(trees));
        w.Write(SHA256.HashData(memory));
        ctx.SaveBinaryStream(TreesEntry, writer => writer.Write(trees));
        ctx.SaveBinaryStream(MemoryEntry, writer => writer.Write(memory));
        if (state.ShiftReference is { } reference) ctx.SaveBinaryStream(ShiftReference.EntryName, reference.Write);
    }

    private static byte[] MemoryBytes(ReplayRows memory)
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
        {
            writer.Write(memory.Capacity);
            writer.Write(memory.Count);
            writer.Write(memory.Seen);
            foreach (float f in memory.Features.AsSpan(0, memory.Count * memory.FeatureSize)) writer.Write(f);
            foreach (float l in memory.Labels.AsSpan(0, memory.Count)) writer.Write(l);
        }
        return stream.ToArray();
    }

    /// <summary>An entry's bytes, read within its length and checked against the SHA-256 the header stores.</summary>
    private static byte[] CheckedEntry(ModelLoadContext ctx, string name, byte[] sha256)
    {
        byte[]? bytes = null;
        if (!ctx.TryLoadBinaryStream(name, reader =>
            {
                var budget = TensorIO.Budget(reader, $"'{name}' entry");
                bytes = budget.Array<byte>(budget.Remaining);
            }))
            throw new ContinualModelFormatException($"The model has no '{name}' entry.");
        if (!SHA256.HashData(bytes!).AsSpan().SequenceEqual(sha256))
            throw new ContinualModelFormatException($"The '{name}' entry does not match the SHA-256 the model header stores: it is damaged.");
        return bytes!;
    }

    public static BoostedTreesState Load(ModelLoadContext ctx)
    {
        string entry = "main";
        try
        {
            ctx.CheckAtModel(GetVersionInfo());
            var header = TensorIO.Budget(ctx.Reader, "boosted-trees model header");
            int version = header.Int32();
            if (version != CurrentVersion) throw new ContinualModelFormatException($"The boosted-trees model has format version 0x{version:X8}; this version reads 0x{CurrentVersion:X8}.");
            int count = header.Int32();
            if (count < 0 || count > 64) throw new ContinualModelFormatException($"The option count {count} is out of range (0..64).");
            var pairs = new List<KeyValuePair<string, string>>();
            for (int i = 0; i < count; i++) pairs.Add(new(header.String(256), header.String(4096)));
            ContinualLightGbmTrainer.Options options;
            try
            {
                options = ContinualLightGbmTrainer.Options.FromStoredPairs(pairs);
                options.Validate();
            }
            catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
            {
                throw new ContinualModelFormatException($"The stored options are invalid: {e.Message}", e);
            }
            var kind = (ContinualPredictionKind)header.Int32();
            if (kind is not (ContinualPredictionKind.Binary or ContinualPredictionKind.Regression)) throw new ContinualModelFormatException($"Prediction kind {(int)kind} is not one boosted trees make.");
            int featureSize = header.Int32();
            if (featureSize <= 0 || featureSize > ModelIO.MaxCount) throw new ContinualModelFormatException($"Feature size {featureSize} is out of range.");
            long rowsSeen = header.Int64();
            int tasks = header.Int32();
            if (rowsSeen < 0 || tasks < 1 || tasks > MaxTasks || tasks > header.Remaining / 4) throw new ContinualModelFormatException($"The task count {tasks} or row count {rowsSeen} is out of range.");
            var rounds = header.Array<int>(tasks);
            if (rounds.Any(r => r < 0 || r > options.NumberOfIterations)) throw new ContinualModelFormatException("A task's round count is out of range.");
            byte[] treesHash = header.Array<byte>(32), memoryHash = header.Array<byte>(32);

            entry = TreesEntry;
            string text = Encoding.UTF8.GetString(CheckedEntry(ctx, TreesEntry, treesHash));
            int width = TreeFeatureLayout.Of(options, featureSize, options.FeatureColumnName).Width;
            entry = ShiftReference.EntryName; // optional, as in the network models: older models and ShiftReferenceRows 0 have none
            ShiftReference? reference = null;
            ctx.TryLoadBinaryStream(entry, reader => reference = ShiftReference.Read(reader, featureSize));
            entry = TreesEntry;
            var state = new BoostedTreesState
            {
                ShiftReference = reference,
                Options = options, Kind = kind, FeatureSize = featureSize, ModelText = LightGbmModelText.Checked(text, width, kind), Memory = ReadMemory(CheckedEntry(ctx, MemoryEntry, memoryHash), options, width),
                RoundsPerTask = rounds, RowsSeen = rowsSeen,
            };
            entry = TreesEntry;
            CheckTrees(state);
            return state;
        }
        catch (Exception e) when (e is not ContinualModelFormatException and not OperationCanceledException and not OutOfMemoryException)
        {
            throw new ContinualModelFormatException($"The boosted-trees model's '{entry}' entry is invalid: {e.Message}", e);
        }
    }

    private static ReplayRows ReadMemory(byte[] bytes, ContinualLightGbmTrainer.Options options, int featureSize)
    {
        using var reader = new BinaryReader(new MemoryStream(bytes, writable: false));
        var budget = new ReadBudget(reader, bytes.Length, $"'{MemoryEntry}' entry");
        int capacity = budget.Int32(), count = budget.Int32();
        long seen = budget.Int64();
        if (capacity != options.MemorySize || count < 0 || count > capacity || seen < count || (long)count * (featureSize + 1) * 4 != budget.Remaining)
            throw budget.Fail($"holds {count:N0} rows of capacity {capacity:N0} in {budget.Remaining:N0} bytes, which does not match the model (memory size {options.MemorySize:N0}, {featureSize} features)");
        var features = budget.Array<float>((long)count * featureSize);
        var labels = budget.Array<float>(count);
        budget.CheckConsumed();
        if (features.Any(f => !float.IsFinite(f)) || labels.Any(l => !float.IsFinite(l))) throw budget.Fail("holds a value that is not finite");
        return new ReplayRows(capacity, featureSize, features, labels, count, seen);
    }

    /// <summary>LightGBM parses the text once <see cref="LightGbmModelText.Checked"/> has; the result must take the model's feature count.</summary>
    private static void CheckTrees(BoostedTreesState state)
    {
        int width = state.Layout.Width;
        int features;
        try { features = state.Booster.FeatureCount; }
        catch (InvalidOperationException e) { throw new ContinualModelFormatException($"'{TreesEntry}' could not be read by LightGBM: {e.Message}", e); }
        if (features != width) throw new ContinualModelFormatException($"'{TreesEntry}' takes {features} features; the model header says {width}.");
    }
}
