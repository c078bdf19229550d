using System.Diagnostics;
using System.Globalization;
using Microsoft.ML;
using Microsoft.ML.Continual;

/// <summary>
/// Shift detection on MNIST: the false-alarm rate of the test at α = 0.05 on two disjoint samples of the same rows (a new
/// random split of the training set per seed), its power on known shifts (permuted pixels, rotations, class-prior
/// changes), and its time, all through the code <c>DetectShift</c> runs (<c>ShiftTest</c>: the MMD permutation test, the
/// per-feature KS family with Holm's correction), and with a model's predicted classes as <c>DetectShift(model, data)</c>
/// tests them (<c>PredictionShiftTest</c>, the two tests' smaller p-value doubled: <c>ContinualCatalog.Compare</c>), the
/// reference drawn from the model's training rows as the model keeps it.
/// </summary>
internal static class DriftBenchmarks
{
    public static void Run(int seeds, int powerSeeds, int rows)
    {
        var (train, test) = MnistData.Load();
        int images = train.Labels.Length;
        var names = Enumerable.Range(0, 784).Select(i => $"pixel{i}").ToArray();
        var options = new ShiftDetectionOptions();
        // As the product runs it: the model trains on one half of the training images (a fixed random half) and the
        // reference is a sample of those rows (what the model keeps); new rows come from the other half, unseen.
        var halves = Shuffled(images, new Random(12345));
        int[] seen = halves[..(images / 2)], unseen = halves[(images / 2)..];
        var model = Classifier(train, seen);
        var outputs = new ContinualCatalog.ModelOutputs(model.Scorer, model.PredictionKind, model.Classes);
        Console.WriteLine($"Shift detection on MNIST: {rows} reference rows (of the model's {seen.Length:N0} training rows) vs {rows} new rows (of the other {unseen.Length:N0}), "
            + $"α = {options.Alpha}, {options.Permutations} permutations; MMD on the features alone, the predicted classes' test alone, and the model's decision (the smaller p-value doubled); KS+Holm locates.");
        Console.WriteLine("| comparison | seeds | rejected: features (MMD) | rate [95% CI] | predicted classes | decision with a model [95% CI] | any feature flagged (KS+Holm) | ms per test |");
        Console.WriteLine("| --- | ---: | ---: | --- | ---: | --- | ---: | ---: |");
        int[] Draw(int[] pool, Random random) { var order = (int[])pool.Clone(); random.Shuffle(order); return order; }

        // Same distribution: training rows of the model against rows of the same set it did not train on.
        Measure("same distribution (training rows vs unseen training-set rows)", seeds, seed =>
        {
            var random = new Random(seed);
            return (Rows(train, Draw(seen, random).Take(rows)), Rows(train, Draw(unseen, random).Take(rows)));
        });
        Measure("training rows vs test rows", Math.Min(seeds, powerSeeds), seed =>
        {
            var random = new Random(seed);
            return (Rows(train, Draw(seen, random).Take(rows)), Rows(test, Shuffled(test.Labels.Length, random).Take(rows)));
        });
        Measure("permuted pixels", powerSeeds, seed =>
        {
            var random = new Random(seed);
            var reference = Draw(seen, random).Take(rows).ToArray();
            var current = Draw(unseen, random).Take(rows).ToArray();
            int[] permutation = Shuffled(784, random);
            return (Rows(train, reference), Rows(train, current, (source, target) => { for (int p = 0; p < 784; p++) target[p] = source[permutation[p]]; }));
        });
        foreach (double angle in new[] { 5.0, 15.0, 45.0 })
        {
            var taps = StreamBuilders.RotationTaps(28, 28, angle);
            Measure($"rotated {angle}°", powerSeeds, seed =>
            {
                var random = new Random(seed);
                return (Rows(train, Draw(seen, random).Take(rows)), Rows(train, Draw(unseen, random).Take(rows), (source, target) => StreamBuilders.Rotate(source, taps, target)));
            });
        }
        foreach (var (label, weightOfLowDigits) in new[] { ("class prior: digits 0-4 twice as likely as 5-9", 2.0), ("class prior: digits 0-4 only", 1e9) })
            Measure(label, powerSeeds, seed =>
            {
                var random = new Random(seed);
                var reference = Draw(seen, random).Take(rows).ToArray();
                // Rejection sampling from the unseen half: a 5-9 digit is kept with probability 1/weight.
                var shifted = Draw(unseen, random).Where(i => train.Labels[i] < 5 || random.NextDouble() < 1 / weightOfLowDigits).Take(rows);
                return (Rows(train, reference), Rows(train, shifted));
            });

        void Measure(string comparison, int count, Func<int, (ShiftReference Reference, ShiftReference Current)> make)
        {
            int rejected = 0, byOutputs = 0, decided = 0, flagged = 0;
            var clock = new Stopwatch();
            for (int seed = 0; seed < count; seed++)
            {
                var (reference, current) = make(seed);
                options.Seed = seed;
                clock.Start();
                var report = ContinualCatalog.Compare(reference, current, names, options, outputs);
                clock.Stop();
                if (report.FeaturesPValue < options.Alpha) rejected++;
                if (report.Predictions!.PValue < options.Alpha) byOutputs++;
                if (report.Shifted) decided++;
                if (report.ShiftedFeatureCount > 0) flagged++;
            }
            var (low, high) = Wilson(rejected, count);
            var (decidedLow, decidedHigh) = Wilson(decided, count);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {comparison} | {count} | {rejected} | {(double)rejected / count:0.000} [{low:0.000}, {high:0.000}] | {(double)byOutputs / count:0.000} | {(double)decided / count:0.000} [{decidedLow:0.000}, {decidedHigh:0.000}] | {(double)flagged / count:0.000} | {clock.Elapsed.TotalMilliseconds / count:0} |"));
        }
    }

    /// <summary>The model whose predictions are tested: FineTune with its defaults (MLP 100-100, Adam, 5 epochs) on the given training images.</summary>
    private static ContinualTransformer Classifier(MnistSplit train, int[] images)
    {
        var ml = new MLContext(seed: 0);
        var data = new ArrayDataView(784, images.Select(i => (int)train.Labels[i]).ToArray(), 10, Enumerable.Range(0, 10).Select(d => d.ToString(CultureInfo.InvariantCulture)).ToArray(),
            "0", (row, destination) => train.Pixels.AsSpan(images[row] * 784, 784).CopyTo(destination));
        return ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options { Seed = 0 }).Fit(data);
    }

    private static int[] Shuffled(int count, Random random)
    {
        var order = Enumerable.Range(0, count).ToArray();
        random.Shuffle(order);
        return order;
    }

    private delegate void ReadOnlySpanAction(ReadOnlySpan<float> source, Span<float> target);

    private static ShiftReference Rows(MnistSplit split, IEnumerable<int> indices, ReadOnlySpanAction? transform = null)
    {
        var list = indices.ToList();
        var values = new float[list.Count * 784];
        for (int i = 0; i < list.Count; i++)
        {
            var source = split.Pixels.AsSpan(list[i] * 784, 784);
            var target = values.AsSpan(i * 784, 784);
            if (transform is null) source.CopyTo(target);
            else transform(source, target);
        }
        return new ShiftReference(values, list.Count, 784);
    }

    /// <summary>The Wilson score interval of a binomial proportion at 95%.</summary>
    private static (double Low, double High) Wilson(int successes, int trials)
    {
        const double z = 1.959964;
        double p = (double)successes / trials, denominator = 1 + z * z / trials;
        double centre = (p + z * z / (2 * trials)) / denominator;
        double half = z * Math.Sqrt(p * (1 - p) / trials + z * z / (4.0 * trials * trials)) / denominator;
        return (Math.Max(0, centre - half), Math.Min(1, centre + half));
    }
}
