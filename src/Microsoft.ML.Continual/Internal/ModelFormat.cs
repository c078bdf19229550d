using Microsoft.ML;
using Microsoft.ML.Continual;
using Microsoft.ML.Continual.Internal;
using Microsoft.ML.Runtime;
using TorchSharp;

// Registers the loader with ML.NET's component catalog: ml.Model.Load finds ContinualTransformer.Create by the
// loader signature stored in the zip (see README.md in this folder).
[assembly: LoadableClass(typeof(ContinualTransformer), null, typeof(SignatureLoadModel),
    "Continual Transformer", ModelFormat.LoaderSignature)]

namespace Microsoft.ML.Continual.Internal;

/// <summary>
/// The model's layout inside the ML.NET zip. The main entry holds the header (format version, trainer, options as
/// name/value text, label vocabulary, task ids, network shape and backbone, and the plugins with their settings);
/// <c>Network.bin</c> holds the weights, <c>Plugin{i}-{name}.bin</c> each plugin's state store and the optional
/// <c>ShiftReference.bin</c> the rows shift detection compares new data with and the optional <c>Continuation.bin</c>
/// where a stream's one pass stopped (<see cref="StreamContinuation"/>; a reader that does not know them skips them). Every count is bounded
/// and every size checked against the bytes its entry holds before anything is allocated; nothing read is ever used to
/// choose a type to instantiate beyond the trainer, plugin and backbone registries.
/// </summary>
/// <remarks>
/// Versioning: <see cref="CurrentVersion"/> is written; every version from <see cref="OldestReadableVersion"/> on is read.
/// 0x00010001 stored one strategy's state in <c>Strategy.bin</c>, made from the trainer's options; 0x00010002 stores the
/// backbone and the plugin list in the header and one state store per plugin. A change to the layout adds a version and
/// keeps reading the old ones (Infer.NET's rule).
/// </remarks>
internal static class ModelFormat
{
    public const string LoaderSignature = "ContinualTransformer";
    public const string ModelSignature = "CONTLTRN";
    public const int FirstVersion = 0x00010001;
    public const int CurrentVersion = 0x00010002;
    public const int OldestReadableVersion = FirstVersion;
    private const string NetworkEntry = "Network.bin";
    private const string StrategyEntry = "Strategy.bin";
    private const int MaxOptions = 4096;
    private const int MaxPlugins = 64;

    private static string PluginEntry(int index, string name) => $"Plugin{index}-{name}.bin";

    private static VersionInfo GetVersionInfo() => new(
        modelSignature: ModelSignature,
        verWrittenCur: CurrentVersion,
        verReadableCur: CurrentVersion,
        verWeCanReadBack: OldestReadableVersion,
        loaderSignature: LoaderSignature,
        loaderAssemblyName: typeof(ContinualTransformer).Assembly.FullName);

    public static void Save(ContinualModelState state, ModelSaveContext ctx)
    {
        ctx.CheckAtModel();
        ctx.SetVersionInfo(GetVersionInfo());
        var w = ctx.Writer;
        w.Write(CurrentVersion);
        w.Write(state.TrainerName);
        WritePairs(w, state.Options.ToPairs());
        w.Write((int)state.Kind);
        w.Write(state.FeatureSize);
        w.Write((byte)state.LabelKind);
        w.Write(state.TaskIdKind is not null);
        w.Write((byte)(state.TaskIdKind ?? 0));
        w.Write(state.TasksSeen);
        w.Write(state.RowsSeen);
        w.Write(state.Classes is not null);
        state.Classes?.Write(w);
        LabelVocabulary.WriteStrings(w, state.TaskIds);
        w.Write(state.HeadClasses.Count);
        foreach (bool[] head in state.HeadClasses)
        {
            w.Write(head.Length);
            foreach (bool b in head) w.Write(b);
        }
        state.Network.Shape.Write(w);
        state.Network.Shape.WriteBackbone(w);
        var plugins = state.Plugins.Items;
        w.Write(plugins.Count);
        foreach (var plugin in plugins)
        {
            w.Write(plugin.Name);
            WritePairs(w, Settings.ToPairs(plugin));
        }
        ctx.SaveBinaryStream(NetworkEntry, state.Network.WriteWeights);
        for (int i = 0; i < plugins.Count; i++)
        {
            using var store = new ContinualState();
            plugins[i].SaveState(store);
            ctx.SaveBinaryStream(PluginEntry(i, plugins[i].Name), store.Write);
        }
        if (state.ShiftReference is { } reference) ctx.SaveBinaryStream(ShiftReference.EntryName, reference.Write);
        if (state.Continuation is { } continuation) ctx.SaveBinaryStream(StreamContinuation.EntryName, continuation.Write);
    }

    private static void WritePairs(BinaryWriter w, IReadOnlyList<KeyValuePair<string, string>> pairs)
    {
        w.Write(pairs.Count);
        foreach (var (name, value) in pairs) { w.Write(name); w.Write(value); }
    }

    private static List<KeyValuePair<string, string>> ReadPairs(ReadBudget r, string what)
    {
        int count = r.Int32();
        if (count < 0 || count > MaxOptions) throw new ContinualModelFormatException($"The {what} count {count} is out of range (0..{MaxOptions}).");
        var pairs = new List<KeyValuePair<string, string>>(count);
        for (int i = 0; i < count; i++) pairs.Add(new(r.String(1024), r.String(1 << 16)));
        return pairs;
    }

    public static ContinualModelState Load(IHostEnvironment env, ModelLoadContext ctx)
    {
        string entry = "main";
        try
        {
            ctx.CheckAtModel(GetVersionInfo());
            var r = ctx.Reader;
            var header = TensorIO.Budget(r, "model header");
            int version = header.Int32();
            if (version < OldestReadableVersion || version > CurrentVersion)
                throw new ContinualModelFormatException($"The model has format version 0x{version:X8}; this version reads 0x{OldestReadableVersion:X8} to 0x{CurrentVersion:X8}.");
            string trainerName = header.String(256);
            var registry = TrainerRegistry.Get(trainerName);
            var options = registry.ReadOptions(ReadPairs(header, "option"));
            try { options.Validate(); }
            catch (ArgumentException e) { throw new ContinualModelFormatException($"The stored options are out of range: {e.Message}", e); }
            var kind = (ContinualPredictionKind)header.Int32();
            if (!Enum.IsDefined(kind) || kind == ContinualPredictionKind.Auto) throw new ContinualModelFormatException($"Unknown prediction kind {(int)kind}.");
            int featureSize = header.Int32();
            if (featureSize <= 0 || featureSize > ModelIO.MaxCount) throw new ContinualModelFormatException($"Feature size {featureSize} is out of range.");
            var labelKind = (ValueKind)header.Byte();
            bool multiHead = header.Boolean();
            var taskIdKind = (ValueKind)header.Byte();
            if (!Enum.IsDefined(labelKind) || (multiHead && !Enum.IsDefined(taskIdKind))) throw new ContinualModelFormatException("Unknown label or task-id kind.");
            int tasksSeen = header.Int32();
            long rowsSeen = header.Int64();
            var classes = header.Boolean() ? LabelVocabulary.Read(r) : null;
            if ((classes is null) != (kind != ContinualPredictionKind.Multiclass)) throw new ContinualModelFormatException("The label vocabulary does not match the prediction kind.");
            var taskIds = LabelVocabulary.ReadStrings(r);
            header = TensorIO.Budget(r, "model header"); // what the vocabulary and task ids left
            int headCount = header.Int32();
            if (headCount < 0 || headCount > 1 << 16) throw new ContinualModelFormatException($"The head count {headCount} is out of range.");
            var headClasses = new List<bool[]>();
            for (int h = 0; h < headCount; h++)
            {
                int length = header.Int32();
                if (length < 0 || length > header.Remaining) throw new ContinualModelFormatException($"Head {h} lists {length} classes, more than the header holds.");
                headClasses.Add(header.Array<byte>(length).Select(b => b != 0).ToArray());
            }
            var shape = NetworkShape.Read(r);
            var plugins = new List<ContinualPlugin>();
            if (version >= 0x00010002)
            {
                shape = shape.ReadBackbone(r);
                header = TensorIO.Budget(r, "model header");
                int pluginCount = header.Int32();
                if (pluginCount < 0 || pluginCount > MaxPlugins) throw new ContinualModelFormatException($"The plugin count {pluginCount} is out of range (0..{MaxPlugins}).");
                for (int i = 0; i < pluginCount; i++)
                {
                    string name = header.String(64);
                    plugins.Add(ContinualPlugins.Create(name, ReadPairs(header, $"plugin '{name}' setting")));
                }
            }
            else plugins.AddRange(registry.CreatePlugins(options));
            int outputs = classes is null ? 1 : Math.Max(classes.Count, 1);
            if (shape.InputSize != featureSize || shape.OutputSize != outputs || shape.HeadCount != Math.Max(taskIds.Count, 1) || tasksSeen < 0 || rowsSeen < 0
                || headClasses.Any(h => h.Length > outputs) || (headClasses.Count > 0 && headClasses.Count != taskIds.Count))
                throw new ContinualModelFormatException("The network shape does not match the model header.");
            var pluginList = new PluginList(plugins);
            if (pluginList.Columns != shape.Columns)
                throw new ContinualModelFormatException($"The network's layout ({shape.Columns}) does not match its plugins' ({pluginList.Columns}).");

            entry = NetworkEntry;
            ContinualNetwork? network = null;
            if (!ctx.TryLoadBinaryStream(NetworkEntry, reader =>
                {
                    // The weights entry must be able to hold the network: checked before the network is made.
                    long bytes = reader.BaseStream.CanSeek ? reader.BaseStream.Length - reader.BaseStream.Position : long.MaxValue;
                    shape.CheckSize(bytes / sizeof(float), $"the '{NetworkEntry}' entry ({bytes:N0} bytes)");
                    network = new ContinualNetwork(shape, init: null);
                    network.ReadWeights(reader, wholeEntry: true);
                }))
                throw new ContinualModelFormatException($"The model has no '{NetworkEntry}' entry.");
            network!.MoveTo(new TorchSharp.torch.Device(options.Device));
            network.eval();
            var state = new ContinualModelState
            {
                TrainerName = trainerName, Options = options, Plugins = pluginList, Network = network, Kind = kind,
                FeatureSize = featureSize, LabelKind = labelKind, Classes = classes,
                TaskIdKind = multiHead ? taskIdKind : null, TaskIds = taskIds, HeadClasses = headClasses,
                TasksSeen = tasksSeen, RowsSeen = rowsSeen, FormatVersion = version,
            };
            try
            {
                if (version == FirstVersion)
                {
                    entry = StrategyEntry;
                    if (!ctx.TryLoadBinaryStream(StrategyEntry, reader =>
                        {
                            foreach (var plugin in plugins) plugin.LoadLegacyState(reader, version);
                            if (reader.BaseStream.CanSeek && reader.BaseStream.Position != reader.BaseStream.Length)
                                throw new ContinualModelFormatException($"The '{StrategyEntry}' entry has {reader.BaseStream.Length - reader.BaseStream.Position:N0} bytes after the state.");
                        }))
                        throw new ContinualModelFormatException($"The model has no '{StrategyEntry}' entry.");
                }
                else
                    for (int i = 0; i < plugins.Count; i++)
                    {
                        entry = PluginEntry(i, plugins[i].Name);
                        var plugin = plugins[i];
                        if (!ctx.TryLoadBinaryStream(entry, reader =>
                            {
                                long bytes = reader.BaseStream.CanSeek ? reader.BaseStream.Length - reader.BaseStream.Position : ModelIO.MaxCount * 8L;
                                using var store = ContinualState.Read(reader, bytes, $"state of plugin '{plugin.Name}'");
                                plugin.LoadState(store);
                            }))
                            throw new ContinualModelFormatException($"The model has no '{entry}' entry.");
                    }
                pluginList.AttachTo(network);
                entry = ShiftReference.EntryName; // optional: older models and models fitted with ShiftReferenceRows 0 have none
                ctx.TryLoadBinaryStream(entry, reader => state.ShiftReference = ShiftReference.Read(reader, featureSize));
                entry = StreamContinuation.EntryName; // optional: only models fitted with ContinueAcrossFits have it
                ctx.TryLoadBinaryStream(entry, reader =>
                {
                    long bytes = reader.BaseStream.CanSeek ? reader.BaseStream.Length - reader.BaseStream.Position : ModelIO.MaxCount * 8L;
                    state.Continuation = ContinualState.Read(reader, bytes, "stream continuation");
                });
            }
            catch
            {
                state.Dispose();
                throw;
            }
            return state;
        }
        catch (Exception e) when (e is not ContinualModelFormatException and not OperationCanceledException and not OutOfMemoryException)
        {
            throw new ContinualModelFormatException($"The continual model's '{entry}' entry is invalid: {e.Message}", e);
        }
    }
}
