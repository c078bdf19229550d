namespace Microsoft.ML.Continual;

/// <summary>
/// Data that a continual trainer or model cannot use: a missing or wrongly typed column, a feature vector of the
/// wrong size, a NaN or infinite feature, an empty task, a label of another type than the model's. The message
/// names the column and what was expected; <see cref="ColumnName"/> holds the column.
/// </summary>
public sealed class ContinualDataException : ArgumentException
{
    /// <summary>Creates the exception.</summary>
    public ContinualDataException(string? columnName, string message) : base(message, "data") => ColumnName = columnName;

    /// <summary>The column at fault, when one is.</summary>
    public string? ColumnName { get; }

    /// <summary>True when a row names a task the model has no head for (the evaluator scores that as undefined).</summary>
    internal bool IsUnknownTask { get; init; }
}
