using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>One term of the quadratic penalty: an anchor θ^b and an importance b per parameter.</summary>
internal sealed record PenaltyTerm(ParameterTensors Anchor, ParameterTensors Importance);

/// <summary>
/// The shared penalty of the regularization family: L'(θ) = L(θ) + λ Σ_k Σ_i b_{k,i} (θ_i − θ^b_{k,i})² (its gradient is
/// added in <see cref="AfterBackward"/>). Every method keeps one term (L2, online EWC, SI, MAS, RWalk, SCP) or one per past
/// task (EWC's separate mode); methods differ only in how they estimate b and in what they track during training. The
/// anchors and importances cover every parameter of the network, backbone and heads alike (embedding tables included).
/// </summary>
public abstract class RegularizationPlugin : ContinualPlugin
{
    private protected RegularizationPlugin(double lambda) => Lambda = lambda;

    /// <summary>λ: how strongly to hold on to earlier tasks (0 is fine-tuning). Each method documents its default.</summary>
    public double Lambda { get; set; }

    /// <inheritdoc/>
    public override void Validate()
    {
        if (!(Lambda >= 0) || double.IsInfinity(Lambda)) throw new ArgumentOutOfRangeException(nameof(Lambda), "Option Lambda must be non-negative and finite.");
    }

    /// <summary>Supported: every member keeps one penalty term (EWC's separate mode excepted, which says so), so its state
    /// does not grow with the number of boundaries; each boundary consolidates as a task's end does, on the rows since
    /// the one before.</summary>
    public override string? WhyNotBoundariesInsideFit => null;

    /// <summary>The penalty's terms; replaced (never changed in place) at each consolidation. The plugin owns them (a fit
    /// trains a copy made through the state store), so the terms a consolidation drops are disposed: with boundaries
    /// inside a fit there is one consolidation per boundary, and their native memory must not wait for the finalizers.</summary>
    internal IReadOnlyList<PenaltyTerm> Terms
    {
        get => _terms;
        private protected set
        {
            foreach (var old in _terms)
                if (!value.Contains(old))
                {
                    old.Anchor.Dispose();
                    old.Importance.Dispose();
                }
            _terms = value;
        }
    }

    private IReadOnlyList<PenaltyTerm> _terms = [];

    // Σ_k b_k and 2λ Σ_k b_k θ^b_k, per parameter: the penalty's gradient 2λ Σ_k b_k (θ − θ^b_k) is then
    // 2λ (Σ_k b_k) θ − 2λ Σ_k b_k θ^b_k, two operations per parameter however many terms (EWC's separate mode) there are.
    private ParameterTensors? _importanceSum, _scaledWeightedAnchors;

    /// <inheritdoc/>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        foreach (var term in Terms)
        {
            term.Anchor.AlignTo(context.Network);
            term.Importance.AlignTo(context.Network);
        }
        _importanceSum?.Dispose();
        _scaledWeightedAnchors?.Dispose();
        _importanceSum = _scaledWeightedAnchors = null;
        if (Terms.Count == 0) return;
        using var scope = NewDisposeScope();
        var sums = new Dictionary<string, Tensor>();
        var anchors = new Dictionary<string, Tensor>();
        using (no_grad())
            foreach (var term in Terms)
                foreach (string name in term.Importance.Names)
                {
                    if (!term.Anchor.TryGet(name, out var anchor)) continue;
                    Tensor b = term.Importance[name];
                    sums[name] = sums.TryGetValue(name, out var s) ? s + b : b.clone();
                    Tensor weighted = b * anchor * (float)(2 * Lambda);
                    anchors[name] = anchors.TryGetValue(name, out var a) ? a + weighted : weighted;
                }
        _importanceSum = new ParameterTensors(sums.ToDictionary(kv => kv.Key, kv => kv.Value.DetachFromDisposeScope()));
        _scaledWeightedAnchors = new ParameterTensors(anchors.ToDictionary(kv => kv.Key, kv => kv.Value.DetachFromDisposeScope()));
    }

    /// <summary>
    /// Adds the penalty's exact gradient, ∂/∂θ_i λ Σ_k b_{k,i} (θ_i − θ^b_{k,i})² = 2λ Σ_k b_{k,i} (θ_i − θ^b_{k,i}), to the
    /// gradients, instead of adding the penalty to the loss: the same update, without building an autograd graph over
    /// every parameter at every step (that cost 1.7x FineTune's epoch time on Permuted MNIST; this costs a few percent).
    /// </summary>
    /// <inheritdoc/>
    public override void AfterBackward(ContinualTrainingContext context)
    {
        if (_importanceSum is null || _scaledWeightedAnchors is null || Lambda == 0) return;
        using var _ = no_grad();
        double scale = 2 * Lambda;
        foreach (var (name, parameter) in context.Network.OrderedParameters())
        {
            if (parameter.grad is not Tensor gradient || !_importanceSum.TryGet(name, out var importance)) continue;
            gradient.addcmul_(importance, parameter, value: scale).sub_(_scaledWeightedAnchors[name]);
        }
    }

    /// <summary>λ Σ_k Σ_i b_{k,i} (θ_i − θ^b_{k,i})², or null when there is nothing to hold on to yet.</summary>
    internal Tensor? PenaltyOf(ContinualNetwork network)
    {
        if (Terms.Count == 0 || Lambda == 0) return null;
        Tensor? total = null;
        foreach (var (name, parameter) in network.OrderedParameters())
            foreach (var term in Terms)
            {
                if (!term.Importance.TryGet(name, out var importance) || !term.Anchor.TryGet(name, out var anchor)) continue;
                Tensor difference = parameter - anchor;
                Tensor part = (importance * difference * difference).sum();
                total = total is null ? part : total + part;
            }
        return total is null ? null : total * Lambda;
    }

    /// <inheritdoc/>
    public override void AfterTask(ContinualTrainingContext context)
    {
        using var scope = NewDisposeScope();
        Consolidate(context);
    }

    /// <summary>After a task: estimate this task's importances and set <see cref="Terms"/>.</summary>
    private protected abstract void Consolidate(ContinualTrainingContext context);

    /// <inheritdoc/>
    public override void SaveState(ContinualState state)
    {
        state.Set("terms", Terms.Count);
        for (int k = 0; k < Terms.Count; k++)
        {
            Terms[k].Anchor.Save(state, $"term{k}/anchor/");
            Terms[k].Importance.Save(state, $"term{k}/importance/");
        }
        SaveExtra(state);
    }

    /// <inheritdoc/>
    public override void LoadState(ContinualState state)
    {
        int count = state.GetInt32("terms", 0, 1 << 20);
        var terms = new List<PenaltyTerm>();
        for (int k = 0; k < count; k++)
            terms.Add(new PenaltyTerm(ParameterTensors.Load(state, $"term{k}/anchor/"), ParameterTensors.Load(state, $"term{k}/importance/")));
        Terms = terms;
        LoadExtra(state);
    }

    internal override void LoadLegacyState(BinaryReader reader, int formatVersion)
    {
        int count = ModelIO.ReadCount(reader, "penalty term");
        var terms = new List<PenaltyTerm>();
        for (int i = 0; i < count; i++)
            terms.Add(new PenaltyTerm(ParameterTensors.Read(reader, "anchor"), ParameterTensors.Read(reader, "importance")));
        Terms = terms;
        LoadLegacyExtra(reader);
    }

    /// <summary>State beyond the penalty terms (e.g. RWalk's running Fisher).</summary>
    private protected virtual void SaveExtra(ContinualState state) { }

    private protected virtual void LoadExtra(ContinualState state) { }

    private protected virtual void LoadLegacyExtra(BinaryReader reader) { }

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>
    {
        ["penalty terms"] = Terms.Count,
        ["penalty floats"] = Terms.Sum(t => t.Anchor.ElementCount + t.Importance.ElementCount) + ExtraFloats,
    };

    private protected virtual long ExtraFloats => 0;
}
