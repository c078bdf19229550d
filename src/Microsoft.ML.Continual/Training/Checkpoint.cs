using System.Runtime.InteropServices;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// A checkpoint within a task, at an epoch boundary: the network's weights, the optimizer's state, the shuffling and
/// fit's generators' states, the plugins' within-task progress and the epoch and step reached. A fingerprint of
/// the job (trainer, options, previous model, task rows) guards against resuming someone else's checkpoint.
/// </summary>
internal static class Checkpoint
{
    private const int Magic = 0x504B_4343; // "CCKP"
    private const int Version = 3; // 2: the fit's own generator instead of torch's process-wide state; plugin progress as state stores; 3: the optimizer's state as a bounded state store

    /// <summary>A fingerprint of the job: trainer name and options, the starting network's weights and the task's rows.</summary>
    public static string Fingerprint(ContinualTrainingContext context, string trainerName)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var text = new StringBuilder(trainerName);
        foreach (var (name, value) in context.Options.ToPairs()) text.Append('|').Append(name).Append('=').Append(value);
        foreach (var plugin in context.State.Plugins.Items)
        {
            text.Append("|plugin=").Append(plugin.Name);
            foreach (var (name, value) in Settings.ToPairs(plugin)) text.Append('|').Append(name).Append('=').Append(value);
        }
        text.Append(CultureInfo.InvariantCulture, $"|task={context.TaskIndex}|rows={context.Task.Count}");
        hash.AppendData(Encoding.UTF8.GetBytes(text.ToString()));
        // The exact rows (order included) and starting weights, byte for byte, read in place in chunks (no copy of the task).
        void Add(Tensor t)
        {
            using var cpu = t.detach().cpu().contiguous();
            using var converted = cpu.dtype == ScalarType.Int64 ? null : cpu.to_type(ScalarType.Float32);
            foreach (Tensor chunk in ContinualCommunicator.Chunks(converted ?? cpu))
                using (chunk) hash.AppendData(chunk.bytes);
        }
        Add(context.Task.Features);
        Add(context.Task.Targets);
        if (context.Task.Heads is not null) Add(context.Task.Heads);
        foreach (var (_, parameter) in context.Network.OrderedParameters()) Add(parameter);
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    public static void Write(string path, string fingerprint, ContinualTrainingContext context, Generator shuffle, int epochsDone)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        string temporary = Path.Combine(directory, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
                {
                    writer.Write(Magic);
                    writer.Write(Version);
                    writer.Write(fingerprint);
                    writer.Write(epochsDone);
                    writer.Write(context.Step);
                    context.Network.WriteWeights(writer);
                    using (var optimizer = new ContinualState())
                    {
                        OptimizerMoments.Save(optimizer, "", context.Optimizer!);
                        WriteState(writer, optimizer);
                    }
                    WriteBytes(writer, shuffle.get_state());
                    WriteBytes(writer, context.Random.get_state());
                    foreach (var plugin in context.State.Plugins.Items)
                    {
                        using var progress = new ContinualState();
                        plugin.SaveTaskProgress(progress);
                        WriteState(writer, progress);
                    }
                }
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temporary)) File.Delete(temporary);
        }
    }

    /// <summary>Restores the checkpoint into <paramref name="context"/>; returns the epochs it had completed.</summary>
    public static int Read(string path, string fingerprint, ContinualTrainingContext context, Generator shuffle)
    {
        try
        {
            using var stream = File.OpenRead(path);
            using var reader = new BinaryReader(stream, Encoding.UTF8);
            if (reader.ReadInt32() != Magic) throw new ContinualCheckpointException($"'{path}' is not a continual checkpoint.");
            int version = reader.ReadInt32();
            if (version != Version) throw new ContinualCheckpointException($"The checkpoint '{path}' has version {version}; this library reads version {Version}.");
            if (reader.ReadString() != fingerprint)
                throw new ContinualCheckpointException($"The checkpoint '{path}' belongs to another job (another trainer, options, previous model or task data); delete it or resume the job that made it.");
            int epochs = reader.ReadInt32();
            context.Step = reader.ReadInt64();
            context.Network.ReadWeights(reader);
            using (var optimizer = ReadState(reader, stream, "checkpoint's optimizer state"))
                OptimizerMoments.Load(optimizer, "", context.Optimizer!, $"checkpoint '{path}'");
            shuffle.set_state(ReadBytes(reader));
            context.Random.set_state(ReadBytes(reader));
            foreach (var plugin in context.State.Plugins.Items)
            {
                using var progress = ReadState(reader, stream, $"checkpoint progress of plugin '{plugin.Name}'");
                plugin.LoadTaskProgress(progress);
            }
            if (stream.Position != stream.Length) throw new ContinualModelFormatException("The checkpoint has bytes after its end.");
            return epochs;
        }
        catch (Exception e) when (e is EndOfStreamException or IOException or ContinualModelFormatException or ExternalException)
        {
            throw new ContinualCheckpointException($"The checkpoint '{path}' cannot be read ({e.Message}); delete it to start the task again.", e);
        }
    }

    /// <summary>A state store as its length and bytes (so that the reader can bound it).</summary>
    private static void WriteState(BinaryWriter writer, ContinualState state)
    {
        using var buffer = new MemoryStream();
        using (var inner = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true)) state.Write(inner);
        writer.Write(buffer.Length);
        writer.Write(buffer.GetBuffer(), 0, (int)buffer.Length);
    }

    private static ContinualState ReadState(BinaryReader reader, Stream stream, string what)
    {
        long length = reader.ReadInt64();
        if (length < 0 || length > stream.Length - stream.Position) throw new ContinualModelFormatException($"The {what} is truncated.");
        return ContinualState.Read(reader, length, what);
    }

    /// <summary>A plugin's sampling generator (or its absence) for <see cref="ContinualPlugin.SaveTaskProgress"/>.</summary>
    internal static void WriteGenerator(ContinualState state, Generator? generator)
    {
        if (generator is null) return;
        using var bytes = generator.get_state();
        state.Set("generator", bytes);
    }

    /// <summary>Restores what <see cref="WriteGenerator"/> stored into <paramref name="generator"/> (made again by BeforeTask).</summary>
    internal static void ReadGenerator(ContinualState state, Generator? generator)
    {
        if (!state.Contains("generator")) return;
        using var bytes = state.GetTensor("generator");
        (generator ?? throw new ContinualCheckpointException("The checkpoint holds a sampling generator this task does not have.")).set_state(bytes);
    }

    internal static void WriteBytes(BinaryWriter writer, Tensor state)
    {
        using var cpu = state.cpu().contiguous();
        byte[] bytes = cpu.data<byte>().ToArray();
        writer.Write(bytes.Length);
        writer.Write(bytes);
    }

    internal static Tensor ReadBytes(BinaryReader reader)
    {
        int length = ModelIO.ReadCount(reader, "random state byte");
        byte[] bytes = reader.ReadBytes(length);
        if (bytes.Length != length) throw new EndOfStreamException();
        return tensor(bytes, dtype: ScalarType.Byte);
    }
}
