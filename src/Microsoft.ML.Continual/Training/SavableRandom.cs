namespace Microsoft.ML.Continual;

/// <summary>
/// A <see cref="System.Random"/> whose position can be saved and restored: xoshiro256** (Blackman and Vigna 2018)
/// seeded through splitmix64, with unbiased bounded draws by rejection. <see cref="System.Random"/>'s own state cannot be
/// read, so the reservoirs of fits that continue one pass across fits (<see cref="ContinualTrainerOptions.ContinueAcrossFits"/>)
/// draw from this instead; every other fit keeps <see cref="System.Random"/>, so their results are unchanged.
/// </summary>
internal sealed class SavableRandom : Random
{
    private ulong _s0, _s1, _s2, _s3;

    public SavableRandom(long seed)
    {
        ulong x = unchecked((ulong)seed);
        _s0 = SplitMix(ref x); _s1 = SplitMix(ref x); _s2 = SplitMix(ref x); _s3 = SplitMix(ref x);
    }

    private static ulong SplitMix(ref ulong x)
    {
        ulong z = unchecked(x += 0x9E37_79B9_7F4A_7C15UL);
        z = unchecked((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EBUL);
        return z ^ (z >> 31);
    }

    private ulong NextUInt64()
    {
        ulong result = unchecked(ulong.RotateLeft(_s1 * 5, 7) * 9);
        ulong t = _s1 << 17;
        _s2 ^= _s0; _s3 ^= _s1; _s1 ^= _s2; _s0 ^= _s3;
        _s2 ^= t;
        _s3 = ulong.RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>Uniform in [0, <paramref name="bound"/>): the top bits of a draw, redrawn when out of range (no modulo bias).</summary>
    private ulong Below(ulong bound)
    {
        if (bound <= 1) return 0;
        int shift = System.Numerics.BitOperations.LeadingZeroCount(bound - 1); // keep as many bits as bound - 1 has
        while (true)
        {
            ulong draw = NextUInt64() >> shift;
            if (draw < bound) return draw;
        }
    }

    public override long NextInt64(long maxValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxValue);
        return (long)Below((ulong)maxValue);
    }

    public override long NextInt64(long minValue, long maxValue)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minValue, maxValue);
        return unchecked(minValue + (long)Below((ulong)(maxValue - minValue)));
    }

    public override long NextInt64() => (long)Below(long.MaxValue);

    public override int Next() => (int)NextInt64(int.MaxValue);

    public override int Next(int maxValue) => (int)NextInt64(maxValue);

    public override int Next(int minValue, int maxValue) => (int)NextInt64(minValue, maxValue);

    public override double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    public override float NextSingle() => (NextUInt64() >> 40) * (1.0f / (1U << 24));

    protected override double Sample() => NextDouble();

    public override void NextBytes(byte[] buffer) => NextBytes(buffer.AsSpan());

    public override void NextBytes(Span<byte> buffer)
    {
        for (int i = 0; i < buffer.Length; i++) buffer[i] = (byte)(NextUInt64() >> 56);
    }

    /// <summary>A reservoir's generator: savable when the fit continues a pass across fits, else
    /// <see cref="System.Random"/> as it has always been (so those fits' results do not change).</summary>
    public static Random For(bool savable, long seed) => savable ? new SavableRandom(seed) : new Random(unchecked((int)seed));

    /// <summary>The online memories' in-task progress: their sampling generator, and their reservoir's when it is savable.</summary>
    public static void SaveProgress(ContinualState state, TorchSharp.torch.Generator? sampling, Random? reservoir)
    {
        Checkpoint.WriteGenerator(state, sampling);
        if (reservoir is SavableRandom savable) savable.Save(state, "reservoir");
    }

    /// <summary>Restores what <see cref="SaveProgress"/> wrote; returns the reservoir's generator to use from now on.</summary>
    public static Random? LoadProgress(ContinualState state, TorchSharp.torch.Generator? sampling, Random? reservoir)
    {
        Checkpoint.ReadGenerator(state, sampling);
        return state.Contains("reservoir") ? Load(state, "reservoir") : reservoir;
    }

    /// <summary>Writes the generator's position under <paramref name="name"/>.</summary>
    public void Save(ContinualState state, string name)
    {
        using var words = TorchSharp.torch.tensor(new[] { (long)_s0, (long)_s1, (long)_s2, (long)_s3 });
        state.Set(name, words);
    }

    /// <summary>A generator at the position <see cref="Save"/> wrote.</summary>
    public static SavableRandom Load(ContinualState state, string name)
    {
        using var words = state.GetTensor(name);
        if (words.dtype != TorchSharp.torch.ScalarType.Int64 || words.numel() != 4)
            throw new ContinualModelFormatException($"The random generator state '{name}' is not four 64-bit words.");
        long[] w = words.data<long>().ToArray();
        if (w.All(x => x == 0)) throw new ContinualModelFormatException($"The random generator state '{name}' is all zeros, which xoshiro256** never reaches.");
        var random = new SavableRandom(0) { _s0 = (ulong)w[0], _s1 = (ulong)w[1], _s2 = (ulong)w[2], _s3 = (ulong)w[3] };
        return random;
    }
}
