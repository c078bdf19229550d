#!/usr/bin/env bash
# Packs Microsoft.ML.Continual (and its two sibling packages), checks the core package's dependency list, then builds and
# runs a brand-new console app that references the core package and the Linux CPU libtorch from a local folder: proves
# the package (and the native fix it carries in buildTransitive) works with no extra steps. Then publishes the same app
# for win-x64 with libtorch-cpu-win-x64 and for osx-arm64 with libtorch-cpu-osx-arm64 and checks each folder holds that
# platform's native libraries and no Linux ones.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A version of its own per run, so the NuGet cache never serves an older build of the package.
version="0.1.0-smoke.$(date +%s)"

for project in Microsoft.ML.Continual Microsoft.ML.Continual.Reports Microsoft.ML.Continual.Datasets; do
  dotnet pack "src/$project" -c Release -o "$work/feed" -p:Version="$version" --nologo -v q
done

mkdir -p "$work/app"
cd "$work/app"
cat > NuGet.config <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <add key="local" value="$work/feed" />
  </packageSources>
</configuration>
XML
cat > app.csproj <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <Nullable>enable</Nullable>
    <ImplicitUsings>enable</ImplicitUsings>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="Microsoft.ML.Continual" Version="$version" />
    <PackageReference Include="Microsoft.ML.Continual.Reports" Version="$version" />
    <PackageReference Include="Microsoft.ML.Continual.Datasets" Version="$version" />
    <!-- The application picks its libtorch: one line per platform (README "Install"). -->
    <PackageReference Include="libtorch-cpu-linux-x64" Version="2.10.0" Condition="'\$(RuntimeIdentifier)' == '' or '\$(RuntimeIdentifier)' == 'linux-x64'" />
    <PackageReference Include="libtorch-cpu-win-x64" Version="2.10.0" Condition="'\$(RuntimeIdentifier)' == 'win-x64'" />
    <PackageReference Include="libtorch-cpu-osx-arm64" Version="2.10.0" Condition="'\$(RuntimeIdentifier)' == 'osx-arm64'" />
  </ItemGroup>
</Project>
XML
cat > Program.cs <<'CS'
using Microsoft.ML;
using Microsoft.ML.Continual;
using Microsoft.ML.Data;

var ml = new MLContext(seed: 1);
var random = new Random(1);
IDataView Task(int offset) => ml.Data.LoadFromEnumerable(Enumerable.Range(0, 400).Select(i =>
    new Item { Features = [(float)random.NextDouble() + (i % 2) * 2 + offset, (float)random.NextDouble()], Label = i % 2 == 0 ? "even" : "odd" }));

var model = ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options { HiddenLayerSizes = [8], NumberOfEpochs = 3 }).Fit(Task(0));
ml.Model.Save(model, Task(0).Schema, "model.zip");
var next = ml.Continual().Refit(ml.Model.Load("model.zip", out _), Task(1));
var scored = next.Transform(Task(1));
int rows = scored.GetColumn<ReadOnlyMemory<char>>("PredictedLabel").Count();
var continual = next as ContinualTransformer ?? (ContinualTransformer)((IEnumerable<ITransformer>)next).Last();
Console.WriteLine($"package ok: {rows} rows scored after {continual.TasksSeen} tasks");

// The boosted trees: LightGBM's native library must come with the package too.
IDataView Flags(int offset) => ml.Data.LoadFromEnumerable(Enumerable.Range(0, 400).Select(i =>
    new Flag { Features = [(float)random.NextDouble() + (i % 2) * 2 + offset, (float)random.NextDouble()], Label = i % 2 == 1 }));
var trees = ml.Continual().Trainers.LightGbm(new Microsoft.ML.Continual.Trees.ContinualLightGbmTrainer.Options { MinimumExampleCountPerLeaf = 20 }).Fit(Flags(0));
ml.Model.Save(trees, Flags(0).Schema, "trees.zip");
var treesNext = ml.Continual().Refit(ml.Model.Load("trees.zip", out _), Flags(1));
double auc = ml.BinaryClassification.Evaluate(treesNext.Transform(Flags(1))).AreaUnderRocCurve;
if (auc < 0.9) throw new Exception($"trees AUC {auc}");
Console.WriteLine($"package ok: boosted trees AUC {auc:F3} after {ContinualCatalog.FindContinualModel(treesNext)!.TasksSeen} tasks");

// The sibling packages: a ready-made stream (Datasets) run and charted (Reports).
var stream = ml.Continual().Benchmarks.RotatingHyperplane(numberOfTasks: 2, trainRowsPerTask: 200, testRowsPerTask: 100);
var run = ml.Continual().Run(ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options { HiddenLayerSizes = [8], NumberOfEpochs = 2 }), stream);
ContinualCharts.SaveComparison([run], "report");
if (!File.Exists("report/comparison.png") || !File.Exists("report/FineTune/matrix.png")) throw new Exception("charts missing");
Console.WriteLine($"package ok: stream and charts, ACC {run.Metrics.AverageAccuracy:F3}");

class Flag
{
    [VectorType(2)] public float[] Features { get; set; } = [];
    public bool Label { get; set; }
}

class Item
{
    [VectorType(2)] public float[] Features { get; set; } = [];
    public string Label { get; set; } = "";
}
CS
dotnet build --nologo -v q 2>&1 | tail -3

# The core package depends on ML.NET and TorchSharp (plus what the core itself calls: MathNet.Numerics, LightGBM's native
# library), and on no libtorch backend and no graphics library. (Its nuspec, as restore extracted it.)
packages=$(dotnet nuget locals global-packages --list | sed 's/^global-packages: *//')
nuspec="$packages/microsoft.ml.continual/$version/microsoft.ml.continual.nuspec"
dependencies=$( (grep -o '<dependency id="[^"]*"' "$nuspec" || true) | sed 's/<dependency id="//; s/"$//' | sort | tr '\n' ' ')
echo "core package dependencies: $dependencies"
if [ "$dependencies" != "LightGBM MathNet.Numerics Microsoft.ML TorchSharp " ]; then
  echo "the core package's dependencies are not Microsoft.ML, TorchSharp, MathNet.Numerics and LightGBM" >&2
  exit 1
fi
dotnet bin/Debug/net10.0/app.dll | tee out.txt
grep -q "package ok: 400 rows scored after 2 tasks" out.txt
grep -q "package ok: boosted trees AUC .* after 2 tasks" out.txt
grep -q "package ok: stream and charts" out.txt

# The same app for Windows and macOS: each published folder holds its platform's libtorch and TorchSharp natives and no
# Linux library. (LightGBM 4.6.0, the native package ML.NET's LightGbm uses, has no osx-arm64 library: see README.)
check_publish() {
  local rid=$1 folder=$2; shift 2
  for file in "$@"; do
    [ -f "$folder/$file" ] || { echo "$rid publish: $file is missing" >&2; ls "$folder" >&2; return 1; }
  done
  if [ -n "$(find "$folder" \( -name '*.so' -o -name '*.so.*' \) -print -quit)" ]; then
    echo "$rid publish: Linux libraries in the folder:" >&2; find "$folder" -name '*.so*' >&2; return 1
  fi
  echo "$rid publish: ok ($(ls "$folder" | wc -l) files, $(du -sm "$folder" | cut -f1) MB)"
}
dotnet publish -r win-x64 --self-contained false -c Release -o "$work/win-x64" --nologo -v q 2>&1 | tail -3
check_publish win-x64 "$work/win-x64" app.dll LibTorchSharp.dll torch_cpu.dll c10.dll lib_lightgbm.dll
dotnet publish -r osx-arm64 --self-contained false -c Release -o "$work/osx-arm64" --nologo -v q 2>&1 | tail -3
check_publish osx-arm64 "$work/osx-arm64" app.dll libLibTorchSharp.dylib libtorch_cpu.dylib libc10.dylib
