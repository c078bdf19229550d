using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>Writes and reads CPU tensors with their element type and shape, for plugin state. Reading checks every size
/// against the bytes the entry has left before allocating (<see cref="ReadBudget"/>).</summary>
internal static class TensorIO
{
    private const byte Float32 = 1, Int64 = 2, Int16 = 3, Float64 = 4, Int32 = 5, UInt8 = 6, Bool = 7;

    public static void Write(BinaryWriter w, Tensor t)
    {
        using var cpu = t.detach().cpu().contiguous();
        byte code = cpu.dtype switch
        {
            ScalarType.Int64 => Int64, ScalarType.Int16 => Int16, ScalarType.Float64 => Float64, ScalarType.Int32 => Int32,
            ScalarType.Byte => UInt8, ScalarType.Bool => Bool, _ => Float32,
        };
        w.Write(code);
        w.Write((int)cpu.dim());
        foreach (long d in cpu.shape) w.Write(d);
        if (code == Float32 && cpu.dtype != ScalarType.Float32)
        {
            using var converted = cpu.to_type(ScalarType.Float32);
            w.Write(converted.bytes);
        }
        else w.Write(cpu.bytes);
    }

    /// <summary>Reads a tensor written by <see cref="Write"/>, claiming its bytes from <paramref name="budget"/> first.</summary>
    public static Tensor Read(BinaryReader r, string what, ReadBudget budget)
    {
        byte type = budget.Byte();
        int elementSize = type switch { Int64 or Float64 => 8, Int16 => 2, Float32 or Int32 => 4, UInt8 or Bool => 1, _ => 0 };
        if (elementSize == 0) throw new ContinualModelFormatException($"The {what} tensor has unknown element type {type}.");
        int rank = budget.Int32();
        if (rank < 0 || rank > 8) throw new ContinualModelFormatException($"The {what} tensor has rank {rank}.");
        var shape = new long[rank];
        long count = 1;
        for (int i = 0; i < rank; i++)
        {
            shape[i] = budget.Int64();
            if (shape[i] < 0 || shape[i] > budget.Remaining) throw new ContinualModelFormatException($"The {what} tensor has size {shape[i]} in dimension {i}, more than its entry holds.");
            count *= shape[i];
            if (count > budget.Remaining) throw new ContinualModelFormatException($"The {what} tensor has {count:N0}+ elements, more than its entry holds.");
        }
        return type switch
        {
            Int16 => Detached(tensor(budget.Array<short>(count), shape)),
            Int64 => Detached(tensor(budget.Array<long>(count), shape)),
            Float64 => Detached(tensor(budget.Array<double>(count), shape)),
            Int32 => Detached(tensor(budget.Array<int>(count), shape)),
            UInt8 => Detached(tensor(budget.Array<byte>(count), shape)),
            Bool => MakeBool(budget.Array<byte>(count), shape),
            _ => Detached(tensor(budget.Array<float>(count), shape)),
        };
    }

    /// <summary>Reads a tensor of a model of the first format version, bounded by what the entry's stream has left.</summary>
    public static Tensor Read(BinaryReader r, string what) => Read(r, what, Budget(r, what));

    /// <summary>A budget of the bytes left in <paramref name="r"/>'s stream (ML.NET gives entries as files, which have a length).</summary>
    public static ReadBudget Budget(BinaryReader r, string what)
    {
        var stream = r.BaseStream;
        long left = stream.CanSeek ? stream.Length - stream.Position : ModelIO.MaxCount * 8L;
        return new ReadBudget(r, left, what);
    }

    /// <summary>A copy in torch's own memory (a tensor made from a managed array may wrap it), outside any dispose scope.</summary>
    private static Tensor Detached(Tensor view)
    {
        using (view) return view.clone().DetachFromDisposeScope();
    }

    private static Tensor MakeBool(byte[] data, long[] shape)
    {
        var flags = new bool[data.Length];
        for (int i = 0; i < data.Length; i++)
        {
            if (data[i] > 1) throw new ContinualModelFormatException("A Boolean tensor holds a value other than 0 or 1.");
            flags[i] = data[i] == 1;
        }
        return Detached(tensor(flags, shape));
    }
}
