using TorchSharp;

namespace Microsoft.ML.Continual;

/// <summary>
/// Scalars made once and kept for the life of the process, for the fill values of calls made at every batch.
/// </summary>
/// <remarks>
/// TorchSharp's <see cref="Scalar"/> owns a native object and has a finalizer, and no dispose scope tracks it; an
/// implicit conversion (<c>masked_fill(mask, float.NegativeInfinity)</c>) makes a temporary that nothing keeps alive
/// during the native call. A benchmark run once failed inside <c>masked_fill</c> with libtorch's
/// "Expected false to be true" from <c>Scalar::toFloat</c> (an unknown scalar type), which is what reading a freed
/// Scalar looks like; static Scalars cannot be finalized.
/// </remarks>
internal static class CachedScalars
{
    public static readonly Scalar NegativeInfinity = float.NegativeInfinity.ToScalar();
    public static readonly Scalar Zero = 0f.ToScalar();
    public static readonly Scalar One = 1f.ToScalar();
    public static readonly Scalar MinusOneBillion = (-1e9f).ToScalar();
    public static readonly Scalar FloatMinValue = float.MinValue.ToScalar();
    public static readonly Scalar MinusTwo = (-2.0).ToScalar();
    public static readonly Scalar Tiny = 1e-12.ToScalar();

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<long, Scalar> Indices = new();

    /// <summary>An integer Scalar (head indices, compared at every forward); one per value, kept for the process.</summary>
    public static Scalar Index(long value) => Indices.GetOrAdd(value, v => v.ToScalar());
}
