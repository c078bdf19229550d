namespace Microsoft.ML.Continual;

/// <summary>
/// A data-parallel fit that every process gives up together, at the same point, so that none of them waits for another:
/// another process failed while checking or reading its data (its own error is in its output), or the processes do not
/// start from the same model, options and rows. Like any other fit error, it leaves the previous model unchanged.
/// </summary>
/// <example><code source="../../src/Samples/ScaleOutSample.cs" /></example>
public sealed class ContinualDistributedException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    public ContinualDistributedException(string message) : base(message) { }
}
