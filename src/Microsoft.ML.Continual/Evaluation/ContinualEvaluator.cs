using Microsoft.ML.Data;

namespace Microsoft.ML.Continual;

/// <summary>Scores one model on one task's test set, as <see cref="ContinualScore"/> defines.</summary>
internal static class ContinualEvaluator
{
    /// <summary>The score, or NaN when the model cannot score the task (e.g. a multi-head model without a head for it).</summary>
    public static double Score(MLContext ml, ITransformer model, IDataView test, string labelColumn, ContinualScore score)
    {
        try
        {
            IDataView scored = model.Transform(test);
            return score switch
            {
                ContinualScore.Accuracy => Accuracy(scored, labelColumn),
                ContinualScore.MacroAccuracy => ml.MulticlassClassification.Evaluate(scored, labelColumnName: labelColumn).MacroAccuracy,
                ContinualScore.AreaUnderRocCurve => ml.BinaryClassification.Evaluate(scored, labelColumnName: labelColumn).AreaUnderRocCurve,
                _ => ml.Regression.Evaluate(scored, labelColumnName: labelColumn).RSquared,
            };
        }
        catch (ContinualDataException e) when (e.IsUnknownTask)
        {
            return double.NaN;
        }
    }

    /// <summary>Share of rows whose PredictedLabel equals the label (both read in their own types).</summary>
    public static double Accuracy(IDataView scored, string labelColumn)
    {
        var label = scored.Schema[labelColumn];
        var predicted = scored.Schema.GetColumnOrNull("PredictedLabel")
            ?? throw new ArgumentException("The model makes no PredictedLabel column; use ContinualScore.RSquared for regression.", nameof(scored));
        if (LabelVocabulary.KindOf(label.Type) != LabelVocabulary.KindOf(predicted.Type))
            throw new ContinualDataException(labelColumn, $"Label column '{labelColumn}' has type {label.Type} but PredictedLabel has type {predicted.Type}.");
        long rows = 0, correct = 0;
        using var cursor = scored.GetRowCursor([label, predicted]);
        var readLabel = TaskData.MakeValueGetter(cursor, label);
        var readPredicted = TaskData.MakeValueGetter(cursor, predicted);
        while (cursor.MoveNext())
        {
            bool hasLabel = readLabel(out LabelValue truth);
            readPredicted(out LabelValue guess);
            if (!hasLabel) continue; // a missing label is not a row to score
            rows++;
            if (truth == guess) correct++;
        }
        return rows == 0 ? double.NaN : (double)correct / rows;
    }
}
