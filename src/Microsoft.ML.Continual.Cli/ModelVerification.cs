using Microsoft.ML.Data;

namespace Microsoft.ML.Continual.Cli;

/// <summary>Checks a model file just written, before it replaces anything: it must load, and score a sample of the task's
/// rows to finite values.</summary>
internal static class ModelVerification
{
    /// <summary>Rows of the task scored by the check: enough to catch a broken network, few enough to cost well under a second.</summary>
    public const int SampleRows = 256;

    /// <summary>Loads <paramref name="path"/> with <c>LoadModel</c> and scores the first <see cref="SampleRows"/> rows of
    /// <paramref name="rows"/>; throws a <see cref="CliException"/> saying what failed.</summary>
    public static void Check(MLContext ml, string path, IDataView rows)
    {
        ITransformer model;
        try
        {
            model = ml.Continual().LoadModel(path, out _);
        }
        catch (ContinualModelFormatException e)
        {
            throw new CliException(ExitCodes.UnexpectedError, $"The new model does not read back from its temporary file: {e.Message} Nothing was replaced: the previous model and its backups are unchanged.");
        }
        var scored = model.Transform(ml.Data.TakeRows(rows, SampleRows));
        if (FirstNonFiniteRow(scored) is long row)
            throw new CliException(ExitCodes.Diverged, $"The new model gives an infinite or NaN score on row {row + 1} of the task. " +
                "Nothing was written: the previous model and its backups are unchanged. Lower the learning rate or scale the features and the label.");
    }

    /// <summary>The first row whose Score (a number or a vector) is not finite, or null.</summary>
    private static long? FirstNonFiniteRow(IDataView scored)
    {
        var column = scored.Schema["Score"];
        using var cursor = scored.GetRowCursor([column]);
        if (column.Type is VectorDataViewType)
        {
            var getter = cursor.GetGetter<VBuffer<float>>(column);
            var vector = default(VBuffer<float>);
            while (cursor.MoveNext())
            {
                getter(ref vector);
                foreach (float value in vector.DenseValues())
                    if (!float.IsFinite(value)) return cursor.Position;
            }
            return null;
        }
        var scalar = cursor.GetGetter<float>(column);
        float score = 0;
        while (cursor.MoveNext())
        {
            scalar(ref score);
            if (!float.IsFinite(score)) return cursor.Position;
        }
        return null;
    }
}
