using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>Which examples a replay memory keeps when its budget is reached.</summary>
public enum ReplayBufferPolicy
{
    /// <summary>Reservoir sampling (Vitter 1985, algorithm R): after N examples were offered, each of them is in the
    /// buffer with the same probability capacity/N. Needs neither labels nor task ids.</summary>
    Reservoir,
    /// <summary>An equal share of the budget per class seen; within a class, an equal share per task that had it.</summary>
    ClassBalanced,
    /// <summary>An equal share of the budget per task seen; within a task, an equal share per class (Hsu et al. 2018's naive rehearsal).</summary>
    TaskBalanced,
}

/// <summary>How a balanced replay memory picks a task's examples for its share.</summary>
public enum ExemplarSelection
{
    /// <summary>A uniform random sample.</summary>
    Random,
    /// <summary>Herding (Welling 2009, as iCaRL uses it, Rebuffi et al. 2017 algorithm 4): greedily, the examples whose running
    /// mean of (L2-normalised) last-hidden-layer features stays closest to the class mean. Kept in that order, so a shrinking share keeps the best.</summary>
    Herding,
}

/// <summary>
/// A bounded memory of training rows (features, targets, heads) with, per row, the task it came from, its class and
/// its rank within its (task, class) group. Immutable: every update returns a new memory, so copies of a strategy may
/// share one (a failed fit then leaves the previous model's memory as it was). Rows live on the CPU.
/// </summary>
internal sealed class ExampleMemory
{
    public static readonly ExampleMemory Empty = new(null, null, null, [], [], [], 0);

    private ExampleMemory(Tensor? features, Tensor? targets, Tensor? heads, int[] taskOf, int[] classOf, int[] rank, long rowsOffered)
    {
        Features = features;
        Targets = targets;
        Heads = heads;
        TaskOf = taskOf;
        ClassOf = classOf;
        Rank = rank;
        RowsOffered = rowsOffered;
    }

    public Tensor? Features { get; }
    public Tensor? Targets { get; }
    public Tensor? Heads { get; }
    /// <summary>The index of the fit (task) each row came from.</summary>
    public int[] TaskOf { get; }
    /// <summary>Each row's class index, or -1 for regression rows.</summary>
    public int[] ClassOf { get; }
    /// <summary>Each row's rank within its (task, class) group: a shrinking share keeps the lowest ranks.</summary>
    public int[] Rank { get; }
    /// <summary>Rows ever offered to the memory (reservoir sampling's N).</summary>
    public long RowsOffered { get; }
    public int Count => TaskOf.Length;

    /// <summary>The class of each of <paramref name="task"/>'s rows: the target index (multiclass), 0/1 (binary) or -1 (regression).</summary>
    public static int[] ClassesOf(ContinualTaskData task, ContinualPredictionKind kind)
    {
        using var cpu = task.Targets.cpu();
        return kind switch
        {
            ContinualPredictionKind.Multiclass => cpu.data<long>().ToArray().Select(v => (int)v).ToArray(),
            ContinualPredictionKind.Binary => cpu.data<float>().ToArray().Select(v => v > 0.5f ? 1 : 0).ToArray(),
            _ => new int[task.Count].Select(_ => -1).ToArray(),
        };
    }

    /// <summary>Frees the tensors of a memory no one holds any more (a new memory never shares them: <c>Compose</c> copies).</summary>
    public void DisposeTensors()
    {
        Features?.Dispose();
        Targets?.Dispose();
        Heads?.Dispose();
    }

    /// <summary>
    /// The memory after task <paramref name="taskIndex"/>'s rows were offered under <paramref name="policy"/> with
    /// budget <paramref name="capacity"/>. Reservoir: O(rows) draws; balanced: fair shares per (task, class) group,
    /// old groups keep their lowest ranks, the new task's groups are ranked by <paramref name="selection"/>.
    /// Costs O(buffer + task rows) once per task, nothing per training step.
    /// </summary>
    public ExampleMemory Offer(ContinualTaskData task, int taskIndex, int[] classOfRow, ReplayBufferPolicy policy, int capacity,
        ExemplarSelection selection, Random random, Func<Tensor, Tensor>? embed)
    {
        int n = (int)task.Count;
        if (policy == ReplayBufferPolicy.Reservoir)
        {
            var slots = ReservoirSlots(Count, RowsOffered, n, capacity, random);
            return Compose(slots, task, taskIndex, classOfRow, new int[n], RowsOffered + n);
        }

        // Groups: the old ones with their member counts, the new task's by class.
        var oldGroups = new Dictionary<(int Task, int Class), int>();
        for (int i = 0; i < Count; i++) oldGroups[(TaskOf[i], ClassOf[i])] = oldGroups.GetValueOrDefault((TaskOf[i], ClassOf[i])) + 1;
        var newGroups = new SortedDictionary<int, List<int>>();
        for (int i = 0; i < n; i++)
        {
            if (!newGroups.TryGetValue(classOfRow[i], out var rows)) newGroups[classOfRow[i]] = rows = new List<int>();
            rows.Add(i);
        }
        var sizes = new Dictionary<(int Task, int Class), int>(oldGroups);
        foreach (var (c, rows) in newGroups) sizes[(taskIndex, c)] = sizes.GetValueOrDefault((taskIndex, c)) + rows.Count;
        var quota = GroupQuotas(sizes, capacity, policy);

        var result = new List<int>();
        var rankOfNew = new int[n];
        for (int i = 0; i < Count; i++)
            if (Rank[i] < quota[(TaskOf[i], ClassOf[i])]) result.Add(i);
        foreach (var (c, rows) in newGroups)
        {
            // The same task offered twice (never by the loop) would merge groups; the share then goes to the new rows after the old.
            int share = quota[(taskIndex, c)] - Math.Min(oldGroups.GetValueOrDefault((taskIndex, c)), quota[(taskIndex, c)]);
            if (share <= 0) continue;
            int[] chosen = selection == ExemplarSelection.Herding && embed is not null
                ? Herding(task, rows, share, embed)
                : rows.OrderBy(_ => random.Next()).Take(share).ToArray();
            for (int r = 0; r < chosen.Length; r++)
            {
                rankOfNew[chosen[r]] = oldGroups.GetValueOrDefault((taskIndex, c)) + r;
                result.Add(-1 - chosen[r]);
            }
        }
        return Compose(result.ToArray(), task, taskIndex, classOfRow, rankOfNew, RowsOffered + n);
    }

    /// <summary>The memory with the given rows of <paramref name="task"/> appended (GEM's fixed number per task).</summary>
    /// <summary>
    /// GDumb's greedy class-balanced sampler (Prabhu et al. 2020, Algorithm 1), the task's rows offered in order: a row is
    /// stored while there is room; when the memory is full, a row of a class with fewer rows than the largest class replaces
    /// a random row of the largest class (the first such class when several are largest); otherwise it is dropped.
    /// </summary>
    public ExampleMemory Greedy(ContinualTaskData task, int taskIndex, int[] classOfRow, int capacity, Random random)
    {
        var members = new Dictionary<int, List<int>>(); // class → slots (old rows as their index, new rows as −1 − row)
        for (int i = 0; i < Count; i++) (members.TryGetValue(ClassOf[i], out var list) ? list : members[ClassOf[i]] = new()).Add(i);
        int total = Count;
        for (int row = 0; row < classOfRow.Length; row++)
        {
            int c = classOfRow[row];
            if (!members.TryGetValue(c, out var own)) members[c] = own = new();
            if (total < capacity) { own.Add(-1 - row); total++; continue; }
            var largest = members.OrderByDescending(kv => kv.Value.Count).ThenBy(kv => kv.Key).First();
            if (own.Count >= largest.Value.Count) continue;
            largest.Value.RemoveAt(random.Next(largest.Value.Count));
            own.Add(-1 - row);
        }
        int[] slots = members.OrderBy(kv => kv.Key).SelectMany(kv => kv.Value).ToArray();
        return Compose(slots, task, taskIndex, classOfRow, new int[classOfRow.Length], RowsOffered + classOfRow.Length);
    }

    public ExampleMemory Append(ContinualTaskData task, int taskIndex, int[] classOfRow, int[] rows)
    {
        var slots = Enumerable.Range(0, Count).Concat(rows.Select(r => -1 - r)).ToArray();
        var rank = new int[task.Count];
        for (int r = 0; r < rows.Length; r++) rank[rows[r]] = r;
        return Compose(slots, task, taskIndex, classOfRow, rank, RowsOffered + task.Count);
    }

    /// <summary>Reservoir sampling over the new rows (in order): slot i holds old row s (s ≥ 0) or new row −1−s.</summary>
    internal static int[] ReservoirSlots(int oldCount, long offeredBefore, int newCount, int capacity, Random random)
    {
        var slots = new List<int>(Math.Min(capacity, oldCount + newCount));
        for (int i = 0; i < oldCount; i++) slots.Add(i);
        long seen = offeredBefore;
        for (int i = 0; i < newCount; i++)
        {
            seen++;
            if (slots.Count < capacity) slots.Add(-1 - i);
            else
            {
                long j = random.NextInt64(seen); // uniform in [0, seen): the new row replaces slot j with probability capacity/seen
                if (j < capacity) slots[(int)j] = -1 - i;
            }
        }
        return slots.ToArray();
    }

    /// <summary>Each (task, class) group's share of <paramref name="capacity"/>: fair shares at two levels (class then task for
    /// class-balanced, task then class for task-balanced); a group smaller than its share gives the rest to the others.</summary>
    internal static Dictionary<(int Task, int Class), int> GroupQuotas(IReadOnlyDictionary<(int Task, int Class), int> sizes, int capacity, ReplayBufferPolicy policy)
    {
        bool byClass = policy == ReplayBufferPolicy.ClassBalanced;
        var outer = sizes.GroupBy(kv => byClass ? kv.Key.Class : kv.Key.Task).OrderBy(g => g.Key).ToList();
        int[] outerShares = FairShares(capacity, outer.Select(g => g.Sum(kv => kv.Value)).ToArray());
        var quota = new Dictionary<(int, int), int>();
        for (int o = 0; o < outer.Count; o++)
        {
            var inner = outer[o].OrderBy(kv => byClass ? kv.Key.Task : kv.Key.Class).ToList();
            int[] innerShares = FairShares(outerShares[o], inner.Select(kv => kv.Value).ToArray());
            for (int i = 0; i < inner.Count; i++) quota[inner[i].Key] = innerShares[i];
        }
        return quota;
    }

    /// <summary>Water-filling: shares of <paramref name="capacity"/> as equal as possible, none above its group's size;
    /// the remainder goes one by one to the earliest groups that can take it.</summary>
    internal static int[] FairShares(int capacity, int[] sizes)
    {
        var shares = new int[sizes.Length];
        int left = capacity;
        var open = Enumerable.Range(0, sizes.Length).OrderBy(i => sizes[i]).ThenBy(i => i).ToList();
        while (open.Count > 0)
        {
            int level = left / open.Count;
            int smallest = open[0];
            if (sizes[smallest] > level) break;
            shares[smallest] = sizes[smallest];
            left -= sizes[smallest];
            open.RemoveAt(0);
        }
        if (open.Count > 0)
        {
            int level = left / open.Count, extra = left - level * open.Count;
            foreach (int i in open.OrderBy(i => i))
                shares[i] = level + (extra-- > 0 ? 1 : 0);
        }
        return shares;
    }

    /// <summary>iCaRL's herding over <paramref name="rows"/>: <paramref name="count"/> rows in the order chosen.</summary>
    private static int[] Herding(ContinualTaskData task, List<int> rows, int count, Func<Tensor, Tensor> embed)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        Tensor index = tensor(rows.Select(r => (long)r).ToArray()).to(task.Features.device);
        Tensor phi = embed(task.Features.index_select(0, index));
        phi = phi / phi.pow(2).sum(1, keepdim: true).sqrt().clamp_min(1e-12);
        Tensor mean = phi.mean(new long[] { 0 });
        Tensor sum = zeros_like(mean);
        Tensor taken = zeros(rows.Count, dtype: @bool, device: phi.device);
        var chosen = new int[Math.Min(count, rows.Count)];
        for (int k = 0; k < chosen.Length; k++)
        {
            // argmin_i ‖μ − (S + φ_i)/(k+1)‖² = argmax_i φ_iᵀ((k+1)μ − S), as every ‖φ_i‖ = 1: one matrix-vector product per pick.
            Tensor score = phi.mv(mean * (k + 1) - sum).masked_fill(taken, CachedScalars.NegativeInfinity);
            int best = (int)score.argmax().item<long>();
            chosen[k] = rows[best];
            taken[best].fill_(true);
            sum.add_(phi[best]);
        }
        return chosen;
    }

    /// <summary>A memory whose slot i holds this memory's row s (s ≥ 0) or <paramref name="task"/>'s row −1−s, the new
    /// rows in group <paramref name="taskIndex"/>; rows offered grow by the task's rows.</summary>
    public ExampleMemory Compose(int[] slots, ContinualTaskData task, int taskIndex, int[] classOfRow) =>
        Compose(slots, task, taskIndex, classOfRow, new int[classOfRow.Length], RowsOffered + task.Count);

    private ExampleMemory Compose(int[] slots, ContinualTaskData task, int taskIndex, int[] classOfRow, int[] rankOfNew, long rowsOffered)
    {
        using var scope = NewDisposeScope();
        int[] newRows = slots.Where(s => s < 0).Select(s => -1 - s).Distinct().Order().ToArray();
        var positionOfNew = new Dictionary<int, int>();
        for (int i = 0; i < newRows.Length; i++) positionOfNew[newRows[i]] = Count + i;
        long[] order = slots.Select(s => (long)(s >= 0 ? s : positionOfNew[-1 - s])).ToArray();
        Tensor newIndex = tensor(newRows.Select(r => (long)r).ToArray()).to(task.Features.device);

        Tensor Gather(Tensor? old, Tensor fresh)
        {
            Tensor picked = fresh.index_select(0, newIndex).cpu();
            Tensor all = old is null ? picked : cat([old, picked], 0);
            return all.index_select(0, tensor(order)).DetachFromDisposeScope();
        }

        var features = Gather(Features, task.Features);
        var targets = Gather(Targets, task.Targets);
        Tensor? heads = task.Heads is null ? null : Gather(Heads, task.Heads);
        int Pick(int[] old, int slot, Func<int, int> ofNew) => slot >= 0 ? old[slot] : ofNew(-1 - slot);
        return new ExampleMemory(features, targets, heads,
            slots.Select(s => Pick(TaskOf, s, _ => taskIndex)).ToArray(),
            slots.Select(s => Pick(ClassOf, s, r => classOfRow[r])).ToArray(),
            slots.Select(s => Pick(Rank, s, r => rankOfNew[r])).ToArray(),
            rowsOffered);
    }

    public void Save(BinaryWriter writer)
    {
        writer.Write(Count);
        writer.Write(RowsOffered);
        if (Count == 0) return;
        TensorIO.Write(writer, Features!);
        TensorIO.Write(writer, Targets!);
        writer.Write(Heads is not null);
        if (Heads is not null) TensorIO.Write(writer, Heads);
        ModelIO.WriteInts(writer, TaskOf);
        ModelIO.WriteInts(writer, ClassOf);
        ModelIO.WriteInts(writer, Rank);
    }

    /// <summary>Stores the memory under <paramref name="prefix"/> (rows, labels, heads, and each row's task, class and rank).</summary>
    public void Save(ContinualState state, string prefix)
    {
        state.Set(prefix + "rows", Count);
        state.Set(prefix + "offered", RowsOffered);
        if (Count == 0) return;
        state.Set(prefix + "features", Features!);
        state.Set(prefix + "targets", Targets!);
        if (Heads is not null) state.Set(prefix + "heads", Heads);
        using (var t = tensor(TaskOf)) state.Set(prefix + "task", t);
        using (var t = tensor(ClassOf)) state.Set(prefix + "class", t);
        using (var t = tensor(Rank)) state.Set(prefix + "rank", t);
    }

    /// <summary>Reads what <see cref="Save(ContinualState, string)"/> stored, checking that every part holds the same rows.</summary>
    public static ExampleMemory Load(ContinualState state, string prefix)
    {
        int count = state.GetInt32(prefix + "rows", 0, ModelIO.MaxCount);
        long offered = state.GetInt64(prefix + "offered");
        if (offered < count) throw new ContinualModelFormatException($"The memory holds {count} rows but says only {offered} were offered.");
        if (count == 0) return new ExampleMemory(null, null, null, [], [], [], offered);
        var features = state.GetTensor(prefix + "features").DetachFromDisposeScope();
        var targets = state.GetTensor(prefix + "targets").DetachFromDisposeScope();
        var heads = state.TryGetTensor(prefix + "heads")?.DetachFromDisposeScope();
        int[] Ints(string name)
        {
            using var t = state.GetTensor(prefix + name);
            if (t.dtype != ScalarType.Int32 || t.dim() != 1) throw new ContinualModelFormatException($"The memory's '{name}' entry must be a vector of int32.");
            return t.data<int>().ToArray();
        }
        return Checked(features, targets, heads, Ints("task"), Ints("class"), Ints("rank"), offered);
    }

    private static ExampleMemory Checked(Tensor features, Tensor targets, Tensor? heads, int[] taskOf, int[] classOf, int[] rank, long offered)
    {
        int count = taskOf.Length;
        if (features.dim() != 2 || features.shape[0] != count || targets.dim() != 1 || targets.shape[0] != count || (heads is not null && (heads.dim() != 1 || heads.shape[0] != count))
            || classOf.Length != count || rank.Length != count || features.dtype != ScalarType.Float32
            || (heads is not null && heads.dtype != ScalarType.Int64) || targets.dtype is not (ScalarType.Int64 or ScalarType.Float32))
            throw new ContinualModelFormatException($"The memory's parts do not all hold {count} rows of the expected types.");
        return new ExampleMemory(features, targets, heads, taskOf, classOf, rank, offered);
    }

    public static ExampleMemory Load(BinaryReader reader)
    {
        int count = ModelIO.ReadCount(reader, "memory row");
        long offered = reader.ReadInt64();
        if (offered < count) throw new ContinualModelFormatException($"The memory holds {count} rows but says only {offered} were offered.");
        if (count == 0) return new ExampleMemory(null, null, null, [], [], [], offered);
        var features = TensorIO.Read(reader, "memory features");
        var targets = TensorIO.Read(reader, "memory targets");
        var heads = reader.ReadBoolean() ? TensorIO.Read(reader, "memory heads") : null;
        int[] taskOf = ModelIO.ReadInts(reader, "memory task"), classOf = ModelIO.ReadInts(reader, "memory class"), rank = ModelIO.ReadInts(reader, "memory rank");
        if (taskOf.Length != count) throw new ContinualModelFormatException($"The memory's parts do not all hold {count} rows.");
        return Checked(features, targets, heads, taskOf, classOf, rank, offered);
    }

    /// <summary>The memory's rows on <paramref name="device"/>, for sampling during a task.
    /// Copies (never the memory's own tensors), so the caller may dispose them.</summary>
    public ContinualTaskData? ToDevice(Device device) => Count == 0 ? null
        : new ContinualTaskData(Copy(Features!, device), Copy(Targets!, device), Heads is null ? null : Copy(Heads, device));

    private static Tensor Copy(Tensor t, Device device) => t.clone().to(device).DetachFromDisposeScope();
}
