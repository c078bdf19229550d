using System.Xml.Linq;
using Xunit;

namespace Microsoft.ML.Continual.Tests;

/// <summary>What each package depends on: the core only on ML.NET and TorchSharp (and what the core itself calls), so
/// that the application picks its libtorch and carries no graphics library; the charts and the benchmark streams in their
/// own packages. (.ci/package-smoke.sh checks the packed nuspec and the cross-platform publishes.)</summary>
public sealed class PackagingTests
{
    private static string RepositoryRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
            if (File.Exists(Path.Combine(folder.FullName, "ContinualML.sln"))) return folder.FullName;
        throw new DirectoryNotFoundException($"No ContinualML.sln above {AppContext.BaseDirectory}.");
    }

    private static (string[] Packages, string[] Projects) References(string project)
    {
        var xml = XDocument.Load(Path.Combine(RepositoryRoot(), "src", project, project + ".csproj"));
        return (xml.Descendants("PackageReference").Select(e => (string)e.Attribute("Include")!).Order().ToArray(),
            xml.Descendants("ProjectReference").Select(e => Path.GetFileNameWithoutExtension((string)e.Attribute("Include")!)).Order().ToArray());
    }

    [Fact]
    public void CorePackage_DependsOnMlNetAndTorchSharpOnly_NoBackendNoGraphics()
    {
        var (packages, projects) = References("Microsoft.ML.Continual");
        Assert.Equal(["LightGBM", "MathNet.Numerics", "Microsoft.ML", "TorchSharp"], packages);
        Assert.Empty(projects);
        // And the built assembly loads nothing else of the kind.
        var loaded = typeof(ContinualCatalog).Assembly.GetReferencedAssemblies().Select(a => a.Name!).ToList();
        Assert.DoesNotContain(loaded, name => name.StartsWith("ScottPlot", StringComparison.Ordinal) || name.StartsWith("SkiaSharp", StringComparison.Ordinal));
        Assert.Contains("TorchSharp", loaded);
    }

    [Fact]
    public void SiblingPackages_CarryThePlotsAndTheStreams_AndTheToolItsBackend()
    {
        var (reportPackages, reportProjects) = References("Microsoft.ML.Continual.Reports");
        Assert.Equal(["ScottPlot"], reportPackages);
        Assert.Equal(["Microsoft.ML.Continual"], reportProjects);
        var (datasetPackages, datasetProjects) = References("Microsoft.ML.Continual.Datasets");
        Assert.Empty(datasetPackages);
        Assert.Equal(["Microsoft.ML.Continual"], datasetProjects);
        var (toolPackages, toolProjects) = References("Microsoft.ML.Continual.Cli");
        Assert.Contains("libtorch-cpu-linux-x64", toolPackages); // the tool is an application: it brings its backend
        Assert.Equal(["Microsoft.ML.Continual", "Microsoft.ML.Continual.Datasets", "Microsoft.ML.Continual.Reports"], toolProjects);
        // The streams are reached as before, through the catalog, once the Datasets package is referenced.
        var stream = new MLContext(seed: 0).Continual().Benchmarks.RotatingHyperplane(numberOfTasks: 2, trainRowsPerTask: 10, testRowsPerTask: 5);
        Assert.Equal(2, stream.Count);
    }
}
