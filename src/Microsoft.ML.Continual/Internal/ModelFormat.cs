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
/// name/value text, label vocabulary, task ids, network shape); <c>Network.bin</c> holds the weights and
/// <c>Strategy.bin</c> the strategy's state. Every count is bounded and every value checked on reading; nothing
/// read is ever used to choose a type to instantiate beyond the fixed trainer registry.
/// </summary>
/// <remarks>
/// Versioning: <see cref="CurrentVersion"/> is written; every version from <see cref="OldestReadableVersion"/> on
/// is read. A change to the layout adds a version and keeps reading the old ones (Infer.NET's rule).
/// </remarks>
internal static class ModelFormat
{
    public const string LoaderSignature = "ContinualTransformer";
    public const string ModelSignature = "CONTLTRN";
    public const int CurrentVersion = 0x00010001;
    public const int OldestReadableVersion = 0x00010001;
    private const string NetworkEntry = "Network.bin";
    private const string StrategyEntry = "Strategy.bin";

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
        var pairs = state.Options.ToPairs();
        w.Write(pairs.Count);
        foreach (var (name, value) in pairs) { w.Write(name); w.Write(value); }
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
        ctx.SaveBinaryStream(NetworkEntry, state.Network.WriteWeights);
        ctx.SaveBinaryStream(StrategyEntry, state.Strategy.SaveState);
    }

    public static ContinualModelState Load(IHostEnvironment env, ModelLoadContext ctx)
    {
        string entry = "main";
        try
        {
            ctx.CheckAtModel(GetVersionInfo());
            var r = ctx.Reader;
            int version = r.ReadInt32();
            if (version < OldestReadableVersion || version > CurrentVersion)
                throw new ContinualModelFormatException($"The model has format version 0x{version:X8}; this version reads 0x{OldestReadableVersion:X8} to 0x{CurrentVersion:X8}.");
            string trainerName = r.ReadString();
            var registry = TrainerRegistry.Get(trainerName);
            int optionCount = ModelIO.ReadCount(r, "option");
            var pairs = new List<KeyValuePair<string, string>>();
            for (int i = 0; i < optionCount; i++) pairs.Add(new(r.ReadString(), r.ReadString()));
            var options = registry.ReadOptions(pairs);
            var kind = (ContinualPredictionKind)r.ReadInt32();
            if (!Enum.IsDefined(kind) || kind == ContinualPredictionKind.Auto) throw new ContinualModelFormatException($"Unknown prediction kind {(int)kind}.");
            int featureSize = r.ReadInt32();
            if (featureSize <= 0 || featureSize > ModelIO.MaxCount) throw new ContinualModelFormatException($"Feature size {featureSize} is out of range.");
            var labelKind = (ValueKind)r.ReadByte();
            bool multiHead = r.ReadBoolean();
            var taskIdKind = (ValueKind)r.ReadByte();
            if (!Enum.IsDefined(labelKind) || (multiHead && !Enum.IsDefined(taskIdKind))) throw new ContinualModelFormatException("Unknown label or task-id kind.");
            int tasksSeen = r.ReadInt32();
            long rowsSeen = r.ReadInt64();
            var classes = r.ReadBoolean() ? LabelVocabulary.Read(r) : null;
            if ((classes is null) != (kind != ContinualPredictionKind.Multiclass)) throw new ContinualModelFormatException("The label vocabulary does not match the prediction kind.");
            var taskIds = LabelVocabulary.ReadStrings(r);
            int headCount = ModelIO.ReadCount(r, "head");
            var headClasses = new List<bool[]>();
            for (int h = 0; h < headCount; h++)
            {
                var head = new bool[ModelIO.ReadCount(r, "head class")];
                for (int c = 0; c < head.Length; c++) head[c] = r.ReadBoolean();
                headClasses.Add(head);
            }
            var shape = NetworkShape.Read(r);
            int outputs = classes is null ? 1 : Math.Max(classes.Count, 1);
            if (shape.InputSize != featureSize || shape.OutputSize != outputs || shape.HeadCount != Math.Max(taskIds.Count, 1) || tasksSeen < 0 || rowsSeen < 0)
                throw new ContinualModelFormatException("The network shape does not match the model header.");

            var network = new ContinualNetwork(shape);
            entry = NetworkEntry;
            if (!ctx.TryLoadBinaryStream(NetworkEntry, network.ReadWeights))
                throw new ContinualModelFormatException($"The model has no '{NetworkEntry}' entry.");
            network.MoveTo(new TorchSharp.torch.Device(options.Device));
            network.eval();
            var strategy = registry.CreateStrategy(options);
            entry = StrategyEntry;
            if (!ctx.TryLoadBinaryStream(StrategyEntry, reader => strategy.LoadState(reader, version)))
                throw new ContinualModelFormatException($"The model has no '{StrategyEntry}' entry.");
            strategy.AttachTo(network);
            return new ContinualModelState
            {
                TrainerName = trainerName, Options = options, Strategy = strategy, Network = network, Kind = kind,
                FeatureSize = featureSize, LabelKind = labelKind, Classes = classes,
                TaskIdKind = multiHead ? taskIdKind : null, TaskIds = taskIds, HeadClasses = headClasses,
                TasksSeen = tasksSeen, RowsSeen = rowsSeen, FormatVersion = version,
            };
        }
        catch (Exception e) when (e is not ContinualModelFormatException and not OperationCanceledException and not OutOfMemoryException)
        {
            throw new ContinualModelFormatException($"The continual model's '{entry}' entry is invalid: {e.Message}", e);
        }
    }
}
