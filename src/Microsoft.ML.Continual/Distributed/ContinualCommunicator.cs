using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// The processes that train one model together (data-parallel training): this process's <see cref="Rank"/> among
/// <see cref="Size"/> processes and the collective operations the training loop needs. <see cref="World"/> is MPI's
/// world communicator when the process was started by OpenMPI's <c>mpirun</c>, and a single-process communicator
/// otherwise, so the same program runs unchanged with or without MPI.
/// </summary>
/// <remarks>
/// <para>Every fit uses <see cref="World"/> unless <see cref="ContinualFitOptions.Communicator"/> names another. With more
/// than one process, every process must make the same calls in the same order (the same fits on the same data): each
/// trains on its share of every minibatch, the gradients are summed across processes (<see cref="AllReduceSum(Span{float})"/>)
/// and every process takes the same optimizer step, so all of them hold the same model. <c>mpirun</c> binds each process to
/// one core by default; on a larger machine give each process its cores (<c>--map-by slot:PE=8</c>) and set
/// <see cref="ContinualTrainerOptions.NumberOfThreads"/> to match. Only rank 0 should write files
/// (<c>if (ContinualCommunicator.World.Rank == 0) mlContext.Model.Save(...)</c>). See docs/scale-out.md.</para>
/// <para>Failures. Before training starts, the processes agree: when a fit fails in any process while checking and reading
/// its data (bad options, bad data, a refused setting), every process's fit throws (the failing one its own error, the others
/// a <see cref="ContinualDistributedException"/>), and the program can catch it as usual. Once training has started, a
/// failure in one process (a cancellation, a full disk) ends the whole job: that process writes the error to standard error
/// and calls <c>MPI_Abort</c> (<see cref="AbortJob"/>), because the others would wait for it forever in their next
/// collective call. A process that exits with a non-zero exit code ends the job the same way (e.g. the command-line tool's
/// rank 0 finding the output locked).</para>
/// </remarks>
/// <example><code source="../../src/Samples/ScaleOutSample.cs" /></example>
public abstract class ContinualCommunicator
{
    private static readonly Lazy<ContinualCommunicator> LazyWorld = new(CreateWorld);

    /// <summary>A communicator of one process: collectives return their input. Pass it in
    /// <see cref="ContinualFitOptions.Communicator"/> to train alone in a process started by <c>mpirun</c>.</summary>
    public static ContinualCommunicator SingleProcess { get; } = new SingleProcessCommunicator();

    /// <summary>MPI's world communicator when the process was started by OpenMPI's <c>mpirun</c> (the environment variable
    /// <c>OMPI_COMM_WORLD_SIZE</c> is set), else <see cref="SingleProcess"/>. MPI is initialised on first use and finalised
    /// when the process exits.</summary>
    /// <exception cref="InvalidOperationException">Started by <c>mpirun</c>, but OpenMPI's library (<c>libmpi.so.40</c>,
    /// Debian's <c>openmpi-bin</c>) cannot be loaded or initialised.</exception>
    public static ContinualCommunicator World => LazyWorld.Value;

    private static ContinualCommunicator CreateWorld() => (ContinualCommunicator?)OpenMpiCommunicator.TryCreateWorld() ?? SingleProcess;

    /// <summary>This process's index among <see cref="Size"/>, from 0.</summary>
    public abstract int Rank { get; }

    /// <summary>How many processes train together.</summary>
    public abstract int Size { get; }

    /// <summary>A short description for logs, e.g. "OpenMPI 4.1, 2 processes".</summary>
    public abstract string Description { get; }

    /// <summary>Replaces <paramref name="values"/> in every process by their elementwise sum over all processes.</summary>
    public abstract void AllReduceSum(Span<float> values);

    /// <summary>Replaces <paramref name="values"/> in every process by their elementwise sum over all processes.</summary>
    public abstract void AllReduceSum(Span<double> values);

    /// <summary>Replaces <paramref name="data"/> in every process by rank <paramref name="root"/>'s.</summary>
    public abstract void Broadcast(Span<byte> data, int root = 0);

    /// <summary>Returns when every process has called it.</summary>
    public abstract void Barrier();

    /// <summary>Ends every process of the job after a failure in this one during training; for a single process (the
    /// default) it does nothing. An implementation writes <paramref name="error"/> to standard error first, so that the job's
    /// output says why it ended, and does not return.</summary>
    /// <param name="error">The failure.</param>
    protected internal virtual void AbortJob(Exception error) { }

    /// <summary>In every process, how many processes hold another <paramref name="value"/> than rank 0 (0: all the same).</summary>
    internal int CountDiffering(byte[] value)
    {
        if (Size == 1) return 0;
        byte[] rankZero = (byte[])value.Clone();
        Broadcast(rankZero);
        Span<double> differing = [value.AsSpan().SequenceEqual(rankZero) ? 0 : 1];
        AllReduceSum(differing);
        return (int)differing[0];
    }

    /// <summary>True in every process when every process passes true: the agreement before training (see the remarks).</summary>
    internal bool AllSucceeded(bool succeeded)
    {
        Span<double> failures = [succeeded ? 0 : 1];
        AllReduceSum(failures);
        return failures[0] == 0;
    }

    /// <summary>Sums a contiguous CPU float tensor over all processes, in place (no copy: MPI reads and writes libtorch's memory).</summary>
    internal void AllReduceSum(Tensor values)
    {
        if (Size == 1) return;
        CheckCpuContiguous(values);
        foreach (Tensor chunk in Chunks(values))
            using (chunk) AllReduceSum(MemoryMarshal.Cast<byte, float>(chunk.bytes));
    }

    /// <summary>Copies rank <paramref name="root"/>'s contiguous CPU tensor into every process's, in place.</summary>
    internal void Broadcast(Tensor values, int root = 0)
    {
        if (Size == 1) return;
        CheckCpuContiguous(values);
        foreach (Tensor chunk in Chunks(values))
            using (chunk) Broadcast(chunk.bytes, root);
    }

    /// <summary>Views of at most 2^28 elements (1 GiB of floats) of a contiguous tensor: a span, and so <c>Tensor.bytes</c>,
    /// holds at most 2^31 bytes.</summary>
    internal static IEnumerable<Tensor> Chunks(Tensor values)
    {
        using Tensor flat = values.view(-1);
        long count = flat.shape[0];
        for (long start = 0; start < count; start += ChunkElements)
            yield return flat.narrow(0, start, Math.Min(ChunkElements, count - start));
    }

    private const long ChunkElements = 1L << 28;

    private static void CheckCpuContiguous(Tensor values)
    {
        if (values.device_type != TorchSharp.DeviceType.CPU || !values.is_contiguous())
            throw new InvalidOperationException("Collectives run on contiguous CPU tensors (data-parallel training on CUDA devices is not supported).");
    }

    private sealed class SingleProcessCommunicator : ContinualCommunicator
    {
        public override int Rank => 0;
        public override int Size => 1;
        public override string Description => "single process";
        public override void AllReduceSum(Span<float> values) { }
        public override void AllReduceSum(Span<double> values) { }
        public override void Broadcast(Span<byte> data, int root = 0)
        {
            if (root != 0) throw new ArgumentOutOfRangeException(nameof(root), "A single process has only rank 0.");
        }
        public override void Barrier() { }
    }
}
