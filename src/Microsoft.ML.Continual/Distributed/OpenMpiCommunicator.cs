using System.Runtime.InteropServices;

namespace Microsoft.ML.Continual;

/// <summary>
/// MPI's world communicator through a direct binding to OpenMPI's C library (<c>libmpi.so.40</c>, OpenMPI 4.x as
/// Debian's <c>openmpi-bin</c> installs it). The NuGet package MPI.NET targets Microsoft MPI's integer handles and does
/// not work with OpenMPI, whose handles are the addresses of exported globals (<c>ompi_mpi_comm_world</c>, ...).
/// </summary>
/// <remarks>
/// Calls are serialised by a lock and made from whichever thread trains (MPI is initialised with
/// <c>MPI_THREAD_SERIALIZED</c>). OpenMPI's own signal handlers are turned off before <c>MPI_Init</c>
/// (<c>OMPI_MCA_opal_signal</c> empty, unless the user set it): they would take SIGSEGV from the .NET runtime, which
/// turns it into <see cref="NullReferenceException"/>.
/// </remarks>
internal sealed class OpenMpiCommunicator : ContinualCommunicator
{
    private const string Library = "libmpi.so.40";
    private const int ThreadSerialized = 2; // MPI_THREAD_SERIALIZED in OpenMPI's mpi.h
    private const int Success = 0;
    private const int ChunkElements = 1 << 28; // MPI counts are int: large buffers go in chunks
    private static readonly IntPtr InPlace = 1; // MPI_IN_PLACE is (void*)1 in OpenMPI

    private readonly object _lock = new();
    private readonly IntPtr _world, _float, _double, _byte, _sum;
    private readonly int _rank, _size;

    private OpenMpiCommunicator(IntPtr library)
    {
        _world = NativeLibrary.GetExport(library, "ompi_mpi_comm_world");
        _float = NativeLibrary.GetExport(library, "ompi_mpi_float");
        _double = NativeLibrary.GetExport(library, "ompi_mpi_double");
        _byte = NativeLibrary.GetExport(library, "ompi_mpi_byte");
        _sum = NativeLibrary.GetExport(library, "ompi_mpi_op_sum");
        Check(MPI_Initialized(out int initialized), "MPI_Initialized");
        if (initialized == 0)
        {
            Check(MPI_Init_thread(IntPtr.Zero, IntPtr.Zero, ThreadSerialized, out int provided), "MPI_Init_thread");
            if (provided < ThreadSerialized)
                throw new InvalidOperationException($"OpenMPI provides thread level {provided}; data-parallel training needs MPI_THREAD_SERIALIZED (2).");
            AppDomain.CurrentDomain.ProcessExit += (_, _) => AtExit();
        }
        Check(MPI_Comm_rank(_world, out _rank), "MPI_Comm_rank");
        Check(MPI_Comm_size(_world, out _size), "MPI_Comm_size");
    }

    /// <summary>The world communicator when this process was started by OpenMPI's mpirun, else null.</summary>
    public static OpenMpiCommunicator? TryCreateWorld()
    {
        if (Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE") is not string size) return null;
        // Plugins that OpenMPI opens itself need libmpi's symbols: load it globally, as mpi4py does.
        IntPtr library = dlopen(Library, RtldNow | RtldGlobal);
        if (library == IntPtr.Zero)
            throw new InvalidOperationException($"This process was started by mpirun ({size} processes), but OpenMPI's {Library} cannot be loaded "
                + $"({Marshal.PtrToStringAnsi(dlerror())}). Install OpenMPI 4 (Debian: apt-get install openmpi-bin).");
        if (Environment.GetEnvironmentVariable("OMPI_MCA_opal_signal") is null) setenv("OMPI_MCA_opal_signal", "", 0);
        return new OpenMpiCommunicator(library);
    }

    public override int Rank => _rank;
    public override int Size => _size;
    public override string Description => $"OpenMPI, {_size} processes, rank {_rank}";

    public override void AllReduceSum(Span<float> values)
    {
        lock (_lock)
            for (int start = 0; start < values.Length; start += ChunkElements)
            {
                Span<float> chunk = values.Slice(start, Math.Min(ChunkElements, values.Length - start));
                Check(MPI_Allreduce(InPlace, ref MemoryMarshal.GetReference(MemoryMarshal.AsBytes(chunk)), chunk.Length, _float, _sum, _world), "MPI_Allreduce");
            }
    }

    public override void AllReduceSum(Span<double> values)
    {
        lock (_lock)
            for (int start = 0; start < values.Length; start += ChunkElements)
            {
                Span<double> chunk = values.Slice(start, Math.Min(ChunkElements, values.Length - start));
                Check(MPI_Allreduce(InPlace, ref MemoryMarshal.GetReference(MemoryMarshal.AsBytes(chunk)), chunk.Length, _double, _sum, _world), "MPI_Allreduce");
            }
    }

    public override void Broadcast(Span<byte> data, int root = 0)
    {
        if ((uint)root >= (uint)_size) throw new ArgumentOutOfRangeException(nameof(root), $"Rank {root} is not among {_size} processes.");
        lock (_lock)
            for (int start = 0; start < data.Length; start += ChunkElements)
            {
                Span<byte> chunk = data.Slice(start, Math.Min(ChunkElements, data.Length - start));
                Check(MPI_Bcast(ref MemoryMarshal.GetReference(chunk), chunk.Length, _byte, root, _world), "MPI_Bcast");
            }
    }

    public override void Barrier()
    {
        lock (_lock) Check(MPI_Barrier(_world), "MPI_Barrier");
    }

    protected internal override void AbortJob(Exception error)
    {
        Console.Error.WriteLine($"rank {_rank} of {_size}: {error.GetType().Name}: {error.Message}");
        Console.Error.WriteLine($"rank {_rank} of {_size}: ending the data-parallel job (MPI_Abort), since the other processes cannot go on without this one.");
        Console.Error.Flush();
        MPI_Abort(_world, 1); // not under the lock: another thread may be blocked in a collective holding it
    }

    /// <summary>At a normal exit MPI_Finalize (which waits for every process); at an exit with an error code MPI_Abort, since
    /// the other processes may be waiting for this one in a collective and MPI_Finalize would wait for them.</summary>
    private void AtExit()
    {
        if (Environment.ExitCode != 0)
        {
            Console.Error.Flush();
            MPI_Abort(_world, Environment.ExitCode);
            return;
        }
        lock (_lock)
        {
            if (MPI_Finalized(out int finalized) == Success && finalized == 0) MPI_Finalize();
        }
    }

    private static void Check(int code, string call)
    {
        if (code != Success) throw new InvalidOperationException($"{call} failed with MPI error code {code}.");
    }

    private const int RtldNow = 2, RtldGlobal = 0x100;
    [DllImport("libc.so.6")] private static extern IntPtr dlopen(string file, int mode);
    [DllImport("libc.so.6")] private static extern IntPtr dlerror();
    [DllImport("libc.so.6")] private static extern int setenv(string name, string value, int overwrite);
    [DllImport(Library)] private static extern int MPI_Initialized(out int flag);
    [DllImport(Library)] private static extern int MPI_Finalized(out int flag);
    [DllImport(Library)] private static extern int MPI_Init_thread(IntPtr argc, IntPtr argv, int required, out int provided);
    [DllImport(Library)] private static extern int MPI_Finalize();
    [DllImport(Library)] private static extern int MPI_Abort(IntPtr comm, int errorCode);
    [DllImport(Library)] private static extern int MPI_Comm_rank(IntPtr comm, out int rank);
    [DllImport(Library)] private static extern int MPI_Comm_size(IntPtr comm, out int size);
    [DllImport(Library)] private static extern int MPI_Allreduce(IntPtr sendBuffer, ref byte receiveBuffer, int count, IntPtr type, IntPtr op, IntPtr comm);
    [DllImport(Library)] private static extern int MPI_Bcast(ref byte buffer, int count, IntPtr type, int root, IntPtr comm);
    [DllImport(Library)] private static extern int MPI_Barrier(IntPtr comm);
}
