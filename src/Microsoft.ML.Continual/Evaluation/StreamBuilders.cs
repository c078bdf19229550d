namespace Microsoft.ML.Continual;

/// <summary>Builds the tasks of permuted, rotated, split and drifting streams over data held in memory.</summary>
internal static class StreamBuilders
{
    public static TaskStream Permuted(LabeledArrays train, LabeledArrays test, string name, int tasks, int? trainSamples, int? testSamples, int seed)
    {
        CheckTasks(tasks);
        var list = new List<ContinualTask>();
        for (int t = 0; t < tasks; t++)
        {
            int[] permutation = Permutation(train.FeatureSize, new Random(seed + t));
            IDataView Make(LabeledArrays source, int? samples, int salt)
            {
                int[] rows = Sample(source.Count, samples, new Random(SeedOf(seed, t, salt)));
                return new ArrayDataView(source.FeatureSize, rows.Select(r => source.Classes[r]).ToArray(), source.ClassNames.Length, source.ClassNames, TaskName(t),
                    (row, destination) =>
                    {
                        var features = source.Row(rows[row]);
                        for (int i = 0; i < permutation.Length; i++) destination[i] = features[permutation[i]];
                    });
            }
            list.Add(new ContinualTask(TaskName(t), Make(train, trainSamples, 1), Make(test, testSamples, 2)));
        }
        return new TaskStream($"{name} ({tasks} tasks)", ContinualScenario.DomainIncremental, list);
    }

    public static TaskStream Rotated(LabeledArrays train, LabeledArrays test, string name, int width, int height, int tasks,
        double minAngle, double maxAngle, int? trainSamples, int? testSamples, int seed) =>
        Rotated(train, test, name, width, height, Enumerable.Range(0, tasks).Select(t => minAngle + (maxAngle - minAngle) * t / tasks).ToList(),
            trainSamples, testSamples, seed, $"{minAngle:0.#}°–{maxAngle:0.#}°");

    /// <summary>One task per angle of <paramref name="angles"/>, in order.</summary>
    public static TaskStream Rotated(LabeledArrays train, LabeledArrays test, string name, int width, int height, IReadOnlyList<double> angles,
        int? trainSamples, int? testSamples, int seed, string? range = null)
    {
        int tasks = angles.Count;
        CheckTasks(tasks);
        if (angles.Any(a => !double.IsFinite(a))) throw new ArgumentOutOfRangeException(nameof(angles), "Every angle must be a finite number of degrees.");
        if (width * height != train.FeatureSize)
            throw new ContinualDataException(null, $"The features hold {train.FeatureSize} values, not a {width}x{height} image.");
        var list = new List<ContinualTask>();
        for (int t = 0; t < tasks; t++)
        {
            double angle = angles[t];
            var taps = RotationTaps(width, height, angle);
            IDataView Make(LabeledArrays source, int? samples, int salt)
            {
                int[] rows = Sample(source.Count, samples, new Random(SeedOf(seed, t, salt)));
                return new ArrayDataView(source.FeatureSize, rows.Select(r => source.Classes[r]).ToArray(), source.ClassNames.Length, source.ClassNames, TaskName(t),
                    (row, destination) => Rotate(source.Row(rows[row]), taps, destination));
            }
            list.Add(new ContinualTask($"{TaskName(t)} ({angle:0.#}°)", Make(train, trainSamples, 1), Make(test, testSamples, 2)));
        }
        return new TaskStream($"{name} ({tasks} tasks, {range ?? "angles " + string.Join(", ", angles.Select(a => a.ToString("0.#", System.Globalization.CultureInfo.InvariantCulture)))})", ContinualScenario.DomainIncremental, list);
    }

    public static TaskStream Split(LabeledArrays train, LabeledArrays test, string name, ContinualScenario scenario, IReadOnlyList<int[]> groups,
        int? trainSamples, int? testSamples, int seed)
    {
        CheckTasks(groups.Count);
        int classCount = train.ClassNames.Length;
        var seen = new HashSet<int>();
        foreach (int c in groups.SelectMany(g => g))
        {
            if (c < 0 || c >= classCount) throw new ArgumentOutOfRangeException(nameof(groups), $"Class {c} is not among the data's {classCount} classes.");
            if (!seen.Add(c)) throw new ArgumentException($"Class {c} is in more than one group.", nameof(groups));
        }
        int width = groups.Max(g => g.Length);
        var list = new List<ContinualTask>();
        for (int t = 0; t < groups.Count; t++)
        {
            int[] group = groups[t];
            IDataView Make(LabeledArrays source, int? samples, int salt)
            {
                int[] candidates = Enumerable.Range(0, source.Count).Where(r => group.Contains(source.Classes[r])).ToArray();
                int[] rows = Sample(candidates.Length, samples, new Random(SeedOf(seed, t, salt))).Select(i => candidates[i]).ToArray();
                // Domain-incremental: the class's position in its group is the label (0..k-1), shared by every task.
                int[] labels = rows.Select(r => scenario == ContinualScenario.DomainIncremental ? Array.IndexOf(group, source.Classes[r]) : source.Classes[r]).ToArray();
                string[]? names = scenario == ContinualScenario.DomainIncremental ? Enumerable.Range(0, width).Select(i => $"position {i}").ToArray() : source.ClassNames;
                return new ArrayDataView(source.FeatureSize, labels, names!.Length, names, TaskName(t),
                    (row, destination) => source.Row(rows[row]).CopyTo(destination));
            }
            string groupText = string.Join("/", group.Select(c => train.ClassNames[c]));
            list.Add(new ContinualTask($"{TaskName(t)} ({groupText})", Make(train, trainSamples, 1), Make(test, testSamples, 2)));
        }
        string scenarioText = scenario switch
        {
            ContinualScenario.TaskIncremental => "task-IL",
            ContinualScenario.DomainIncremental => "domain-IL",
            _ => "class-IL",
        };
        return new TaskStream($"{name} ({groups.Count} tasks, {scenarioText})", scenario, list);
    }

    /// <summary>Split tasks with fuzzy boundaries (<see cref="TaskStream.FuzzySplit"/>): the stream of every group's rows,
    /// blended over <paramref name="fuzzyBatches"/> batches each side of a boundary, cut into one stretch per group.</summary>
    public static TaskStream FuzzySplit(LabeledArrays train, LabeledArrays test, string name, ContinualScenario scenario, IReadOnlyList<int[]> groups,
        int fuzzyBatches, int batchSize, int? trainSamples, int? testSamples, int seed)
    {
        if (scenario == ContinualScenario.TaskIncremental)
            throw new ArgumentException("Fuzzy boundaries are for domain- and class-incremental streams: a task-incremental row needs its own task id, and a blended stretch holds rows of two tasks.", nameof(scenario));
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), "The stream's batch size must be at least 1.");
        var sharp = Split(train, test, name, scenario, groups, trainSamples, testSamples, seed);
        // Each group's rows: the sharp stream's sample of it (the same rows), shuffled (salt 3), then blended.
        var pools = new List<Queue<(int Source, int Label)>>();
        for (int t = 0; t < groups.Count; t++)
        {
            int[] group = groups[t];
            int[] candidates = Enumerable.Range(0, train.Count).Where(r => group.Contains(train.Classes[r])).ToArray();
            int[] rows = Sample(candidates.Length, trainSamples, new Random(SeedOf(seed, t, 1))).Select(i => candidates[i]).ToArray();
            new Random(SeedOf(seed, t, 3)).Shuffle(rows);
            pools.Add(new Queue<(int, int)>(rows.Select(r => (r, scenario == ContinualScenario.DomainIncremental ? Array.IndexOf(group, train.Classes[r]) : train.Classes[r]))));
        }
        int batchesPerGroup = pools.Min(p => p.Count) / batchSize;
        if (batchesPerGroup < 2)
            throw new ArgumentOutOfRangeException(nameof(batchSize), $"Each group needs at least two batches of {batchSize} rows for a blend; the smallest has {pools.Min(p => p.Count)} rows.");
        if (fuzzyBatches < 1 || fuzzyBatches > batchesPerGroup / 2)
            throw new ArgumentOutOfRangeException(nameof(fuzzyBatches), $"Option fuzzyBatches must be in [1, {batchesPerGroup / 2}]: each group fills {batchesPerGroup} batches of {batchSize} rows, and a blend takes F of them on each side of a boundary.");
        var draws = new Random(SeedOf(seed, groups.Count, 4));
        var stretches = Enumerable.Range(0, groups.Count).Select(_ => new List<(int Source, int Label)>()).ToList();
        for (int batch = 0; batch < batchesPerGroup * groups.Count; batch++)
        {
            int home = batch / batchesPerGroup;
            for (int i = 0; i < batchSize; i++)
            {
                int group = BlendedGroup(batch, batchesPerGroup, fuzzyBatches, groups.Count, draws.NextDouble());
                var pool = pools[group].Count > 0 ? pools[group] : pools[home]; // the other side ran dry: stay at home
                if (pool.Count > 0) stretches[home].Add(pool.Dequeue());
            }
        }
        var tasks = new List<ContinualTask>();
        for (int t = 0; t < groups.Count; t++)
        {
            var rows = stretches[t];
            string[] classNames = scenario == ContinualScenario.DomainIncremental
                ? Enumerable.Range(0, groups.Max(g => g.Length)).Select(i => $"position {i}").ToArray() : train.ClassNames;
            var view = new ArrayDataView(train.FeatureSize, rows.Select(r => r.Label).ToArray(), classNames.Length, classNames, TaskName(t),
                (row, destination) => train.Row(rows[row].Source).CopyTo(destination));
            tasks.Add(new ContinualTask($"{sharp[t].Name}, fuzzy", view, sharp[t].Test));
        }
        return new TaskStream($"{sharp.Name[..^1]}, fuzzy boundaries over {fuzzyBatches} batches of {batchSize})", scenario, tasks);
    }

    /// <summary>The group a row of batch <paramref name="batch"/> comes from: its stretch's group, except within
    /// <paramref name="fuzzy"/> batches of a boundary, where the later group's probability rises linearly over the 2F
    /// batches around it ((i + ½) / 2F for the i-th), as van de Ven's <c>_linear_line</c>.</summary>
    internal static int BlendedGroup(int batch, int batchesPerGroup, int fuzzy, int groupCount, double uniform)
    {
        int home = batch / batchesPerGroup, offset = batch % batchesPerGroup;
        if (home + 1 < groupCount && offset >= batchesPerGroup - fuzzy)
        {
            double later = (offset - (batchesPerGroup - fuzzy) + 0.5) / (2.0 * fuzzy);
            return uniform < later ? home + 1 : home;
        }
        if (home > 0 && offset < fuzzy)
        {
            double later = (offset + fuzzy + 0.5) / (2.0 * fuzzy);
            return uniform < later ? home : home - 1;
        }
        return home;
    }

    /// <summary>
    /// A rotating hyperplane (Hulten et al. 2001): x uniform in [0,1]^d, label 1 when Σ w_i (x_i − ½) &gt; 0; each task turns
    /// w by π/T, so the concept drifts while the inputs do not. A fraction of labels is flipped as noise.
    /// </summary>
    public static TaskStream RotatingHyperplane(int tasks, int trainRows, int testRows, int dimensions, double noise, int seed)
    {
        CheckTasks(tasks);
        if (dimensions < 2) throw new ArgumentOutOfRangeException(nameof(dimensions), "At least 2 dimensions are needed.");
        var list = new List<ContinualTask>();
        string[] names = ["negative", "positive"];
        for (int t = 0; t < tasks; t++)
        {
            double theta = Math.PI * t / tasks;
            double[] w = Enumerable.Range(0, dimensions).Select(i => Math.Cos(theta + 2 * Math.PI * i / dimensions)).ToArray();
            IDataView Make(int rows, int salt)
            {
                var random = new Random(SeedOf(seed, t, salt));
                var features = new float[rows * dimensions];
                var labels = new int[rows];
                for (int r = 0; r < rows; r++)
                {
                    double s = 0;
                    for (int i = 0; i < dimensions; i++)
                    {
                        float x = (float)random.NextDouble();
                        features[r * dimensions + i] = x;
                        s += w[i] * (x - 0.5);
                    }
                    labels[r] = (s > 0) ^ (random.NextDouble() < noise) ? 1 : 0;
                }
                return new ArrayDataView(dimensions, labels, 2, names, TaskName(t),
                    (row, destination) => features.AsSpan(row * dimensions, dimensions).CopyTo(destination));
            }
            list.Add(new ContinualTask($"{TaskName(t)} ({theta * 180 / Math.PI:0.#}°)", Make(trainRows, 1), Make(testRows, 2)));
        }
        return new TaskStream($"Rotating hyperplane ({tasks} tasks, {dimensions} features)", ContinualScenario.DomainIncremental, list);
    }

    public static string TaskName(int t) => $"task{t + 1}";

    /// <summary>A seed derived from several numbers, the same in every process (HashCode.Combine is randomised per process).</summary>
    internal static int SeedOf(int a, int b, int c)
    {
        ulong h = 1469598103934665603UL;
        foreach (int v in new[] { a, b, c }) h = (h ^ (uint)v) * 1099511628211UL;
        return (int)(h ^ (h >> 32)) & int.MaxValue;
    }

    private static void CheckTasks(int tasks)
    {
        if (tasks < 1) throw new ArgumentOutOfRangeException(nameof(tasks), "A stream needs at least one task.");
    }

    /// <summary>
    /// MNIST-360 (Buzzega et al. 2020, §5 and Mammoth's <c>datasets/mnist_360.py</c>): a task-free stream of the digits 0 to 8
    /// in which two neighbouring digits are seen at a time, (0,1), (1,2), ..., (7,8), (8,0), three rounds (27 segments),
    /// while every digit turns through 360° over the stream. Digit j's training images are cut into six chunks of
    /// ⌊n_j / 6⌋ + 1 (the sixth holds the rest; one chunk per appearance); its k-th image drawn is rotated by
    /// (j − 1)·60° + k·360°/n_j. Within a segment, each batch of <paramref name="batchSize"/> takes
    /// round(r_a / (r_a + r_b) · batchSize) rows of the first digit and the rest of the second (r: the rows left in their
    /// chunks); the segment ends when a chunk runs out, its last batch may be short and what the other chunk has left is
    /// not used (as Mammoth's), so a trainer's batches of the same size drift out of step with the segments' after the
    /// first. The test rows are MNIST's test images of 0 to 8, digit j's k-th rotated by k·360°/m_j. Where Mammoth draws
    /// each training image from its chunk at random with replacement, this draws each at most once, in a seeded order.
    /// </summary>
    public static TaskStream Mnist360(LabeledArrays train, LabeledArrays test, int width, int height, int batchSize, int seed)
    {
        if (batchSize < 1) throw new ArgumentOutOfRangeException(nameof(batchSize), "The stream's batch size must be at least 1.");
        const int digits = 9, rounds = 3, chunks = 6;
        int Digit(LabeledArrays source, int i) => int.Parse(source.ClassNames[source.Classes[i]], System.Globalization.CultureInfo.InvariantCulture);
        var random = new Random(seed);
        var byDigit = Enumerable.Range(0, digits).Select(d => Enumerable.Range(0, train.Count).Where(i => Digit(train, i) == d).ToArray()).ToArray();
        var chunked = byDigit.Select(rows =>
        {
            int size = rows.Length / chunks + 1;
            return Enumerable.Range(0, chunks).Select(c => rows.Skip(c * size).Take(size).ToArray()).Select(chunk => { random.Shuffle(chunk); return new Queue<int>(chunk); }).ToArray();
        }).ToArray();
        var nextChunk = new int[digits];
        var drawn = new int[digits];
        var sources = new List<int>();
        var angles = new List<double>();
        void Draw(int digit, Queue<int> chunk)
        {
            sources.Add(chunk.Dequeue());
            angles.Add((digit - 1) * 60.0 + drawn[digit]++ * 360.0 / byDigit[digit].Length);
        }
        for (int round = 0; round < rounds; round++)
            for (int first = 0; first < digits; first++)
            {
                int second = (first + 1) % digits;
                Queue<int> a = chunked[first][nextChunk[first]++], b = chunked[second][nextChunk[second]++];
                while (a.Count > 0 && b.Count > 0)
                {
                    int fromA = (int)Math.Round((double)a.Count / (a.Count + b.Count) * batchSize, MidpointRounding.ToEven);
                    for (int i = 0; i < fromA && a.Count > 0; i++) Draw(first, a);
                    for (int i = 0; i < batchSize - fromA && b.Count > 0; i++) Draw(second, b);
                }
            }
        var testRows = Enumerable.Range(0, digits).SelectMany(d => Enumerable.Range(0, test.Count).Where(i => Digit(test, i) == d)).ToArray();
        var testAngles = new double[testRows.Length];
        for (int d = 0, at = 0; d < digits; d++)
        {
            int count = testRows.Count(i => Digit(test, i) == d);
            for (int k = 0; k < count; k++) testAngles[at++] = k * 360.0 / count;
        }
        ArrayDataView View(LabeledArrays source, int[] rows, double[] rowAngles) =>
            new(source.FeatureSize, rows.Select(r => source.Classes[r]).ToArray(), source.ClassNames.Length, source.ClassNames, "stream",
                (row, destination) => Rotate(source.Row(rows[row]), RotationTaps(width, height, rowAngles[row]), destination));
        var task = new ContinualTask("MNIST-360", View(train, sources.ToArray(), angles.ToArray()), View(test, testRows, testAngles));
        return new TaskStream("MNIST-360", ContinualScenario.ClassIncremental, [task]);
    }

    internal static int[] Permutation(int n, Random random)
    {
        int[] p = Enumerable.Range(0, n).ToArray();
        random.Shuffle(p);
        return p;
    }

    /// <summary>Row indices: all in order when <paramref name="samples"/> is null, else a seeded sample without replacement.</summary>
    internal static int[] Sample(int count, int? samples, Random random)
    {
        if (samples is null || samples >= count) return Enumerable.Range(0, count).ToArray();
        if (samples < 1) throw new ArgumentOutOfRangeException(nameof(samples), "At least one sample per task is needed.");
        int[] all = Enumerable.Range(0, count).ToArray();
        random.Shuffle(all);
        return all.Take(samples.Value).ToArray();
    }

    /// <summary>For each output pixel, the four source pixels and weights of a bilinear rotation about the centre.</summary>
    internal static (int[] Index, float[] Weight) RotationTaps(int width, int height, double degrees)
    {
        double a = degrees * Math.PI / 180, cos = Math.Cos(a), sin = Math.Sin(a);
        double cx = (width - 1) / 2.0, cy = (height - 1) / 2.0;
        var index = new int[width * height * 4];
        var weight = new float[width * height * 4];
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
            {
                // Inverse mapping: where in the source does this output pixel come from?
                double sx = cos * (x - cx) + sin * (y - cy) + cx, sy = -sin * (x - cx) + cos * (y - cy) + cy;
                int x0 = (int)Math.Floor(sx), y0 = (int)Math.Floor(sy);
                double fx = sx - x0, fy = sy - y0;
                int o = (y * width + x) * 4;
                (int, int, double)[] corners = [(x0, y0, (1 - fx) * (1 - fy)), (x0 + 1, y0, fx * (1 - fy)), (x0, y0 + 1, (1 - fx) * fy), (x0 + 1, y0 + 1, fx * fy)];
                for (int k = 0; k < 4; k++)
                {
                    var (px, py, w) = corners[k];
                    bool inside = px >= 0 && px < width && py >= 0 && py < height;
                    index[o + k] = inside ? py * width + px : 0;
                    weight[o + k] = inside ? (float)w : 0f;
                }
            }
        return (index, weight);
    }

    internal static void Rotate(ReadOnlySpan<float> source, (int[] Index, float[] Weight) taps, Span<float> destination)
    {
        for (int p = 0; p < destination.Length; p++)
        {
            int o = p * 4;
            destination[p] = source[taps.Index[o]] * taps.Weight[o] + source[taps.Index[o + 1]] * taps.Weight[o + 1]
                           + source[taps.Index[o + 2]] * taps.Weight[o + 2] + source[taps.Index[o + 3]] * taps.Weight[o + 3];
        }
    }
}
