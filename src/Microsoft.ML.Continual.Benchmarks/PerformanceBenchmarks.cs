using System.Diagnostics;
using Microsoft.ML;
using Microsoft.ML.Continual;
using Microsoft.ML.Data;
using TorchSharp;
using static TorchSharp.torch;

/// <summary>
/// The library's overhead against what a user would write by hand: FineTune's training loop against a raw TorchSharp
/// loop over the same in-memory tensors (same MLP, optimizer, batch size, seed), and Transform against a raw batched
/// forward of the same module; plus prediction-engine latency. Side by side in one process, alternating, best of N.
/// </summary>
internal static class PerformanceBenchmarks
{
    private sealed class Row
    {
        [VectorType(784)] public float[] Features { get; set; } = [];
        [KeyType(10)] public uint Label { get; set; }
    }

    private sealed class Scored
    {
        // Only the score: an engine's output class that also names Features copies the 784 inputs back out per row.
        public float[] Score { get; set; } = [];
    }

    public static void Run(int rows, int epochs, int repeats, int[] hidden)
    {
        var ml = new MLContext(seed: 0);
        var task = ml.Continual().Benchmarks.PermutedMnist(numberOfTasks: 1, trainSamplesPerTask: rows, testSamplesPerTask: 10_000)[0];
        var data = ml.Data.CreateEnumerable<Row>(task.Train, reuseRowObject: false).ToList();
        float[] flat = data.SelectMany(r => r.Features).ToArray();
        long[] labels = data.Select(r => (long)r.Label - 1).ToArray();
        set_num_threads(2);
        Console.WriteLine($"MNIST, {rows:N0} rows, MLP 784-{string.Join("-", hidden)}-10, Adam 1e-3, batch 128, {epochs} epoch(s), 2 threads; best of {repeats}");

        // 1. Training throughput: FineTune's loop vs a raw loop (alternating, so load changes hit both).
        double libraryBest = double.MaxValue, rawBest = double.MaxValue;
        for (int r = 0; r < repeats; r++)
        {
            var trainer = ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options
            {
                HiddenLayerSizes = hidden, NumberOfEpochs = epochs, BatchSize = 128, Seed = 0, NumberOfThreads = 2,
            });
            var result = ml.Continual().Run(trainer, new TaskStream("one task", ContinualScenario.DomainIncremental, [task]),
                new ContinualRunOptions { EvaluateBeforeTraining = false });
            libraryBest = Math.Min(libraryBest, result.Tasks[0].MeanEpochSeconds);
            rawBest = Math.Min(rawBest, RawEpochSeconds(flat, labels, hidden, epochs));
        }
        long parameters = 784L * hidden[0] + hidden[0];
        for (int i = 1; i < hidden.Length; i++) parameters += (long)hidden[i - 1] * hidden[i] + hidden[i];
        parameters += hidden[^1] * 10L + 10;
        double flopsPerSample = 6.0 * parameters; // forward 2·P, backward 4·P multiply-adds counted as 2 FLOPs
        double librarySps = rows / libraryBest, rawSps = rows / rawBest;
        Console.WriteLine("| loop | epoch s | samples/s | GFLOP/s (6·P per sample) |");
        Console.WriteLine("| --- | ---: | ---: | ---: |");
        Console.WriteLine($"| raw TorchSharp | {rawBest:F3} | {rawSps:N0} | {rawSps * flopsPerSample / 1e9:F1} |");
        Console.WriteLine($"| FineTune | {libraryBest:F3} | {librarySps:N0} | {librarySps * flopsPerSample / 1e9:F1} |");
        Console.WriteLine($"FineTune / raw throughput: {librarySps / rawSps:F3} (target ≥ 0.95)");

        // 2. Scoring: Transform (cursor over the Score column) vs a raw batched forward of the same weights.
        var model = ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options { HiddenLayerSizes = hidden, NumberOfEpochs = 1, Seed = 0, NumberOfThreads = 2 }).Fit(task.Train);
        var test = ml.Data.CreateEnumerable<Row>(task.Test, reuseRowObject: false).ToList();
        float[] testFlat = test.SelectMany(r => r.Features).ToArray();
        // Transform over two inputs: a view handing out testFlat's rows (one copy per row, as any in-memory IDataView does),
        // the array the raw forwards read; and the stream's own lazy view, which makes each row on every read (the task's
        // permutation applied to a source image: generating the data, which the raw forwards do not do).
        var inMemoryView = new ArrayDataView(784, test.Select(r => (int)r.Label - 1).ToArray(), 10, null, "test",
            (row, destination) => testFlat.AsSpan(row * 784, 784).CopyTo(destination));
        var lazyView = task.Test;
        var network = RawNetworkLike(model, hidden);
        Tensor Own(Tensor block) => model.State.Network.Forward(block, null);
        var inMemory = new Best(); var lazy = new Best(); var lazyRead = new Best();
        var filed = new Best(); var filedOwn = new Best(); var blockwise = new Best();
        // Each pass is a tenth of a second and the machine's noise is larger than that: more alternations than for training.
        int scoringRepeats = Math.Max(9, 3 * repeats);
        for (int r = 0; r < scoringRepeats; r++)
        {
            inMemory.Add(TransformSeconds(model, inMemoryView));
            filed.Add(RawForwardAsFiledSeconds(testFlat, test.Count, network.call));
            // Through the model's own modules (the weights Transform uses): a fresh Sequential's speed changed by up to 3x
            // between processes (its weights' placement), the model's did not.
            filedOwn.Add(RawForwardAsFiledSeconds(testFlat, test.Count, Own));
            blockwise.Add(RawForwardBlockwiseSeconds(testFlat, test.Count, Own));
            lazy.Add(TransformSeconds(model, lazyView));
            lazyRead.Add(ReadSeconds(lazyView));
        }
        int n = test.Count;
        Console.WriteLine($"Scoring {n:N0} rows (best of {scoringRepeats} alternations): Transform over a view of the in-memory array {n / inMemory.Seconds:N0} rows/s; " +
            $"over the stream's lazy view {n / lazy.Seconds:N0} rows/s (reading that view alone: {lazyRead.Seconds:F4} s)");
        Console.WriteLine("| raw batched forward (256-row blocks, softmax, copied out) | rows/s | Transform, in-memory view / it | Transform, lazy view / it |");
        Console.WriteLine("| --- | ---: | ---: | ---: |");
        void Line(string name, Best raw) =>
            Console.WriteLine($"| {name} | {n / raw.Seconds:N0} | {raw.Seconds / inMemory.Seconds:F3} | {raw.Seconds / lazy.Seconds:F3} |");
        Line("as filed: one tensor made from the array in the clock, blocks cloned, a fresh Sequential", filed);
        Line("as filed, through the model's own modules", filedOwn);
        Line("best from the array: each block copied into one reused tensor, the model's own modules", blockwise);
        Console.WriteLine("Target: Transform ≥ 0.9x the raw forward.");
        double engineSeconds = EngineLatency(ml, model, test, scoringRepeats);
        OnnxRuntimeScoring(ml, model, inMemoryView, testFlat, test.Count, scoringRepeats, inMemory.Seconds, blockwise.Seconds, engineSeconds);
        TreesScoring(scoringRepeats);
    }

    private sealed class TreeRow
    {
        [VectorType(20)] public float[] Features { get; set; } = [];
        public bool Label { get; set; }
    }

    private sealed class TreeScored
    {
        public float Score { get; set; }
    }

    /// <summary>5. A boosted-trees model (defaults, 10,000 rows of 20 features, a second task's rounds added) scored on
    /// 10,000 rows, every way on one thread: Transform, LightGBM's own prediction on the encoded rows (the raw forward of
    /// the trees), ONNX Runtime on the exported graph in 256-row blocks, and one row at a time by a prediction engine and
    /// by ONNX Runtime.</summary>
    private static void TreesScoring(int repeats)
    {
        var ml = new MLContext(seed: 0);
        List<TreeRow> Rows(int count, int seed)
        {
            var random = new Random(seed);
            return Enumerable.Range(0, count).Select(_ =>
            {
                var x = Enumerable.Range(0, 20).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
                return new TreeRow { Features = x, Label = x[0] + x[1] * x[2] - 0.5 * x[3] + 0.3 * random.NextDouble() > 0 };
            }).ToList();
        }
        var options = new Microsoft.ML.Continual.Trees.ContinualLightGbmTrainer.Options { Mode = Microsoft.ML.Continual.Trees.ContinualBoostingMode.AddRounds, Seed = 0 };
        var first = ml.Continual().Trainers.LightGbm(options).Fit(ml.Data.LoadFromEnumerable(Rows(10_000, 1)));
        var model = (Microsoft.ML.Continual.Trees.ContinualLightGbmTransformer)ml.Continual().Refit(first, ml.Data.LoadFromEnumerable(Rows(10_000, 2)));
        var test = Rows(10_000, 3);
        var view = ml.Data.LoadFromEnumerable(test);
        float[] flat = test.SelectMany(r => r.Features).ToArray();
        using var file = new MemoryStream();
        ml.Model.ConvertToOnnx(model, view, file, "Score");
        // One thread, as the model's own scorer gives LightGBM.
        using var sessionOptions = new Microsoft.ML.OnnxRuntime.SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 };
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(file.ToArray(), sessionOptions);
        string output = session.OutputMetadata.Keys.Single(k => k.StartsWith("Score", StringComparison.Ordinal));
        float Onnx(int start, int count)
        {
            var tensor = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(flat.AsMemory(start * 20, count * 20), [count, 20]);
            using var results = session.Run([Microsoft.ML.OnnxRuntime.NamedOnnxValue.CreateFromTensor("Features", tensor)], [output]);
            return ((Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>)results[0].Value).Buffer.Span[0];
        }
        var engine = ml.Model.CreatePredictionEngine<TreeRow, TreeScored>(model);
        var margins = new double[256];
        double transform = double.MaxValue, raw = double.MaxValue, onnx = double.MaxValue, engineRow = double.MaxValue, onnxRow = double.MaxValue;
        const int calls = 5000;
        for (int r = 0; r < repeats; r++)
        {
            var clock = Stopwatch.StartNew();
            double sum = 0;
            foreach (var scored in ml.Data.CreateEnumerable<TreeScored>(model.Transform(view), reuseRowObject: true)) sum += scored.Score;
            transform = Math.Min(transform, clock.Elapsed.TotalSeconds);
            clock.Restart();
            for (int start = 0; start < test.Count; start += 256)
            {
                int count = Math.Min(256, test.Count - start);
                model.State.Booster.PredictRaw(flat.AsSpan(start * 20, count * 20), count, 20, margins, threads: 1);
            }
            raw = Math.Min(raw, clock.Elapsed.TotalSeconds);
            clock.Restart();
            for (int start = 0; start < test.Count; start += 256) Onnx(start, Math.Min(256, test.Count - start));
            onnx = Math.Min(onnx, clock.Elapsed.TotalSeconds);
            clock.Restart();
            for (int i = 0; i < calls; i++) engine.Predict(test[i % test.Count]);
            engineRow = Math.Min(engineRow, clock.Elapsed.TotalSeconds / calls);
            clock.Restart();
            for (int i = 0; i < calls; i++) Onnx(i % test.Count, 1);
            onnxRow = Math.Min(onnxRow, clock.Elapsed.TotalSeconds / calls);
        }
        Console.WriteLine($"Boosted trees ({model.TreeCount} trees after 2 tasks, 20 features; best of {repeats}): Transform {test.Count / transform:N0} rows/s, " +
            $"LightGBM's own prediction in 256-row blocks (1 thread) {test.Count / raw:N0} rows/s (Transform / it {raw / transform:F2}), ONNX Runtime on the exported model " +
            $"({file.Length:N0} bytes, 1 thread) {test.Count / onnx:N0} rows/s ({transform / onnx:F2}x Transform); one row: prediction engine {engineRow * 1e6:F1} µs, ONNX Runtime {onnxRow * 1e6:F1} µs");
    }

    /// <summary>4. The same model exported with ml.Model.ConvertToOnnx and scored by ONNX Runtime (2 intra-op threads, as
    /// libtorch here): 256-row blocks from memory, as the raw forward, and one row at a time, as an engine.</summary>
    private static void OnnxRuntimeScoring(MLContext ml, ContinualTransformer model, IDataView testView, float[] testFlat, int rows, int repeats,
        double transformSeconds, double forwardSeconds, double engineSeconds)
    {
        using var file = new MemoryStream();
        ml.Model.ConvertToOnnx(model, testView, file, "Score"); // the label and task id stay graph inputs, unread: only Features is fed
        using var options = new Microsoft.ML.OnnxRuntime.SessionOptions { IntraOpNumThreads = 2, InterOpNumThreads = 1 };
        using var session = new Microsoft.ML.OnnxRuntime.InferenceSession(file.ToArray(), options);
        string input = "Features", output = session.OutputMetadata.Keys.Single(k => k.StartsWith("Score", StringComparison.Ordinal));
        float Run(int start, int count)
        {
            var tensor = new Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>(testFlat.AsMemory(start * 784, count * 784), [count, 784]);
            using var results = session.Run([Microsoft.ML.OnnxRuntime.NamedOnnxValue.CreateFromTensor(input, tensor)], [output]);
            return ((Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>)results[0].Value).Buffer.Span[0];
        }
        for (int i = 0; i < 200; i++) Run(i % rows, 1);
        double batchBest = double.MaxValue, rowBest = double.MaxValue;
        const int calls = 5000;
        for (int r = 0; r < repeats; r++)
        {
            var clock = Stopwatch.StartNew();
            for (int start = 0; start < rows; start += 256) Run(start, Math.Min(256, rows - start));
            batchBest = Math.Min(batchBest, clock.Elapsed.TotalSeconds);
            clock.Restart();
            for (int i = 0; i < calls; i++) Run(i % rows, 1);
            rowBest = Math.Min(rowBest, clock.Elapsed.TotalSeconds / calls);
        }
        Console.WriteLine($"ONNX Runtime on the exported model ({file.Length:N0} bytes, 2 threads): 256-row blocks {rows / batchBest:N0} rows/s " +
            $"({forwardSeconds / batchBest:F2}x the raw forward, {transformSeconds / batchBest:F2}x Transform); one row {rowBest * 1e6:F1} µs " +
            $"({engineSeconds / rowBest:F2}x the prediction engine's speed)");
    }

    /// <summary>3. Prediction-engine latency per row, the network's part of it on each path, and engines on threads.</summary>
    private static double EngineLatency(MLContext ml, ContinualTransformer model, List<Row> test, int repeats)
    {
        const int calls = 5000;
        var engine = ml.Model.CreatePredictionEngine<Row, Scored>(model);
        var outputs = new float[10];
        // Warm: the first few thousand calls of a process run while the JIT is still compiling.
        for (int i = 0; i < calls; i++) { engine.Predict(test[i % test.Count]); model.Scorer.ScoreRow(test[i % test.Count].Features, null, outputs); }
        double engineBest = double.MaxValue, managedBest = double.MaxValue, torchBest = double.MaxValue;
        for (int r = 0; r < repeats; r++)
        {
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < calls; i++) engine.Predict(test[i % test.Count]);
            engineBest = Math.Min(engineBest, clock.Elapsed.TotalSeconds / calls);
            clock.Restart();
            for (int i = 0; i < calls; i++) model.Scorer.ScoreRow(test[i % test.Count].Features, null, outputs);
            managedBest = Math.Min(managedBest, clock.Elapsed.TotalSeconds / calls);
            clock.Restart();
            for (int i = 0; i < calls / 5; i++) model.Scorer.Score(test[i % test.Count].Features, null, 1, outputs);
            torchBest = Math.Min(torchBest, clock.Elapsed.TotalSeconds / (calls / 5));
        }
        Console.WriteLine($"Prediction engine: {engineBest * 1e6:F1} µs per row (target ≤ 15; best of {repeats} x {calls} calls); the network alone: " +
            $"managed kernel {managedBest * 1e6:F1} µs (managed={model.Scorer.ScoresRowsManaged}), libtorch one-row forward (the engine's path before it) {torchBest * 1e6:F1} µs");

        // Engines on threads (one engine per thread, as PredictionEnginePool does): rows/s on 1 and on 2 threads.
        double Throughput(int threads)
        {
            var engines = Enumerable.Range(0, threads).Select(_ => ml.Model.CreatePredictionEngine<Row, Scored>(model)).ToArray();
            var clock = Stopwatch.StartNew();
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
            {
                for (int i = 0; i < calls; i++) engines[t].Predict(test[(i + t * 997) % test.Count]);
            });
            return threads * calls / clock.Elapsed.TotalSeconds;
        }
        double one = 0, two = 0;
        for (int r = 0; r < repeats; r++) { one = Math.Max(one, Throughput(1)); two = Math.Max(two, Throughput(2)); }
        Console.WriteLine($"Engines on threads: 1 thread {one:N0} rows/s, 2 threads {two:N0} rows/s ({two / one:F2}x on {Environment.ProcessorCount} cores)");
        return engineBest;
    }

    /// <summary>The raw loop: the same MLP built with TorchSharp's modules, Adam, shuffled index batches; mean epoch seconds.</summary>
    private static double RawEpochSeconds(float[] flat, long[] labels, int[] hidden, int epochs)
    {
        using var scope = NewDisposeScope();
        manual_seed(0);
        var layers = new List<(string, nn.Module<Tensor, Tensor>)>();
        int previous = 784;
        for (int i = 0; i < hidden.Length; i++) { layers.Add(($"l{i}", nn.Linear(previous, hidden[i]))); layers.Add(($"a{i}", nn.ReLU())); previous = hidden[i]; }
        layers.Add(("out", nn.Linear(previous, 10)));
        var model = nn.Sequential(layers);
        var optimizer = optim.Adam(model.parameters(), 1e-3);
        using var x = tensor(flat, [labels.Length, 784]);
        using var y = tensor(labels);
        using var generator = new Generator(0, CPU);
        var clock = Stopwatch.StartNew();
        for (int epoch = 0; epoch < epochs; epoch++)
        {
            using var order = randperm(labels.Length, generator: generator);
            for (int start = 0; start < labels.Length; start += 128)
            {
                using var batchScope = NewDisposeScope();
                var rows = order.narrow(0, start, Math.Min(128, labels.Length - start));
                optimizer.zero_grad();
                var loss = nn.functional.cross_entropy(model.call(x.index_select(0, rows)), y.index_select(0, rows));
                loss.backward();
                optimizer.step();
            }
        }
        return clock.Elapsed.TotalSeconds / epochs;
    }

    /// <summary>Transform's output read through a cursor over the Score column only, as a scoring job reads it; seconds.</summary>
    private static double TransformSeconds(ContinualTransformer model, IDataView input)
    {
        var clock = Stopwatch.StartNew();
        var scored = model.Transform(input);
        using var cursor = scored.GetRowCursor(scored.Schema.Where(c => c.Name == "Score"));
        var getter = cursor.GetGetter<VBuffer<float>>(cursor.Schema["Score"]);
        VBuffer<float> score = default;
        while (cursor.MoveNext()) getter(ref score);
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>Reading every row's features from a view, and nothing else; seconds.</summary>
    private static double ReadSeconds(IDataView input)
    {
        var clock = Stopwatch.StartNew();
        using var cursor = input.GetRowCursor(input.Schema.Where(c => c.Name == "Features"));
        var getter = cursor.GetGetter<VBuffer<float>>(input.Schema["Features"]);
        VBuffer<float> features = default;
        while (cursor.MoveNext()) getter(ref features);
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>The raw batched forward as the issue measured it: one tensor made from the whole array inside the clock
    /// (its first touch of 31 MB is a large part of the time), 256-row blocks cloned from it, softmax, copied out; seconds.</summary>
    private static double RawForwardAsFiledSeconds(float[] flat, int rows, Func<Tensor, Tensor> forward)
    {
        var clock = Stopwatch.StartNew();
        using (no_grad())
        using (var scope = NewDisposeScope())
        {
            using var all = tensor(flat, [rows, 784]);
            for (int start = 0; start < rows; start += 256)
            {
                using var block = all.narrow(0, start, Math.Min(256, rows - start)).clone();
                using var probabilities = nn.functional.softmax(forward(block), 1);
                _ = probabilities.data<float>().ToArray();
            }
        }
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>The fastest raw forward from a managed array found: each 256-row block copied into one reused libtorch
    /// tensor (no large first touch), softmax, the probabilities copied into one reused array; seconds.</summary>
    private static unsafe double RawForwardBlockwiseSeconds(float[] flat, int rows, Func<Tensor, Tensor> forward)
    {
        var probabilitiesOut = new float[256 * 10];
        var clock = Stopwatch.StartNew();
        using (no_grad())
        {
            using var block = empty(256, 784);
            var blockMemory = new Span<float>((void*)block.storage<float>().data_ptr(), 256 * 784);
            for (int start = 0; start < rows; start += 256)
            {
                using var scope = NewDisposeScope();
                int count = Math.Min(256, rows - start);
                flat.AsSpan(start * 784, count * 784).CopyTo(blockMemory);
                var probabilities = nn.functional.softmax(forward(count == 256 ? block : block.narrow(0, 0, count)), 1);
                probabilities.data<float>().CopyTo(probabilitiesOut, 0);
            }
        }
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>The best (smallest) of a series of timings.</summary>
    private sealed class Best
    {
        public double Seconds { get; private set; } = double.MaxValue;
        public void Add(double seconds) => Seconds = Math.Min(Seconds, seconds);
    }

    /// <summary>A plain Sequential with the trained model's weights (read through its saved form), for the raw forward.</summary>
    private static nn.Module<Tensor, Tensor> RawNetworkLike(ContinualTransformer model, int[] hidden)
    {
        var layers = new List<(string, nn.Module<Tensor, Tensor>)>();
        int previous = 784;
        for (int i = 0; i < hidden.Length; i++) { layers.Add(($"l{i}", nn.Linear(previous, hidden[i]))); layers.Add(($"a{i}", nn.ReLU())); previous = hidden[i]; }
        layers.Add(("out", nn.Linear(previous, 10)));
        var network = nn.Sequential(layers);
        network.eval();
        return network; // same shape and cost; the weights' values do not change the time of a dense forward
    }
}
