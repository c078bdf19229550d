using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>Writes and reads CPU tensors of float32, int64 or int16 with their shape, for strategy state. Reading checks sizes.</summary>
internal static class TensorIO
{
    private const byte Float32 = 1, Int64 = 2, Int16 = 3;

    public static void Write(BinaryWriter w, Tensor t)
    {
        using var cpu = t.detach().cpu().contiguous();
        w.Write(cpu.dtype switch { ScalarType.Int64 => Int64, ScalarType.Int16 => Int16, _ => Float32 });
        w.Write((int)cpu.dim());
        foreach (long d in cpu.shape) w.Write(d);
        if (cpu.dtype == ScalarType.Int16) w.Write(MemoryMarshal.AsBytes(cpu.data<short>().ToArray().AsSpan()));
        else if (cpu.dtype == ScalarType.Int64) w.Write(MemoryMarshal.AsBytes(cpu.data<long>().ToArray().AsSpan()));
        else w.Write(MemoryMarshal.AsBytes(cpu.to_type(ScalarType.Float32).data<float>().ToArray().AsSpan()));
    }

    public static Tensor Read(BinaryReader r, string what)
    {
        byte type = r.ReadByte();
        if (type is not (Float32 or Int64 or Int16)) throw new ContinualModelFormatException($"The {what} tensor has unknown element type {type}.");
        int rank = r.ReadInt32();
        if (rank < 0 || rank > 8) throw new ContinualModelFormatException($"The {what} tensor has rank {rank}.");
        var shape = new long[rank];
        long count = 1;
        for (int i = 0; i < rank; i++)
        {
            shape[i] = r.ReadInt64();
            if (shape[i] < 0 || shape[i] > ModelIO.MaxCount) throw new ContinualModelFormatException($"The {what} tensor has an out-of-range size.");
            count *= shape[i];
            if (count > ModelIO.MaxCount * 4L) throw new ContinualModelFormatException($"The {what} tensor is too large.");
        }
        int elementSize = type switch { Int64 => 8, Int16 => 2, _ => 4 };
        byte[] raw = r.ReadBytes(checked((int)(count * elementSize)));
        if (raw.Length != count * elementSize) throw new ContinualModelFormatException($"The {what} tensor is truncated.");
        if (type == Int16)
        {
            var data = new short[count];
            Buffer.BlockCopy(raw, 0, data, 0, raw.Length);
            using var view = tensor(data, shape);
            return view.clone().DetachFromDisposeScope();
        }
        if (type == Int64)
        {
            var data = new long[count];
            Buffer.BlockCopy(raw, 0, data, 0, raw.Length);
            using var view = tensor(data, shape);
            return view.clone().DetachFromDisposeScope();
        }
        else
        {
            var data = new float[count];
            Buffer.BlockCopy(raw, 0, data, 0, raw.Length);
            using var view = tensor(data, shape);
            return view.clone().DetachFromDisposeScope();
        }
    }
}
