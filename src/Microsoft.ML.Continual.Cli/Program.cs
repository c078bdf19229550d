using System.CommandLine;
using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Continual.Trees;
using Microsoft.ML.Data;
using Spectre.Console;

namespace Microsoft.ML.Continual.Cli;

/// <summary>The <c>continual</c> tool: batch jobs that train, refit, evaluate, run, sweep and inspect continual models.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        using var cancel = new CancellationTokenSource();
        var root = Commands.Build(() => cancel.Token);
        ParseResult parse = root.Parse(args);
        if (parse.Errors.Count > 0 && !args.Contains("--help") && !args.Contains("-h"))
        {
            foreach (var error in parse.Errors) Console.Error.WriteLine($"error: {error.Message}");
            Console.Error.WriteLine("Run 'continual --help' (or 'continual <command> --help') for usage.");
            return ExitCodes.UsageError;
        }
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.CancelKeyPress += onCancel;
        using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; cancel.Cancel(); });
        try
        {
            return parse.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false }) is int code ? code : 0;
        }
        catch (Exception e)
        {
            return Report(e, cancel.IsCancellationRequested);
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    /// <summary>The exception that says what happened: ML.NET's parallel cursors wrap a failure in their worker threads
    /// ("Splitter/consolidator worker encountered exception while consuming source data") and tasks in an
    /// <see cref="AggregateException"/>; the cause inside is what the user must see (an out-of-memory, a file that changed).</summary>
    internal static Exception Cause(Exception e)
    {
        while (true)
        {
            if (e is AggregateException { InnerExceptions.Count: 1 } a) e = a.InnerExceptions[0];
            else if (e is InvalidOperationException { InnerException: { } inner } && (e.Source?.StartsWith("Microsoft.ML", StringComparison.Ordinal) ?? false)
                && e.Message.Contains("worker encountered exception", StringComparison.Ordinal)) e = inner;
            else if (e is TargetInvocationException { InnerException: { } invoked }) e = invoked;
            else return e;
        }
    }

    /// <summary>Maps an exception to a message on stderr and an exit code.</summary>
    internal static int Report(Exception e, bool cancelled)
    {
        Exception given = e;
        e = Cause(e);
        (int code, string message) = e switch
        {
            CliException c => (c.ExitCode, c.Message),
            OutOfMemoryException => (ExitCodes.OutOfMemory,
                "Out of memory; nothing was written (the previous model is unchanged). A network trainer reads the task into memory " +
                "unless it is told a budget: add --set MemoryBudgetMegabytes=N (for example 256) to train or refit and the task streams " +
                "from the file. The boosted trees (lightgbm) hold each period unless told a limit: --set MaximumRowsPerPeriod=N (for example " +
                "1000000) at train, and they train on a uniform sample of that many rows of each period."),
            OperationCanceledException => (ExitCodes.Cancelled, "Cancelled; no output was written (the previous model is unchanged)."),
            ContinualCheckpointException c => (ExitCodes.CheckpointError, c.Message),
            ContinualTrainingException t => (ExitCodes.Diverged, t.Message), // the message says nothing was written
            _ when NativeFiles.IsCannotWrite(e) => (ExitCodes.CannotWrite, $"Cannot write the output: {NativeFiles.CannotWriteReason(e)} ({e.Message})."),
            ContinualModelFormatException m => (ExitCodes.ModelError, m.Message),
            ContinualDataException d => (ExitCodes.DataError, d.Message),
            FileNotFoundException f => (ExitCodes.DataError, f.Message),
            ArgumentException a => (ExitCodes.UsageError, a.Message),
            NotSupportedException n => (ExitCodes.UsageError, n.Message),
            InvalidOperationException i when i.Source == "Microsoft.ML.Data" || i.Source == "Microsoft.ML.Core" => (ExitCodes.DataError, i.Message),
            _ => (ExitCodes.UnexpectedError, $"Unexpected error: {e}"),
        };
        // What ML.NET's cursors wrapped was a data error before the cause was unwrapped; an unknown cause stays one.
        if (code == ExitCodes.UnexpectedError && !ReferenceEquals(given, e) && given is InvalidOperationException)
            (code, message) = (ExitCodes.DataError, $"{given.Message}: {e.GetType().Name}: {e.Message}");
        if (cancelled && code == ExitCodes.UnexpectedError) code = ExitCodes.Cancelled;
        Console.Error.WriteLine($"error: {message}");
        return code;
    }
}

/// <summary>The commands and their options.</summary>
internal static class Commands
{
    private static readonly Option<bool> Json = new("--json") { Description = "Write the result as one JSON object on stdout (for schedulers); progress goes to stderr." };
    private static readonly Option<int> WaitSeconds = new("--wait") { Description = "Seconds to wait for another job writing the same output before failing (exit code 5). Default 0." };

    public static RootCommand Build(Func<CancellationToken> token)
    {
        var root = new RootCommand("continual: train, refit and evaluate continual-learning models for ML.NET in batch jobs. Model files are written atomically; " +
            "a failed, cancelled or killed job leaves the previous model as it was. " + ExitCodes.Help);
        root.Subcommands.Add(Train(token));
        root.Subcommands.Add(Refit(token));
        root.Subcommands.Add(Evaluate());
        root.Subcommands.Add(Run(token));
        root.Subcommands.Add(Sweep(token));
        root.Subcommands.Add(Inspect());
        root.Subcommands.Add(Export());
        root.Subcommands.Add(Drift());
        return root;
    }

    // ---- shared options ----
    private static Option<string> Data(string description) => new("--data", "-d") { Description = description, Required = true };
    private static readonly Option<string?> SchemaFile = new("--schema") { Description = "A JSON file declaring column types: {\"columns\": [{\"name\": \"x\", \"type\": \"Single|Boolean|Text\"}]}. Default: inferred from the values." };
    private static readonly Option<int> CheckpointEvery = new("--checkpoint-every") { Description = "Checkpoint every N epochs to <out>.ckpt (atomically). Default 0: no checkpoints." };
    private static readonly Option<bool> Resume = new("--resume") { Description = "Continue from the checkpoint <out>.ckpt left by a killed or cancelled run of the same job." };

    private static System.CommandLine.Command Train(Func<CancellationToken> token)
    {
        var data = Data("The first task's rows: a .csv, .tsv or .parquet file with a header.");
        var label = new Option<string>("--label") { Description = "The label column.", Required = true };
        var trainer = new Option<string>("--trainer", "-t") { Description = $"The trainer: lightgbm (boosted trees with a replay memory: binary and regression labels; the first choice for business tables) or a network trainer: {string.Join(", ", ContinualTrainers.Names.Select(n => n.ToLowerInvariant()))}. Default finetune.", DefaultValueFactory = _ => "finetune" };
        var set = new Option<string[]>("--set") { Description = "A trainer option as Name=Value (repeatable), e.g. --set Lambda=1000 --set HiddenLayerSizes=100,100.", AllowMultipleArgumentsPerToken = false };
        var features = new Option<string[]>("--features") { Description = "The feature columns (repeatable or comma-separated). Default: every numeric column except the label and task id." };
        var taskId = new Option<string?>("--task-id") { Description = "A task-id column: one output head per task (task-incremental)." };
        var prediction = new Option<string>("--prediction") { Description = "classification, binary, regression or auto (default: text/Boolean labels classify; numeric labels with at most 1,000 distinct integers classify, others regress).", DefaultValueFactory = _ => "auto" };
        var output = new Option<string>("--out", "-o") { Description = "Where to write the model (.zip).", Required = true };
        var featurize = new Option<string>("--featurize") { Description = "auto (default): infer each column's role (numeric, categorical, Boolean, date, free text, identifier to ignore), print it, and put the featurizing pipeline and the tabular network in the model; none: the numeric columns as they are, concatenated, with the perceptron.", DefaultValueFactory = _ => "auto" };
        var categorical = new Option<string[]>("--categorical") { Description = "Columns to treat as categories whatever their values (repeatable or comma-separated)." };
        var numeric = new Option<string[]>("--numeric") { Description = "Columns to treat as numbers (repeatable or comma-separated)." };
        var ignore = new Option<string[]>("--ignore") { Description = "Columns to leave out (repeatable or comma-separated)." };
        var text = new Option<string[]>("--text") { Description = "Columns to treat as free text: hashed word counts (repeatable or comma-separated)." };
        var command = new System.CommandLine.Command("train", "Train a new model on a first task and write it atomically.")
        {
            data, label, trainer, set, features, taskId, prediction, output, featurize, categorical, numeric, ignore, text, SchemaFile, CheckpointEvery, Resume, WaitSeconds, Json,
        };
        command.SetAction(parse =>
        {
            var ml = new MLContext(seed: 0);
            string given = parse.GetValue(output)!, outPath = ModelFiles.Resolve(given);
            ModelFiles.RefuseDirectory(outPath, given, "--out");
            var settings = ParseSettings(parse.GetValue(set));
            string labelName = parse.GetValue(label)!;
            string? taskColumn = parse.GetValue(taskId);
            var table = Table.Read(parse.GetValue(data)!, parse.GetValue(SchemaFile), taskColumn is null ? [] : [taskColumn], [labelName]);
            var kind = ResolvePrediction(parse.GetValue(prediction)!, table, labelName);
            string mode = parse.GetValue(featurize)!.ToLowerInvariant();
            if (mode is not "auto" and not "none") throw new CliException(ExitCodes.UsageError, $"--featurize must be auto or none, not '{mode}'.");
            var roleOverrides = (Categorical: SplitList(parse.GetValue(categorical)), Numeric: SplitList(parse.GetValue(numeric)),
                Ignore: SplitList(parse.GetValue(ignore)), Text: SplitList(parse.GetValue(text)));
            if (mode == "none" && roleOverrides.Categorical.Length + roleOverrides.Numeric.Length + roleOverrides.Ignore.Length + roleOverrides.Text.Length > 0)
                throw new CliException(ExitCodes.UsageError, "--categorical, --numeric, --ignore and --text choose roles for the featurizer; they do nothing with --featurize none.");
            var prepared = mode == "auto"
                ? DataPreparation.ForFeaturizing(table, labelName, taskColumn, SplitList(parse.GetValue(features)), kind)
                : DataPreparation.ForTraining(table, labelName, taskColumn, SplitList(parse.GetValue(features)), kind);
            WarnSkipped(prepared, table);
            bool trees = string.Equals(parse.GetValue(trainer), ContinualLightGbmTrainer.TrainerName, StringComparison.OrdinalIgnoreCase);
            if (trees) RefuseForTrees(taskColumn, kind, parse.GetValue(CheckpointEvery) > 0 || parse.GetValue(Resume));
            settings["LabelColumnName"] = labelName;
            settings["FeatureColumnName"] = DataPreparation.FeaturesColumn;
            if (taskColumn is not null) settings["TaskIdColumnName"] = taskColumn;
            if (kind is not null && !trees) settings["PredictionKind"] = kind.Value.ToString();
            ContinualFeaturization? featurization = null;
            ITransformer front;
            Func<IDataView, ContinualFitOptions, IContinualModel> fitTask;
            if (mode == "auto")
            {
                featurization = ml.Continual().Featurize(prepared.View, new ContinualFeaturizerOptions
                {
                    LabelColumnName = labelName, TaskIdColumnName = taskColumn,
                    Categorical = roleOverrides.Categorical, Numeric = roleOverrides.Numeric, Text = roleOverrides.Text,
                    Ignore = [.. roleOverrides.Ignore, .. prepared.Unselected],
                });
                if (!parse.GetValue(Json)) Console.Error.WriteLine("Columns:" + Environment.NewLine + "  " + featurization.Describe().Replace(Environment.NewLine, Environment.NewLine + "  "));
                fitTask = trees ? TreesFit(ml.Continual().Trainers.LightGbm(settings, featurization), token)
                    : NetworkFit(ml.Continual().Trainers.Create(parse.GetValue(trainer)!, settings, featurization), parse, outPath, token);
                front = featurization.Pipeline.Fit(prepared.View); // frozen from here on: later tasks reuse it as fitted
            }
            else
            {
                fitTask = trees ? TreesFit(ml.Continual().Trainers.LightGbm(settings), token)
                    : NetworkFit(ml.Continual().Trainers.Create(parse.GetValue(trainer)!, settings), parse, outPath, token);
                front = ml.Transforms.Concatenate(DataPreparation.FeaturesColumn, prepared.FeatureColumns).Fit(prepared.View);
            }
            using var _ = IsWriter ? ModelFiles.PrepareOutput(outPath, TimeSpan.FromSeconds(parse.GetValue(WaitSeconds))) : null;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            IContinualModel model = WithProgress(parse.GetValue(Json), "train", fit => fitTask(front.Transform(prepared.View), fit));
            var chain = new TransformerChain<ITransformer>(front, model);
            int featureColumns = featurization?.Roles.Count(r => r.Role is not ColumnRole.Ignore and not ColumnRole.Label and not ColumnRole.TaskId) ?? prepared.FeatureColumns.Length;
            if (!IsWriter) return ExitCodes.Success; // under mpirun every process trained the same model; rank 0 writes it
            ModelFiles.WriteVerified(outPath, stream => ml.Model.Save(chain, prepared.View.Schema, stream), written => ModelVerification.Check(ml, written, prepared.View));
            DeleteCheckpoint(outPath);
            var json = new JsonObject
            {
                ["command"] = "train", ["model"] = Path.GetFullPath(given), ["file"] = outPath, ["trainer"] = model.TrainerName,
                ["features"] = featureColumns, ["featureSlots"] = model.FeatureSize, ["classes"] = new JsonArray(model.Classes.Select(c => (JsonNode)c).ToArray()),
                ["seconds"] = Math.Round(clock.Elapsed.TotalSeconds, 3),
            };
            if (featurization is not null) json["roles"] = Roles(featurization.Roles);
            Output(parse.GetValue(Json), WithRows(json, prepared),
                $"Trained {model.TrainerName} on {RowsText(prepared)} ({featureColumns} feature columns, {model.FeatureSize} slots{(featurization is null ? "" : ", featurized")}) in {clock.Elapsed.TotalSeconds:F1} s; wrote {given}{Beyond(given, outPath)}.");
            return ExitCodes.Success;
        });
        return command;
    }

    private static System.CommandLine.Command Refit(Func<CancellationToken> token)
    {
        var model = new Option<string>("--model", "-m") { Description = "The current model (.zip). Never modified unless --in-place.", Required = true };
        var data = Data("The next task's rows (.csv, .tsv or .parquet), with the columns the model was trained on.");
        var output = new Option<string?>("--out", "-o") { Description = "Where to write the refitted model." };
        var inPlace = new Option<bool>("--in-place") { Description = "Replace --model atomically (through a symbolic link: its target), keeping the previous model as <model>.bak once the new one is written and verified." };
        var keep = new Option<int?>("--keep") { Description = "With --in-place, how many previous models to keep, newest first: <model>.bak, <model>.bak.1 .. <model>.bak.{N-1}. Default 1." };
        var command = new System.CommandLine.Command("refit", "Continue a model on the next task, with the options and state stored in it, and write the result atomically.")
        {
            model, data, output, inPlace, keep, SchemaFile, CheckpointEvery, Resume, WaitSeconds, Json,
        };
        command.SetAction(parse =>
        {
            string modelPath = parse.GetValue(model)!;
            bool replace = parse.GetValue(inPlace);
            string? outPath = parse.GetValue(output);
            int backups = RefitBackups(replace, outPath, parse.GetValue(keep));
            string target = ModelFiles.Resolve(replace ? modelPath : outPath!);
            ModelFiles.RefuseDirectory(target, replace ? modelPath : outPath!, replace ? "--model" : "--out");
            if (!replace && target == ModelFiles.Resolve(modelPath))
                throw new CliException(ExitCodes.UsageError, "--out is the input model; use --in-place to replace it (the previous model is then kept as .bak).");
            var ml = new MLContext(seed: 0);
            using var _ = IsWriter ? ModelFiles.PrepareOutput(target, TimeSpan.FromSeconds(parse.GetValue(WaitSeconds))) : null;
            RequireModelFile(modelPath);
            var current = ml.Continual().LoadModel(modelPath, out var schema);
            var continual = ContinualCatalog.FindContinualModel(current)!;
            if (continual is ContinualLightGbmTransformer && (parse.GetValue(CheckpointEvery) > 0 || parse.GetValue(Resume)))
                throw new CliException(ExitCodes.UsageError, "--checkpoint-every and --resume: lightgbm models take no checkpoints (a period's boosting is short and restarts whole).");
            var table = Table.Read(parse.GetValue(data)!, parse.GetValue(SchemaFile), TaskIdColumns(continual), [continual.LabelColumnName]);
            var prepared = DataPreparation.ForModel(table, current, schema, continual);
            WarnSkipped(prepared, table);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            ITransformer next = WithProgress(parse.GetValue(Json), "refit", fit => ml.Continual().Refit(current, prepared.View, Checkpointed(fit, parse, target), token()));
            if (!IsWriter) return ExitCodes.Success; // under mpirun every process trained the same model; rank 0 writes it
            Action<Stream> save = stream => ml.Model.Save(next, schema, stream);
            Action<string> verify = written => ModelVerification.Check(ml, written, prepared.View);
            if (replace) ModelFiles.ReplaceVerified(target, save, verify, backups);
            else ModelFiles.WriteVerified(target, save, verify);
            DeleteCheckpoint(target);
            string previous = replace ? ModelFiles.BackupPaths(target, 1)[0] : Path.GetFullPath(modelPath);
            ReportRefit(parse.GetValue(Json), ContinualCatalog.FindContinualModel(next)!, prepared, clock.Elapsed, replace ? modelPath : outPath!, target, previous, replace);
            return ExitCodes.Success;
        });
        return command;
    }

    private static System.CommandLine.Command Evaluate()
    {
        var models = new Option<string[]>("--model", "-m") { Description = "Model(s) to evaluate (repeatable); with one model per --data, in task order, the ACC/BWT table is printed.", Required = true };
        var data = new Option<string[]>("--data", "-d") { Description = "Test data of each task (repeatable), in task order.", Required = true };
        var score = new Option<ContinualScore>("--score") { Description = "Accuracy (default), MacroAccuracy, AreaUnderRocCurve or RSquared.", DefaultValueFactory = _ => ContinualScore.Accuracy };
        var command = new System.CommandLine.Command("evaluate", "Score models on each task's test data; with a model after each task, the R matrix, ACC, BWT and forgetting.")
        {
            models, data, score, SchemaFile, Json,
        };
        command.SetAction(parse =>
        {
            var ml = new MLContext(seed: 0);
            var modelPaths = parse.GetValue(models)!;
            var dataPaths = parse.GetValue(data)!;
            foreach (string p in modelPaths) RequireModelFile(p);
            var loaded = modelPaths.Select(p => (Model: ml.Continual().LoadModel(p, out var s), Schema: s)).ToList();
            var taskIds = loaded.SelectMany(m => TaskIdColumns(ContinualCatalog.FindContinualModel(m.Model)!)).Distinct().ToList();
            var labels = loaded.Select(m => ContinualCatalog.FindContinualModel(m.Model)!.LabelColumnName).Distinct().ToList();
            var tables = dataPaths.Select(p => Table.Read(p, parse.GetValue(SchemaFile), taskIds, labels)).ToList();
            var kind = parse.GetValue(score);
            var r = loaded.Select(m =>
            {
                var continual = ContinualCatalog.FindContinualModel(m.Model)!;
                return tables.Select(t => ml.Continual().Score(m.Model, DataPreparation.ForModel(t, m.Model, m.Schema, continual).View, continual.LabelColumnName, kind)).ToArray();
            }).ToList();
            var json = new JsonObject
            {
                ["command"] = "evaluate", ["score"] = kind.ToString(),
                ["models"] = new JsonArray(modelPaths.Select(p => (JsonNode)Path.GetFullPath(p)).ToArray()),
                ["data"] = new JsonArray(dataPaths.Select(p => (JsonNode)Path.GetFullPath(p)).ToArray()),
                ["scores"] = new JsonArray(r.Select(row => (JsonNode)new JsonArray(row.Select(v => (JsonNode?)(double.IsFinite(v) ? JsonValue.Create(Math.Round(v, 6)) : null)).ToArray())).ToArray()),
            };
            var text = new System.Text.StringBuilder();
            text.AppendLine($"{kind} of each model (rows) on each data file (columns):");
            text.AppendLine("| model | " + string.Join(" | ", dataPaths.Select(Path.GetFileName)) + " |");
            text.AppendLine("| --- |" + string.Concat(dataPaths.Select(_ => " ---: |")));
            for (int i = 0; i < r.Count; i++)
                text.AppendLine($"| {Path.GetFileName(modelPaths[i])} | " + string.Join(" | ", r[i].Select(v => double.IsFinite(v) ? v.ToString("F4", CultureInfo.InvariantCulture) : "n/a")) + " |");
            if (r.Count == tables.Count && r.Count > 1)
            {
                var matrix = new List<IReadOnlyList<double>> { Enumerable.Repeat(double.NaN, r.Count).ToList() };
                matrix.AddRange(r);
                var metrics = new ContinualMetrics(matrix, kind, dataPaths.Select(Path.GetFileNameWithoutExtension).Select(n => n ?? "").ToList());
                json["ACC"] = Finite(metrics.AverageAccuracy);
                json["BWT"] = Finite(metrics.BackwardTransfer);
                json["forgetting"] = Finite(metrics.AverageForgetting);
                text.AppendLine($"ACC {metrics.AverageAccuracy:F4}   BWT {metrics.BackwardTransfer:+0.0000;-0.0000}   forgetting {metrics.AverageForgetting:F4}   (FWT needs the untrained model: see 'continual run')");
            }
            Output(parse.GetValue(Json), json, text.ToString().TrimEnd());
            return ExitCodes.Success;
        });
        return command;
    }

    private static System.CommandLine.Command Run(Func<CancellationToken> token)
    {
        var benchmark = new Option<string>("--benchmark", "-b") { Description = "permuted-mnist, rotated-mnist, split-mnist-task, split-mnist-domain, split-mnist-class or rotating-hyperplane.", Required = true };
        var trainers = new Option<string[]>("--trainers") { Description = "Trainers to compare (comma-separated or repeatable). Default finetune.", DefaultValueFactory = _ => ["finetune"] };
        var set = new Option<string[]>("--set") { Description = "An option for every trainer as Name=Value (repeatable)." };
        var tasks = new Option<int?>("--tasks") { Description = "Number of tasks (default: the benchmark's)." };
        var samples = new Option<int?>("--train-samples") { Description = "Training rows per task (default: all)." };
        var report = new Option<string?>("--report") { Description = "Write the report (JSON, CSV, Markdown, PNG) to this folder." };
        var command = new System.CommandLine.Command("run", "Run trainers through a benchmark stream and print ACC, BWT and FWT.") { benchmark, trainers, set, tasks, samples, report, Json };
        command.SetAction(parse =>
        {
            var ml = new MLContext(seed: 0);
            var stream = Benchmark(ml, parse.GetValue(benchmark)!, parse.GetValue(tasks), parse.GetValue(samples));
            var settings = ParseSettings(parse.GetValue(set));
            if (stream.Scenario == ContinualScenario.TaskIncremental) settings.TryAdd("TaskIdColumnName", "TaskId");
            var results = new List<ContinualExperimentResult>();
            foreach (string name in SplitList(parse.GetValue(trainers)))
            {
                var estimator = ml.Continual().Trainers.Create(name, settings);
                results.Add(ml.Continual().Run(estimator, stream, new ContinualRunOptions
                {
                    Name = name,
                    Progress = p => { if (IsWriter) Console.Error.WriteLine($"{name}: task {p.TaskIndex + 1}/{p.TaskCount} trained in {p.Record.TrainingSeconds:F1} s"); },
                }, token()));
            }
            if (parse.GetValue(report) is string folder && IsWriter) ContinualCharts.SaveComparison(results, folder);
            var json = new JsonObject
            {
                ["command"] = "run", ["stream"] = stream.Name,
                ["runs"] = new JsonArray(results.Select(r => (JsonNode)new JsonObject
                {
                    ["trainer"] = r.Name, ["ACC"] = Finite(r.Metrics.AverageAccuracy), ["BWT"] = Finite(r.Metrics.BackwardTransfer),
                    ["FWT"] = Finite(r.Metrics.ForwardTransfer), ["trainingSeconds"] = Math.Round(r.TotalTrainingSeconds, 3),
                }).ToArray()),
            };
            Output(parse.GetValue(Json), json, ContinualExperimentResult.ComparisonTable(results));
            return ExitCodes.Success;
        });
        return command;
    }

    private static System.CommandLine.Command Sweep(Func<CancellationToken> token)
    {
        var benchmark = new Option<string>("--benchmark", "-b") { Description = "The stream to sweep on (as for 'run').", Required = true };
        var trainer = new Option<string>("--trainer", "-t") { Description = "The trainer.", Required = true };
        var range = new Option<string[]>("--range") { Description = "A parameter to sweep as Name=min:max[:log][:int] (repeatable), e.g. --range Lambda=1:1e6:log.", Required = true };
        var set = new Option<string[]>("--set") { Description = "A fixed trainer option as Name=Value (repeatable)." };
        var trials = new Option<int>("--trials") { Description = "Most trials. Default 10.", DefaultValueFactory = _ => 10 };
        var tuner = new Option<SweepTuner>("--tuner") { Description = "Grid, Random or Bayesian (default).", DefaultValueFactory = _ => SweepTuner.Bayesian };
        var tasks = new Option<int?>("--tasks") { Description = "Number of tasks (default: the benchmark's)." };
        var samples = new Option<int?>("--train-samples") { Description = "Training rows per task (default: all)." };
        var report = new Option<string?>("--report") { Description = "Write trials.csv and the plots to this folder." };
        var command = new System.CommandLine.Command("sweep", "Search trainer options (e.g. λ) on a benchmark stream; the objective (ACC) is computed on validation rows, the best trial is then scored on the test sets, and its parameters are retrained on all rows and scored again.")
        {
            benchmark, trainer, range, set, trials, tuner, tasks, samples, report, Json,
        };
        command.SetAction(parse =>
        {
            var ml = new MLContext(seed: 0);
            var stream = Benchmark(ml, parse.GetValue(benchmark)!, parse.GetValue(tasks), parse.GetValue(samples));
            var fixedSettings = ParseSettings(parse.GetValue(set));
            if (stream.Scenario == ContinualScenario.TaskIncremental) fixedSettings.TryAdd("TaskIdColumnName", "TaskId");
            var space = new SearchSpace<SweepParameters>(parse.GetValue(range)!.Select(ParseRange).ToList(), (p, name, value) => p.Values[name] = value);
            string trainerName = parse.GetValue(trainer)!;
            _ = ml.Continual().Trainers.Create(trainerName, fixedSettings); // fail fast on a bad trainer or option
            var result = ml.Continual().CreateSweep()
                .SetTrainer((ctx, p) => ctx.Continual().Trainers.Create(trainerName, fixedSettings.Concat(p.Values.Select(kv => KeyValuePair.Create(kv.Key, Format(kv.Value))))
                    .GroupBy(kv => kv.Key).Select(g => g.Last())), space)
                .SetTaskStream(stream).SetMaxTrials(parse.GetValue(trials)).SetTuner(parse.GetValue(tuner))
                .Run(token());
            if (parse.GetValue(report) is string folder && IsWriter) ContinualCharts.SaveReport(result, folder);
            var json = new JsonObject
            {
                ["command"] = "sweep", ["stream"] = stream.Name, ["trainer"] = trainerName,
                ["trials"] = new JsonArray(result.Trials.Select(t => (JsonNode)new JsonObject
                {
                    ["parameters"] = new JsonObject(t.ParameterValues.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)Format(kv.Value)))),
                    ["status"] = t.Status.ToString(), ["objective"] = Finite(t.Objective), ["error"] = t.Error,
                }).ToArray()),
                ["best"] = result.Best is null ? null : new JsonObject(result.Best.ParameterValues.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)Format(kv.Value)))),
                ["bestValidationACC"] = result.Best?.Metrics is null ? null : Finite(result.Best.Metrics.AverageAccuracy),
                ["bestTestACC"] = result.BestTestMetrics is null ? null : Finite(result.BestTestMetrics.AverageAccuracy),
                ["bestRetrainedTestACC"] = result.BestModelTestMetrics is null ? null : Finite(result.BestModelTestMetrics.AverageAccuracy),
            };
            string text = string.Join("\n", result.Trials.Select(t => $"trial {t.Index + 1}: {string.Join(", ", t.ParameterValues.Select(kv => $"{kv.Key} = {Format(kv.Value)}"))} → {t.Status} {t.Objective:F4}"))
                + (result.Best is null ? "\nNo trial completed." : $"\nBest: {string.Join(", ", result.Best.ParameterValues.Select(kv => $"{kv.Key} = {Format(kv.Value)}"))}; validation ACC {result.Best.Metrics?.AverageAccuracy:F4}; "
                    + $"test ACC of the trial's model (trained on 80% of each task's rows) {result.BestTestMetrics?.AverageAccuracy:F4}; "
                    + $"test ACC of these parameters retrained on all rows {result.BestModelTestMetrics?.AverageAccuracy:F4}");
            Output(parse.GetValue(Json), json, text);
            return result.Best is null ? ExitCodes.UnexpectedError : ExitCodes.Success;
        });
        return command;
    }

    private static System.CommandLine.Command Inspect()
    {
        var model = new Argument<string>("model") { Description = "The model file (.zip)." };
        var command = new System.CommandLine.Command("inspect", "Show a model's format version, trainer and options, tasks seen, label vocabulary, input columns and state sizes.") { model, Json };
        command.SetAction(parse =>
        {
            var ml = new MLContext(seed: 0);
            string path = parse.GetValue(model)!;
            RequireModelFile(path);
            var loaded = ml.Continual().LoadModel(path, out var schema);
            var c = ContinualCatalog.FindContinualModel(loaded)!;
            var network = c as ContinualTransformer;
            var pairs = network is null ? c.OptionValues.ToList() : network.Options.GetType().GetProperties().Where(p => p.CanWrite).OrderBy(p => p.Name)
                .Select(p => KeyValuePair.Create(p.Name, Format(p.GetValue(network.Options)))).ToList();
            var json = new JsonObject
            {
                ["command"] = "inspect", ["model"] = Path.GetFullPath(path), ["formatVersion"] = $"0x{c.FormatVersion:X8}", ["trainer"] = c.TrainerName,
                ["options"] = new JsonObject(pairs.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
                ["tasksSeen"] = c.TasksSeen, ["predictionKind"] = c.PredictionKind.ToString(), ["featureSize"] = c.FeatureSize, ["parameters"] = network?.ParameterCount,
                ["classes"] = new JsonArray(c.Classes.Select(x => (JsonNode)x).ToArray()), ["taskIds"] = new JsonArray(c.TaskIds.Select(x => (JsonNode)x).ToArray()),
                ["inputColumns"] = new JsonArray(schema.Select(col => (JsonNode)$"{col.Name}: {col.Type}").ToArray()),
                ["state"] = new JsonObject(c.StateSizes.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)kv.Value))),
            };
            var text = new System.Text.StringBuilder();
            text.AppendLine($"{path}: continual model, format version 0x{c.FormatVersion:X8}");
            text.AppendLine($"  trainer        {c.TrainerName}");
            text.AppendLine($"  tasks seen     {c.TasksSeen}");
            text.AppendLine($"  prediction     {c.PredictionKind}, {c.FeatureSize} features, " + (network is null ? $"{c.StateSizes["trees"]:N0} trees" : $"{network.ParameterCount:N0} network parameters"));
            if (c.Classes.Count > 0) text.AppendLine($"  classes        {string.Join(", ", c.Classes)}");
            if (c.TaskIds.Count > 0) text.AppendLine($"  task ids       {string.Join(", ", c.TaskIds)}");
            text.AppendLine($"  input columns  {string.Join(", ", schema.Select(col => $"{col.Name} ({col.Type})"))}");
            var roles = ContinualFeaturizer.RolesOf(loaded, schema);
            if (roles.Count > 0)
            {
                json["roles"] = Roles(roles);
                text.AppendLine($"  featurizer     {string.Join("; ", roles.Where(r => r.Role is not ColumnRole.Label and not ColumnRole.TaskId).GroupBy(r => r.Role).Select(g => $"{g.Key.ToString().ToLowerInvariant()}: {string.Join(", ", g.Select(r => r.Name))}"))}");
            }
            if (network?.Backbone is not null) text.AppendLine($"  backbone       {network.Backbone.GetType().Name}");
            text.AppendLine($"  state          {(c.StateSizes.Count == 0 ? "none" : string.Join(", ", c.StateSizes.Select(kv => $"{kv.Key} {kv.Value:N0}")))}");
            text.AppendLine("  options");
            foreach (var (name, value) in pairs) text.AppendLine($"    {name} = {value}");
            Output(parse.GetValue(Json), json, text.ToString().TrimEnd());
            return ExitCodes.Success;
        });
        return command;
    }

    private static System.CommandLine.Command Export()
    {
        var model = new Option<string>("--model", "-m") { Description = "The model file (.zip).", Required = true };
        var onnx = new Option<string>("--onnx") { Description = "Where to write the ONNX file (written atomically).", Required = true };
        var allInputs = new Option<bool>("--all-inputs") { Description = "Keep every column the model was saved with as a graph input (default: only the columns its scoring reads, e.g. the features and the task id, not the label)." };
        var command = new System.CommandLine.Command("export", "Write a model (with its featurizing steps ML.NET can export) as an ONNX file for ONNX Runtime: inputs as the model's input columns, outputs Score, PredictedLabel and, for binary models, Probability. A task-incremental model's graph takes the task-id column.") { model, onnx, allInputs, Json };
        command.SetAction(parse =>
        {
            var ml = new MLContext(seed: 0);
            string path = parse.GetValue(model)!, given = parse.GetValue(onnx)!;
            RequireModelFile(path);
            var loaded = ml.Continual().LoadModel(path, out var schema);
            var inputs = parse.GetValue(allInputs) ? schema : ScoringInputs(loaded, schema);
            var outputSchema = loaded.GetOutputSchema(inputs);
            string[] outputs = ["Score", "PredictedLabel", "Probability"];
            outputs = outputs.Where(name => outputSchema.GetColumnOrNull(name) is not null).ToArray();
            string resolved = ModelFiles.Resolve(given);
            ModelFiles.RefuseDirectory(resolved, given, "--onnx");
            using (ModelFiles.PrepareOutput(resolved, TimeSpan.Zero))
            {
                try
                {
                    ModelFiles.WriteVerified(resolved, stream => ml.Model.ConvertToOnnx(loaded, new NoRows(inputs), stream, outputs),
                        written => { if (new FileInfo(written).Length == 0) throw new CliException(ExitCodes.UnexpectedError, "The ONNX file came out empty."); });
                }
                catch (NotSupportedException e)
                {
                    throw new CliException(ExitCodes.ModelError, e.Message);
                }
            }
            var json = new JsonObject
            {
                ["command"] = "export", ["model"] = Path.GetFullPath(path), ["onnx"] = resolved, ["bytes"] = new FileInfo(resolved).Length,
                ["inputs"] = new JsonArray(inputs.Select(c => (JsonNode)$"{c.Name}: {c.Type}").ToArray()), ["outputs"] = new JsonArray(outputs.Select(o => (JsonNode)o).ToArray()),
            };
            Output(parse.GetValue(Json), json, $"{resolved}: ONNX, {new FileInfo(resolved).Length:N0} bytes; inputs {string.Join(", ", inputs.Select(c => $"{c.Name} ({c.Type})"))}; outputs {string.Join(", ", outputs)} (ONNX Runtime names them with the suffix '.output')");
            return ExitCodes.Success;
        });
        return command;
    }

    private static System.CommandLine.Command Drift()
    {
        var model = new Option<string>("--model", "-m") { Description = "The model file (.zip); it keeps a sample of its latest fit's rows (trainer option ShiftReferenceRows).", Required = true };
        var data = Data("The new rows (CSV or Parquet) with the model's input columns; the label and task-id columns may be missing.");
        var alpha = new Option<double>("--alpha") { Description = "The test's level. Default 0.05.", DefaultValueFactory = _ => 0.05 };
        var rows = new Option<int>("--rows") { Description = "New rows compared (a uniform sample when the file has more). Default 500, at most 2000.", DefaultValueFactory = _ => 500 };
        var seed = new Option<int>("--seed") { Description = "Seeds the row sample and the permutations. Default 0.", DefaultValueFactory = _ => 0 };
        var permutations = new Option<int>("--permutations") { Description = "Permutations of each test (the smallest p-value is 1/(N+1), 2/(N+1) for a classifier: its two tests' smaller p-value doubled). Default 499.", DefaultValueFactory = _ => 499 };
        var command = new System.CommandLine.Command("drift", "Test whether new data has shifted from the rows the model was last fitted on: an MMD two-sample test with a permutation p-value decides, " +
            "a per-feature Kolmogorov-Smirnov test (Holm-adjusted) says where. Exit code 0: no shift; 10: shifted.")
        {
            model, data, alpha, rows, seed, permutations, SchemaFile, Json,
        };
        command.SetAction(parse =>
        {
            var ml = new MLContext(seed: 0);
            string path = parse.GetValue(model)!, dataPath = parse.GetValue(data)!;
            RequireModelFile(path);
            var loaded = ml.Continual().LoadModel(path, out var schema);
            var continual = ContinualCatalog.FindContinualModel(loaded)!;
            var table = Table.Read(dataPath, parse.GetValue(SchemaFile), TaskIdColumns(continual), [continual.LabelColumnName]);
            var prepared = DataPreparation.ForModel(table, loaded, schema, continual, featuresOnly: true);
            var options = new ShiftDetectionOptions { Alpha = parse.GetValue(alpha), MaxRows = parse.GetValue(rows), Seed = parse.GetValue(seed), Permutations = parse.GetValue(permutations) };
            ShiftReport report;
            try
            {
                report = ml.Continual().DetectShift(loaded, prepared.View, options);
            }
            catch (Exception e) when (e is InvalidOperationException or NotSupportedException)
            {
                throw new CliException(ExitCodes.ModelError, $"{path}: {e.Message}");
            }
            catch (ArgumentOutOfRangeException e)
            {
                throw new CliException(ExitCodes.UsageError, e.Message);
            }
            catch (ArgumentException e)
            {
                throw new CliException(ExitCodes.DataError, $"{dataPath}: {e.Message}");
            }
            var json = new JsonObject
            {
                ["command"] = "drift", ["model"] = Path.GetFullPath(path), ["data"] = Path.GetFullPath(dataPath),
                ["shifted"] = report.Shifted, ["pValue"] = Finite(report.PValue), ["alpha"] = report.Alpha, ["mmd2"] = Finite(report.MaximumMeanDiscrepancy),
                ["rows"] = report.Rows, ["referenceRows"] = report.ReferenceRows, ["permutations"] = report.Permutations,
                ["featuresPValue"] = Finite(report.FeaturesPValue),
                ["predictions"] = report.Predictions is { } outputs ? new JsonObject
                {
                    ["test"] = outputs.Test, ["pValue"] = Finite(outputs.PValue), ["effectSize"] = Finite(outputs.EffectSize),
                    ["classes"] = new JsonArray(outputs.Classes.Select(c => (JsonNode)new JsonObject
                    {
                        ["index"] = c.Index, ["name"] = c.Name, ["referenceShare"] = Finite(c.ReferenceShare), ["newShare"] = Finite(c.NewShare),
                    }).ToArray()),
                } : null,
                ["featuresCompared"] = report.FeaturesCompared, ["shiftedFeatureCount"] = report.ShiftedFeatureCount,
                ["features"] = new JsonArray(report.Features.Select(f => (JsonNode)new JsonObject
                {
                    ["index"] = f.Index, ["name"] = f.Name, ["ks"] = Finite(f.KolmogorovSmirnov), ["pValue"] = Finite(f.PValue), ["meanShift"] = Finite(f.MeanShift),
                }).ToArray()),
            };
            Output(parse.GetValue(Json), json, report.ToString());
            return report.Shifted ? ExitCodes.Shifted : ExitCodes.Success;
        });
        return command;
    }

    /// <summary>The columns of <paramref name="schema"/> that <paramref name="model"/> needs to score: each column whose
    /// removal still leaves a schema the model accepts is left out (the label, identifiers, anything unused).</summary>
    private static DataViewSchema ScoringInputs(ITransformer model, DataViewSchema schema)
    {
        var kept = schema.ToList();
        foreach (var column in schema)
        {
            var without = kept.Where(c => c.Name != column.Name).ToList();
            try
            {
                model.GetOutputSchema(SchemaOf(without));
                kept = without;
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or ContinualDataException)
            {
                // needed
            }
        }
        return SchemaOf(kept);
    }

    /// <summary>A view with a schema and no rows: what the converter walks to find the pipeline's steps.</summary>
    private sealed class NoRows(DataViewSchema schema) : IDataView
    {
        public bool CanShuffle => false;
        public DataViewSchema Schema => schema;
        public long? GetRowCount() => 0;
        public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null) => new Cursor(schema);
        public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) => [new Cursor(schema)];

        private sealed class Cursor(DataViewSchema schema) : DataViewRowCursor
        {
            public override DataViewSchema Schema => schema;
            public override long Position => -1;
            public override long Batch => 0;
            public override bool MoveNext() => false;
            public override bool IsColumnActive(DataViewSchema.Column column) => true;
            public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) => throw new InvalidOperationException("No rows.");
            public override ValueGetter<DataViewRowId> GetIdGetter() => throw new InvalidOperationException("No rows.");
        }
    }

    private static DataViewSchema SchemaOf(IEnumerable<DataViewSchema.Column> columns)
    {
        var builder = new DataViewSchema.Builder();
        foreach (var c in columns) builder.AddColumn(c.Name, c.Type, c.Annotations);
        return builder.ToSchema();
    }

    // ---- helpers ----
    private static JsonObject Roles(IEnumerable<ColumnRoleInfo> roles) =>
        new(roles.Select(r => KeyValuePair.Create(r.Name, (JsonNode?)new JsonObject { ["role"] = r.Role.ToString().ToLowerInvariant(), ["reason"] = r.Reason })));

    private static void RequireModelFile(string path)
    {
        if (Directory.Exists(path)) throw new CliException(ExitCodes.ModelError, $"Model file '{path}' is a folder, not a model file.");
        if (!File.Exists(path)) throw new CliException(ExitCodes.ModelError, $"Model file '{path}' does not exist.");
    }

    /// <summary>How many backups an in-place refit keeps (<c>--keep</c>, default 1); refuses --keep without --in-place.</summary>
    private static int RefitBackups(bool replace, string? outPath, int? keep)
    {
        if (replace == (outPath is not null)) throw new CliException(ExitCodes.UsageError, "Give either --out PATH or --in-place.");
        if (keep is not null && !replace) throw new CliException(ExitCodes.UsageError, "--keep applies to --in-place (the backups of the model it replaces).");
        if (keep is < 1) throw new CliException(ExitCodes.UsageError, $"--keep {keep}: keep at least 1 backup.");
        return keep ?? 1;
    }

    private static Func<IDataView, ContinualFitOptions, IContinualModel> NetworkFit(ContinualTrainer estimator, ParseResult parse, string outPath, Func<CancellationToken> token) =>
        (data, fit) => estimator.Fit(data, null, Checkpointed(fit, parse, outPath), token());

    private static Func<IDataView, ContinualFitOptions, IContinualModel> TreesFit(ContinualLightGbmTrainer estimator, Func<CancellationToken> token) =>
        (data, _) => estimator.Fit(data, token());

    /// <summary>What the boosted trees cannot do, refused before anything is read or trained.</summary>
    private static void RefuseForTrees(string? taskColumn, ContinualPredictionKind? kind, bool checkpoints)
    {
        if (taskColumn is not null)
            throw new CliException(ExitCodes.UsageError, "--task-id: lightgbm is one ensemble for every task (no heads); give a network trainer for task-incremental models.");
        if (kind == ContinualPredictionKind.Multiclass)
            throw new CliException(ExitCodes.UsageError, "lightgbm makes binary (a Boolean or two-valued label: --prediction binary) and regression models; give a network trainer for classes.");
        if (checkpoints)
            throw new CliException(ExitCodes.UsageError, "--checkpoint-every and --resume: lightgbm takes no checkpoints (a task's boosting is short and restarts whole).");
    }

    /// <summary>The model's task-id column, read as text identifiers (so numeric ids work and map to the same heads).</summary>
    private static string[] TaskIdColumns(IContinualModel continual) =>
        continual.TaskIdColumnName is string column ? [column] : [];

    private static void ReportRefit(bool json, IContinualModel next, DataPreparation.Prepared prepared, TimeSpan elapsed, string given, string target, string previous, bool backedUp)
    {
        var result = new JsonObject
        {
            ["command"] = "refit", ["model"] = Path.GetFullPath(given), ["file"] = target, ["previous"] = previous,
            ["trainer"] = next.TrainerName, ["tasksSeen"] = next.TasksSeen, ["seconds"] = Math.Round(elapsed.TotalSeconds, 3),
        };
        Output(json, WithRows(result, prepared), $"Refitted {next.TrainerName} on {RowsText(prepared)} in {elapsed.TotalSeconds:F1} s (tasks seen: {next.TasksSeen}); " +
            $"wrote {given}{Beyond(given, target)}" + (backedUp ? $", previous model kept as {previous}." : "."));
    }

    /// <summary>Warns on stderr about rows the library will skip (a missing label), naming how many and why.</summary>
    private static void WarnSkipped(DataPreparation.Prepared prepared, Table table)
    {
        if (prepared.RowsSkipped > 0 && IsWriter)
            Console.Error.WriteLine($"warning: {prepared.RowsSkipped:N0} of {table.Rows:N0} rows of '{table.Source}' are skipped: {prepared.SkipReason}.");
    }

    private static JsonObject WithRows(JsonObject result, DataPreparation.Prepared prepared)
    {
        result["rows"] = prepared.RowsUsed;
        result["rowsSkipped"] = prepared.RowsSkipped;
        result["rowsSkippedReason"] = prepared.SkipReason;
        return result;
    }

    private static string RowsText(DataPreparation.Prepared prepared) =>
        $"{prepared.RowsUsed:N0} rows" + (prepared.RowsSkipped > 0 ? $" ({prepared.RowsSkipped:N0} skipped: {prepared.SkipReason})" : "");

    /// <summary>" (through the link, to X)" when the path given is a symbolic link to another file.</summary>
    private static string Beyond(string given, string resolved) => Path.GetFullPath(given) == resolved ? "" : $" (a link: written to {resolved})";

    /// <summary>After the model file is safely written, the checkpoint that led to it is no longer needed.</summary>
    private static void DeleteCheckpoint(string output)
    {
        string checkpoint = Path.GetFullPath(output) + ".ckpt";
        if (File.Exists(checkpoint)) File.Delete(checkpoint);
    }

    private static ContinualFitOptions Checkpointed(ContinualFitOptions fit, ParseResult parse, string output)
    {
        int every = parse.GetValue(CheckpointEvery);
        if (every < 0) throw new CliException(ExitCodes.UsageError, "--checkpoint-every must be 0 (off) or positive.");
        bool resume = parse.GetValue(Resume);
        string checkpoint = Path.GetFullPath(output) + ".ckpt";
        if (every > 0 || resume)
        {
            fit.CheckpointPath = checkpoint;
            fit.CheckpointEveryEpochs = Math.Max(every, 1);
            fit.Resume = resume;
            fit.DeleteCheckpointOnSuccess = false; // deleted once the model file is written
            if (resume && !File.Exists(checkpoint) && IsWriter) Console.Error.WriteLine($"No checkpoint at {checkpoint}: training the task from the start.");
        }
        return fit;
    }

    /// <summary>True in the process that writes files and reports: the only one, or rank 0 of a data-parallel job under
    /// mpirun (every process trains the same model; see docs/scale-out.md).</summary>
    private static bool IsWriter => ContinualCommunicator.World.Rank == 0;

    /// <summary>Runs a fit with a progress bar on an interactive terminal (plain lines on stderr otherwise); silent in the
    /// processes other than rank 0 of a data-parallel job.</summary>
    private static T WithProgress<T>(bool json, string title, Func<ContinualFitOptions, T> fit)
    {
        if (!IsWriter) return fit(new ContinualFitOptions());
        if (json || Console.IsErrorRedirected || !AnsiConsole.Profile.Capabilities.Interactive)
        {
            bool told = false;
            return fit(new ContinualFitOptions
            {
                Progress = p =>
                {
                    if (p.ResumedFromCheckpoint && !told) { told = true; Console.Error.WriteLine($"{title}: resumed from the checkpoint at epoch {p.Epoch}"); }
                    if (p.EpochCompleted) Console.Error.WriteLine($"{title}: epoch {p.Epoch + 1}/{p.Epochs}, loss {p.Loss:F4}");
                },
            });
        }
        T result = default!;
        AnsiConsole.Progress().AutoClear(false).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var task = context.AddTask(title);
                result = fit(new ContinualFitOptions
                {
                    Progress = p =>
                    {
                        task.MaxValue = p.Epochs * (double)p.StepsPerEpoch;
                        task.Value = p.Epoch * (double)p.StepsPerEpoch + p.Step;
                        if (p.EpochCompleted) task.Description = $"{title}: epoch {p.Epoch + 1}/{p.Epochs}, loss {p.Loss:F4}";
                    },
                });
                task.Value = task.MaxValue;
            });
        return result;
    }

    private static void Output(bool json, JsonObject result, string text)
    {
        if (!IsWriter) return;
        if (json) Console.WriteLine(result.ToJsonString(new JsonSerializerOptions { WriteIndented = false }));
        else Console.WriteLine(text);
    }

    private static JsonNode? Finite(double value) => double.IsFinite(value) ? JsonValue.Create(Math.Round(value, 6)) : null;

    private static string Format(object? value) => value switch
    {
        null => "",
        int[] a => string.Join(",", a),
        double d => d.ToString("R", CultureInfo.InvariantCulture),
        float f => f.ToString("R", CultureInfo.InvariantCulture),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    private static Dictionary<string, string> ParseSettings(string[]? settings)
    {
        var result = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (string s in settings ?? [])
        {
            int eq = s.IndexOf('=');
            if (eq <= 0) throw new CliException(ExitCodes.UsageError, $"--set '{s}': expected Name=Value.");
            result[s[..eq].Trim()] = s[(eq + 1)..].Trim();
        }
        return result;
    }

    private static string[] SplitList(string[]? values) =>
        (values ?? []).SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)).ToArray();

    private static SearchDimension ParseRange(string text)
    {
        int eq = text.IndexOf('=');
        string[] parts = eq > 0 ? text[(eq + 1)..].Split(':') : [];
        if (eq <= 0 || parts.Length < 2
            || !double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out double min)
            || !double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double max) || !(min < max))
            throw new CliException(ExitCodes.UsageError, $"--range '{text}': expected Name=min:max[:log][:int] with min < max.");
        bool log = parts.Skip(2).Contains("log"), integer = parts.Skip(2).Contains("int");
        if (log && min <= 0) throw new CliException(ExitCodes.UsageError, $"--range '{text}': a log range needs min > 0.");
        return new SearchDimension(text[..eq].Trim(), integer ? SearchDimensionKind.Integer : SearchDimensionKind.Real, min, max, log, []);
    }

    private static ContinualPredictionKind? ResolvePrediction(string text, Table table, string label) => text.ToLowerInvariant() switch
    {
        "classification" => ContinualPredictionKind.Multiclass,
        "binary" => ContinualPredictionKind.Binary,
        "regression" => ContinualPredictionKind.Regression,
        "auto" => table.Find(label) is { Kind: ColumnKind.Single, Profile: var profile } && LooksLikeClasses(profile) ? ContinualPredictionKind.Multiclass : null,
        _ => throw new CliException(ExitCodes.UsageError, $"--prediction '{text}': expected classification, binary, regression or auto."),
    };

    /// <summary>A number label with at most 1,000 distinct whole values (from the scan's profile of every row) names classes.</summary>
    private static bool LooksLikeClasses(ColumnProfile profile) =>
        profile.DistinctNumbers.Count is > 0 and <= 1000 && profile.AllWholeNumbers;

    private static TaskStream Benchmark(MLContext ml, string name, int? tasks, int? samples) => name.ToLowerInvariant() switch
    {
        "permuted-mnist" => ml.Continual().Benchmarks.PermutedMnist(tasks ?? 10, samples),
        "rotated-mnist" => ml.Continual().Benchmarks.RotatedMnist(tasks ?? 10, trainSamplesPerTask: samples),
        "split-mnist-task" => ml.Continual().Benchmarks.SplitMnist(ContinualScenario.TaskIncremental, tasks ?? 5, samples),
        "split-mnist-domain" => ml.Continual().Benchmarks.SplitMnist(ContinualScenario.DomainIncremental, tasks ?? 5, samples),
        "split-mnist-class" => ml.Continual().Benchmarks.SplitMnist(ContinualScenario.ClassIncremental, tasks ?? 5, samples),
        "rotating-hyperplane" => ml.Continual().Benchmarks.RotatingHyperplane(tasks ?? 5, samples ?? 2000),
        _ => throw new CliException(ExitCodes.UsageError, $"Unknown benchmark '{name}' (permuted-mnist, rotated-mnist, split-mnist-task, split-mnist-domain, split-mnist-class, rotating-hyperplane)."),
    };
}

/// <summary>The parameters of a command-line sweep: a dictionary filled from <c>--range</c> options.</summary>
public sealed class SweepParameters
{
    public Dictionary<string, object> Values { get; } = new();
}
