using static TorchSharp.torch;
using AdamOptimizer = TorchSharp.Modules.Adam;
using SgdOptimizer = TorchSharp.Modules.SGD;

namespace Microsoft.ML.Continual;

/// <summary>
/// The optimizer's per-parameter state (Adam's step count and moments, SGD's momentum buffer) as entries of a
/// <see cref="ContinualState"/>, for checkpoints and stream continuations. TorchSharp's own <c>save_state_dict</c> format
/// is not used for what a file brings in: its reader allocates shape arrays from counts it reads, so a damaged or
/// hostile file of the right length could still ask for gigabytes. <see cref="ContinualState"/>'s reader is bounded by
/// the bytes present, and every tensor read here must have its live counterpart's dtype and shape before it is copied in.
/// The options (learning rate, betas, momentum) are not stored: they are the fit's own.
/// </summary>
internal static class OptimizerMoments
{
    /// <summary>Stores the state of <paramref name="optimizer"/> under <paramref name="prefix"/>.</summary>
    public static void Save(ContinualState state, string prefix, optim.Optimizer optimizer)
    {
        var entries = States(optimizer);
        state.Set(prefix + "kind", Kind(optimizer));
        state.Set(prefix + "count", (long)entries.Count);
        for (int i = 0; i < entries.Count; i++)
        {
            string at = $"{prefix}{i}/";
            switch (entries[i])
            {
                case AdamOptimizer.State adam:
                    state.Set(at + "step", adam.step);
                    state.Set(at + "exp_avg", adam.exp_avg);
                    state.Set(at + "exp_avg_sq", adam.exp_avg_sq);
                    if (adam.max_exp_avg_sq is not null) state.Set(at + "max_exp_avg_sq", adam.max_exp_avg_sq);
                    break;
                case SgdOptimizer.State sgd when sgd.momentum_buffer is not null:
                    state.Set(at + "momentum_buffer", sgd.momentum_buffer);
                    break;
            }
        }
    }

    /// <summary>True when <paramref name="state"/> holds an optimizer's state under <paramref name="prefix"/>.</summary>
    public static bool IsIn(ContinualState state, string prefix) => state.Contains(prefix + "kind");

    /// <summary>Copies the state stored under <paramref name="prefix"/> into <paramref name="optimizer"/> (made for the
    /// same parameters). Throws <see cref="ContinualModelFormatException"/>, before changing anything, when the stored
    /// state is for another optimizer, another number of parameters, or a tensor of another dtype or shape.</summary>
    public static void Load(ContinualState state, string prefix, optim.Optimizer optimizer, string what)
    {
        var entries = States(optimizer);
        string kind = state.GetString(prefix + "kind");
        if (kind != Kind(optimizer)) throw new ContinualModelFormatException($"The {what} holds the state of optimizer {kind}; this fit uses {Kind(optimizer)}.");
        long count = state.GetInt64(prefix + "count");
        if (count != entries.Count) throw new ContinualModelFormatException($"The {what} holds optimizer state for {count} parameters; this network has {entries.Count}.");
        var parameters = optimizer.parameters().ToList();
        // Read and check everything first, so that a bad entry leaves the optimizer as it was.
        var loaded = new List<Action>();
        using var scope = NewDisposeScope();
        for (int i = 0; i < entries.Count; i++)
        {
            string at = $"{prefix}{i}/";
            switch (entries[i])
            {
                case AdamOptimizer.State adam:
                {
                    long step = state.GetInt64(at + "step");
                    if (step < 0) throw new ContinualModelFormatException($"The {what} has a negative Adam step count ({step}).");
                    Tensor average = Checked(state, at + "exp_avg", adam.exp_avg, what), squares = Checked(state, at + "exp_avg_sq", adam.exp_avg_sq, what);
                    if (state.Contains(at + "max_exp_avg_sq") != adam.max_exp_avg_sq is not null)
                        throw new ContinualModelFormatException($"The {what} was written with another AMSGrad setting.");
                    Tensor? maximum = adam.max_exp_avg_sq is null ? null : Checked(state, at + "max_exp_avg_sq", adam.max_exp_avg_sq, what);
                    loaded.Add(() =>
                    {
                        adam.step = step;
                        adam.exp_avg.copy_(average);
                        adam.exp_avg_sq.copy_(squares);
                        if (maximum is not null) adam.max_exp_avg_sq!.copy_(maximum);
                    });
                    break;
                }
                case SgdOptimizer.State sgd:
                {
                    Tensor? buffer = state.Contains(at + "momentum_buffer") ? Checked(state, at + "momentum_buffer", parameters[i], what) : null;
                    loaded.Add(() =>
                    {
                        var old = sgd.momentum_buffer;
                        sgd.momentum_buffer = buffer?.detach().clone().DetachFromDisposeScope();
                        old?.Dispose();
                    });
                    break;
                }
            }
        }
        using (no_grad())
            foreach (var apply in loaded) apply();
    }

    private static Tensor Checked(ContinualState state, string name, Tensor like, string what)
    {
        var value = state.GetTensor(name);
        if (value.dtype != like.dtype || !value.shape.SequenceEqual(like.shape))
            throw new ContinualModelFormatException($"The {what}'s optimizer entry '{name}' is {value.dtype} [{string.Join(", ", value.shape)}]; this network's is {like.dtype} [{string.Join(", ", like.shape)}].");
        return value;
    }

    private static string Kind(optim.Optimizer optimizer) => optimizer switch
    {
        AdamOptimizer => "Adam",
        SgdOptimizer => "SGD",
        _ => throw new NotSupportedException($"The optimizer's state cannot be saved for {optimizer.GetType().Name}."),
    };

    private static List<TorchSharp.Modules.OptimizerState> States(optim.Optimizer optimizer) => optimizer switch
    {
        AdamOptimizer adam => adam.state_dict().State,
        SgdOptimizer sgd => sgd.state_dict().State,
        _ => throw new NotSupportedException($"The optimizer's state cannot be saved for {optimizer.GetType().Name}."),
    };
}
