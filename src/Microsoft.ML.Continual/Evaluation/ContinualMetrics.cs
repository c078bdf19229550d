using System.Globalization;

namespace Microsoft.ML.Continual;

/// <summary>What one entry of the matrix R measures.</summary>
public enum ContinualScore
{
    /// <summary>Share of rows whose predicted label is the label (default).</summary>
    Accuracy,
    /// <summary>Mean over classes of each class's accuracy (ML.NET's <c>MacroAccuracy</c>; needs a key label).</summary>
    MacroAccuracy,
    /// <summary>Area under the ROC curve, for binary classification.</summary>
    AreaUnderRocCurve,
    /// <summary>Coefficient of determination, for regression.</summary>
    RSquared,
}

/// <summary>
/// The continual-learning metrics of Lopez-Paz and Ranzato (2017) and Chaudhry et al. (2018), computed exactly as
/// defined below from the matrix R.
/// </summary>
/// <remarks>
/// <para>R is (T+1) x T: R[i][j] is the score on task j's test set after training tasks 1..i, and row 0 is the model
/// before any training (initialised with the same seed). Indices below are 1-based for tasks, as in the papers.</para>
/// <list type="bullet">
/// <item><description>ACC (average accuracy) = (1/T) Σ_{i=1..T} R[T][i].</description></item>
/// <item><description>BWT (backward transfer) = (1/(T−1)) Σ_{i=1..T−1} (R[T][i] − R[i][i]). Negative: forgetting.</description></item>
/// <item><description>FWT (forward transfer) = (1/(T−1)) Σ_{i=2..T} (R[i−1][i] − R[0][i]). Positive: earlier tasks helped the next before it was trained.</description></item>
/// <item><description>Average forgetting = (1/(T−1)) Σ_{i=1..T−1} (max_{k=1..T−1} R[k][i] − R[T][i]).</description></item>
/// </list>
/// <para>T = 1: BWT, FWT and forgetting have no terms and are NaN (there is no earlier task). T = 2: each has one term,
/// e.g. BWT = R[2][1] − R[1][1] and FWT = R[1][2] − R[0][2].</para>
/// <para>Known traps this class avoids: GEM's official code divides BWT and FWT by T instead of T−1 (so reports
/// (T−1)/T of them); Continuum's FWT leaves out R[0][i]. Entries a model cannot score (NaN: e.g. a task-incremental
/// model asked about a task it has no head for yet) are left out of the means; with every entry defined, the means
/// are exactly the formulas above.</para>
/// </remarks>
public sealed class ContinualMetrics
{
    private readonly double[][] _r;

    /// <summary>Metrics of the matrix <paramref name="accuracyMatrix"/>: T+1 rows (row 0 before training) of T entries.</summary>
    public ContinualMetrics(IReadOnlyList<IReadOnlyList<double>> accuracyMatrix, ContinualScore score = ContinualScore.Accuracy, IReadOnlyList<string>? taskNames = null)
    {
        ArgumentNullException.ThrowIfNull(accuracyMatrix);
        int tasks = accuracyMatrix.Count - 1;
        if (tasks < 1) throw new ArgumentException("The matrix needs T+1 rows (row 0: before training) for T ≥ 1 tasks.", nameof(accuracyMatrix));
        if (accuracyMatrix.Any(row => row is null || row.Count != tasks))
            throw new ArgumentException($"Every row of the matrix needs T = {tasks} entries (one per task).", nameof(accuracyMatrix));
        _r = accuracyMatrix.Select(row => row.ToArray()).ToArray();
        Score = score;
        TaskNames = taskNames?.ToList() ?? Enumerable.Range(1, tasks).Select(t => $"task{t}").ToList();
        if (TaskNames.Count != tasks) throw new ArgumentException("One name per task is needed.", nameof(taskNames));
    }

    /// <summary>The number of tasks T.</summary>
    public int TaskCount => _r.Length - 1;

    /// <summary>What the entries measure.</summary>
    public ContinualScore Score { get; }

    /// <summary>The tasks' names.</summary>
    public IReadOnlyList<string> TaskNames { get; }

    /// <summary>R: (T+1) rows of T entries; R[i][j] = score on task j+1 after training tasks 1..i (0-based arrays).</summary>
    public IReadOnlyList<IReadOnlyList<double>> AccuracyMatrix => _r;

    /// <summary>ACC = (1/T) Σ_i R[T][i].</summary>
    public double AverageAccuracy => Mean(Enumerable.Range(1, TaskCount).Select(i => R(TaskCount, i)));

    /// <summary>BWT = (1/(T−1)) Σ_{i&lt;T} (R[T][i] − R[i][i]); NaN when T = 1.</summary>
    public double BackwardTransfer => Mean(Enumerable.Range(1, TaskCount - 1).Select(i => R(TaskCount, i) - R(i, i)));

    /// <summary>FWT = (1/(T−1)) Σ_{i≥2} (R[i−1][i] − R[0][i]); NaN when T = 1.</summary>
    public double ForwardTransfer => Mean(Enumerable.Range(2, TaskCount - 1).Select(i => R(i - 1, i) - R(0, i)));

    /// <summary>Mean over i &lt; T of max_{1≤k&lt;T} R[k][i] − R[T][i]; NaN when T = 1.</summary>
    public double AverageForgetting => Mean(Enumerable.Range(1, TaskCount - 1).Select(Forgetting));

    /// <summary>R[T][i] for each task: the final model's score on every task.</summary>
    public IReadOnlyList<double> FinalScores => Enumerable.Range(1, TaskCount).Select(i => R(TaskCount, i)).ToList();

    /// <summary>R[i][i] for each task: the score on each task just after learning it.</summary>
    public IReadOnlyList<double> JustTrainedScores => Enumerable.Range(1, TaskCount).Select(i => R(i, i)).ToList();

    /// <summary>Per task, max_{1≤k&lt;T} R[k][i] − R[T][i] (NaN for the last task, which cannot have been forgotten yet).</summary>
    public IReadOnlyList<double> TaskForgetting => Enumerable.Range(1, TaskCount).Select(i => i < TaskCount ? Forgetting(i) : double.NaN).ToList();

    /// <summary>R[i][j] with 1-based task index j and row i (0 = before training).</summary>
    public double R(int row, int task) => _r[row][task - 1];

    private double Forgetting(int i) => Enumerable.Range(1, TaskCount - 1).Select(k => R(k, i)).Where(v => !double.IsNaN(v)).DefaultIfEmpty(double.NaN).Max() - R(TaskCount, i);

    private static double Mean(IEnumerable<double> values)
    {
        var defined = values.Where(v => !double.IsNaN(v)).ToList();
        return defined.Count == 0 ? double.NaN : defined.Average();
    }

    /// <summary>The matrix and the summary as text.</summary>
    public override string ToString()
    {
        var sb = new System.Text.StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"{"after",-10}");
        foreach (var name in TaskNames) sb.Append(CultureInfo.InvariantCulture, $"{Short(name),10}");
        sb.AppendLine();
        for (int i = 0; i <= TaskCount; i++)
        {
            sb.Append(CultureInfo.InvariantCulture, $"{(i == 0 ? "init" : "task " + i),-10}");
            for (int j = 1; j <= TaskCount; j++) sb.Append(CultureInfo.InvariantCulture, $"{R(i, j),10:F4}");
            sb.AppendLine();
        }
        sb.Append(CultureInfo.InvariantCulture, $"ACC {AverageAccuracy:F4}  BWT {BackwardTransfer:F4}  FWT {ForwardTransfer:F4}  forgetting {AverageForgetting:F4}");
        return sb.ToString();
    }

    private static string Short(string name) => name.Length <= 9 ? name : name[..9];
}
