using System.Globalization;
using ScottPlot;

namespace Microsoft.ML.Continual;

/// <summary>
/// PNG charts of the library's reports, drawn with ScottPlot: the R matrix as a heatmap, each task's score across the
/// sequence, several runs' average accuracy side by side, and a sweep's metrics against each swept parameter. The core
/// package writes the reports' data (JSON, CSV, Markdown); this package adds the pictures, so that an app that only
/// trains and scores carries no graphics libraries.
/// </summary>
public static class ContinualCharts
{
    private const int Width = 800, Height = 520, ComparisonWidth = 1100;

    // Twenty colours, then the line pattern changes, and every series has its own marker: 16 runs of the main demo once
    // shared 10 colours, so two runs looked the same.
    private static readonly ScottPlot.Palettes.Category20 Palette = new();
    private static readonly LinePattern[] Patterns = [LinePattern.Solid, LinePattern.Dashed, LinePattern.Dotted, LinePattern.DenselyDashed];
    private static readonly MarkerShape[] Markers = [MarkerShape.FilledCircle, MarkerShape.FilledSquare, MarkerShape.FilledTriangleUp, MarkerShape.FilledDiamond, MarkerShape.OpenCircle, MarkerShape.OpenSquare];

    /// <summary>Series <paramref name="index"/>'s colour, line pattern and marker: no two of the first 80 alike.</summary>
    private static void Style(ScottPlot.Plottables.Scatter line, int index)
    {
        line.Color = Palette.GetColor(index % 20);
        line.LinePattern = Patterns[index / 20 % Patterns.Length];
        line.MarkerShape = Markers[index % Markers.Length];
        line.MarkerSize = 6;
        line.LineWidth = 2;
    }

    /// <summary>A title that fits over the data area (<paramref name="dataWidth"/> pixels; the title is centred there, not on
    /// the figure): long ones get a smaller font rather than being cut at the edges.</summary>
    private static void Title(Plot plot, string title, int dataWidth)
    {
        plot.Title(title);
        plot.Axes.Title.Label.FontSize = Math.Clamp(dataWidth / (0.62f * Math.Max(title.Length, 1)), 9f, 18f);
    }
    /// <summary><see cref="ContinualExperimentResult.SaveReport"/> (metrics.json, matrix.csv, tasks.csv, summary.md) plus
    /// <c>matrix.png</c> (<see cref="Heatmap"/>) and <c>curves.png</c> (<see cref="Curves"/>) in <paramref name="directory"/>.</summary>
    public static void SaveReport(ContinualExperimentResult result, string directory)
    {
        ArgumentNullException.ThrowIfNull(result);
        result.SaveReport(directory);
        Heatmap(result, Path.Combine(directory, "matrix.png"));
        Curves(result, Path.Combine(directory, "curves.png"));
    }

    /// <summary><see cref="ContinualExperimentResult.SaveComparison"/> (comparison.md, comparison.csv and each run's report
    /// in a sub-folder) plus <c>comparison.png</c> (<see cref="Comparison"/>) and each run's two charts in its sub-folder.</summary>
    public static void SaveComparison(IEnumerable<ContinualExperimentResult> results, string directory)
    {
        var list = results.ToList();
        ContinualExperimentResult.SaveComparison(list, directory);
        foreach (var r in list)
        {
            string folder = Path.Combine(directory, ContinualExperimentResult.Sanitize(r.Name));
            Heatmap(r, Path.Combine(folder, "matrix.png"));
            Curves(r, Path.Combine(folder, "curves.png"));
        }
        Comparison(list, Path.Combine(directory, "comparison.png"));
    }

    /// <summary><see cref="SweepResult{T}.SaveReport"/> (trials.csv) plus <c>sweep-{parameter}.png</c> for each swept
    /// parameter (<see cref="Sweep"/>).</summary>
    public static void SaveReport<T>(SweepResult<T> result, string directory) where T : class, new()
    {
        ArgumentNullException.ThrowIfNull(result);
        result.SaveReport(directory);
        foreach (var dimension in result.Dimensions)
            Sweep(result, dimension.Name, Path.Combine(directory, $"sweep-{dimension.Name}.png"));
    }

    /// <summary>The R matrix as a heatmap: rows "init", "after 1" .. "after T", columns the tasks evaluated on.</summary>
    public static void Heatmap(ContinualExperimentResult result, string path)
    {
        var m = result.Metrics;
        var values = new double[m.TaskCount + 1, m.TaskCount];
        for (int i = 0; i <= m.TaskCount; i++)
            for (int j = 1; j <= m.TaskCount; j++)
                values[i, j - 1] = m.R(i, j);
        var plot = new Plot();
        var heatmap = plot.Add.Heatmap(values);
        heatmap.Colormap = new ScottPlot.Colormaps.Viridis();
        plot.Add.ColorBar(heatmap);
        if (m.TaskCount <= 12)
            for (int i = 0; i <= m.TaskCount; i++)
                for (int j = 0; j < m.TaskCount; j++)
                {
                    var text = plot.Add.Text(double.IsNaN(values[i, j]) ? "n/a" : values[i, j].ToString("F2"), j, m.TaskCount - i);
                    text.LabelFontColor = values[i, j] > 0.6 ? Colors.Black : Colors.White;
                    text.LabelAlignment = Alignment.MiddleCenter;
                }
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(0, m.TaskCount).Select(j => (double)j).ToArray(), Enumerable.Range(1, m.TaskCount).Select(j => $"task {j}").ToArray());
        plot.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            Enumerable.Range(0, m.TaskCount + 1).Select(i => (double)(m.TaskCount - i)).ToArray(),
            Enumerable.Range(0, m.TaskCount + 1).Select(i => i == 0 ? "init" : $"after {i}").ToArray());
        Title(plot, $"{result.Name}: R on {result.StreamName}", Width - 160); // the colour bar takes the right
        plot.XLabel("evaluated on");
        plot.YLabel("trained through");
        plot.SavePng(path, Width, Height);
    }

    /// <summary>Each task's score after each task trained (one line per task).</summary>
    public static void Curves(ContinualExperimentResult result, string path)
    {
        var m = result.Metrics;
        var plot = new Plot();
        double[] xs = Enumerable.Range(0, m.TaskCount + 1).Select(i => (double)i).ToArray();
        for (int j = 1; j <= m.TaskCount; j++)
        {
            double[] ys = xs.Select(i => m.R((int)i, j)).ToArray();
            var line = plot.Add.Scatter(xs, ys);
            line.LegendText = m.TaskNames[j - 1];
            Style(line, j - 1);
        }
        IntegerTicks(plot, 0, m.TaskCount);
        plot.ShowLegend(Edge.Right);
        Title(plot, $"{result.Name}: each task's {m.Score} across the sequence", Width - 260); // the legend takes the right
        plot.XLabel("tasks trained");
        plot.YLabel(m.Score.ToString());
        plot.Axes.SetLimitsY(0, 1.02);
        plot.SavePng(path, Width, Height);
    }

    private static void IntegerTicks(Plot plot, int first, int last)
    {
        int step = Math.Max(1, (last - first + 1) / 12);
        var positions = Enumerable.Range(first, last - first + 1).Where(i => (i - first) % step == 0).Select(i => (double)i).ToArray();
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(positions, positions.Select(p => p.ToString("0")).ToArray());
    }

    /// <summary>Several runs on one stream: the average score over the tasks seen so far, one line per run, ACC in the legend.</summary>
    public static void Comparison(IReadOnlyList<ContinualExperimentResult> results, string path)
    {
        if (results.Count == 0) throw new ArgumentException("Nothing to compare.", nameof(results));
        var plot = new Plot();
        for (int index = 0; index < results.Count; index++)
        {
            var r = results[index];
            var m = r.Metrics;
            double[] xs = Enumerable.Range(1, m.TaskCount).Select(i => (double)i).ToArray();
            double[] ys = xs.Select(i => Enumerable.Range(1, (int)i).Select(j => m.R((int)i, j)).Where(v => !double.IsNaN(v)).DefaultIfEmpty(double.NaN).Average()).ToArray();
            var line = plot.Add.Scatter(xs, ys);
            line.LegendText = $"{r.Name} (ACC {ContinualExperimentResult.F(m.AverageAccuracy)})";
            Style(line, index);
        }
        IntegerTicks(plot, 1, results.Max(r => r.Metrics.TaskCount));
        plot.ShowLegend(Edge.Right);
        Title(plot, $"Average {results[0].Metrics.Score} over the tasks seen so far — {results[0].StreamName}", ComparisonWidth - 480);
        plot.XLabel("tasks trained");
        plot.YLabel(results[0].Metrics.Score.ToString());
        plot.SavePng(path, ComparisonWidth, Height);
    }

    /// <summary>A sweep's completed trials: the objective, ACC and BWT (validation) against the parameter
    /// <paramref name="parameter"/>, the best trial circled.</summary>
    public static void Sweep<T>(SweepResult<T> result, string parameter, string path) where T : class, new()
    {
        var dimension = result.Dimensions.FirstOrDefault(d => d.Name == parameter)
            ?? throw new ArgumentException($"'{parameter}' is not a swept parameter ({string.Join(", ", result.Dimensions.Select(d => d.Name))}).", nameof(parameter));
        string objectiveName = result.ObjectiveName;
        var done = result.Trials.Where(t => t.Status == SweepTrialStatus.Completed).ToList();
        var plot = new Plot();
        double X(SweepTrial<T> t) => dimension.Kind == SearchDimensionKind.Choice
            ? dimension.Choices.Select(ContinualSweep<T>.Format).ToList().IndexOf(ContinualSweep<T>.Format(t.ParameterValues[dimension.Name]))
            : dimension.LogScale ? Math.Log10(Convert.ToDouble(t.ParameterValues[dimension.Name], CultureInfo.InvariantCulture))
            : Convert.ToDouble(t.ParameterValues[dimension.Name], CultureInfo.InvariantCulture);
        void Series(string label, Func<SweepTrial<T>, double> y)
        {
            if (done.Count == 0) return;
            var scatter = plot.Add.ScatterPoints(done.Select(X).ToArray(), done.Select(y).ToArray());
            scatter.LegendText = label;
            scatter.MarkerSize = 9;
        }
        Series(objectiveName, t => t.Objective);
        Series("ACC", t => t.Metrics!.AverageAccuracy);
        Series("BWT", t => t.Metrics!.BackwardTransfer);
        if (result.Best is { } best)
        {
            var marker = plot.Add.Marker(X(best), best.Objective);
            marker.MarkerSize = 18;
            marker.MarkerShape = ScottPlot.MarkerShape.OpenCircle;
            marker.LegendText = "best";
        }
        if (dimension.Kind == SearchDimensionKind.Choice)
            plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
                Enumerable.Range(0, dimension.Choices.Count).Select(i => (double)i).ToArray(), dimension.Choices.Select(ContinualSweep<T>.Format).ToArray());
        plot.ShowLegend(ScottPlot.Edge.Right);
        plot.Title($"Sweep: validation metrics against {dimension.Name}");
        plot.XLabel(dimension.LogScale ? $"log10({dimension.Name})" : dimension.Name);
        plot.YLabel("validation value");
        plot.SavePng(path, 800, 520);
    }
}
