#!/usr/bin/env bash
# Packs Microsoft.ML.Continual, then builds and runs a brand-new console app that references it from a local
# folder: proves the package (and the native fix it carries in buildTransitive) works with no extra steps.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A version of its own per run, so the NuGet cache never serves an older build of the package.
version="0.1.0-smoke.$(date +%s)"

dotnet pack src/Microsoft.ML.Continual -c Release -o "$work/feed" -p:Version="$version" --nologo -v q

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
dotnet bin/Debug/net10.0/app.dll | tee out.txt
grep -q "package ok: 400 rows scored after 2 tasks" out.txt
grep -q "package ok: boosted trees AUC .* after 2 tasks" out.txt
