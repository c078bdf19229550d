using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>L2: b_i = 1, anchored at the parameters after the previous task.</summary>
internal sealed class L2Strategy(double lambda) : RegularizationStrategy(lambda)
{
    protected override void Consolidate(TrainingContext context) =>
        Terms = [new PenaltyTerm(ParameterTensors.CopyOf(context.Network), ParameterTensors.FullLike(context.Network, 1f))];
}

/// <summary>EWC (separate: one term per task) and online EWC (one running Fisher F ← γF + F_t).</summary>
internal sealed class EwcStrategy(EwcTrainer.Options options) : RegularizationStrategy(options.Lambda)
{
    protected override void Consolidate(TrainingContext context)
    {
        var fisher = ImportanceEstimation.Fisher(context, options.FisherSamples, options.FisherLabels);
        var anchor = ParameterTensors.CopyOf(context.Network);
        if (options.Mode == EwcMode.Separate)
            Terms = [.. Terms, new PenaltyTerm(anchor, fisher)];
        else
        {
            var previous = Terms.Count > 0 ? Terms[0].Importance : null;
            float gamma = (float)options.Gamma;
            Terms = [new PenaltyTerm(anchor, fisher.Combine(previous, (f, old) => old is null ? f.clone() : old * gamma + f))];
        }
    }
}

/// <summary>MAS: Ω ← Ω + E_x|∇‖f(x)‖²|.</summary>
internal sealed class MasStrategy(MasTrainer.Options options) : RegularizationStrategy(options.Lambda)
{
    protected override void Consolidate(TrainingContext context)
    {
        var omega = ImportanceEstimation.OutputSensitivity(context, options.ImportanceSamples);
        var previous = Terms.Count > 0 ? Terms[0].Importance : null;
        Terms = [new PenaltyTerm(ParameterTensors.CopyOf(context.Network), omega.Combine(previous, (w, old) => old is null ? w.clone() : old + w))];
    }
}

/// <summary>SCP: Γ ← γΓ + Γ_t with Γ_t from sliced projections of the output distribution.</summary>
internal sealed class ScpStrategy(ScpTrainer.Options options) : RegularizationStrategy(options.Lambda)
{
    protected override void Consolidate(TrainingContext context)
    {
        var gamma = ImportanceEstimation.SlicedCramer(context, options.ImportanceSamples, options.Projections);
        var previous = Terms.Count > 0 ? Terms[0].Importance : null;
        float decay = (float)options.Gamma;
        Terms = [new PenaltyTerm(ParameterTensors.CopyOf(context.Network), gamma.Combine(previous, (g, old) => old is null ? g.clone() : old * decay + g))];
    }
}

/// <summary>
/// SI: during training ω_i += −g_i Δθ_i (the path integral of the gradient along the parameter trajectory); after the
/// task Ω_i ← Ω_i + ω_i / ((θ_i(end) − θ_i(start))² + ξ).
/// </summary>
internal sealed class SiStrategy(SiTrainer.Options options) : RegularizationStrategy(options.Lambda)
{
    private ParameterTensors? _start, _previous, _omega;

    // The path integral ω runs through the whole task; it is not part of a within-task checkpoint.
    public override bool SupportsCheckpoints => false;

    public override void BeforeTask(TrainingContext context)
    {
        base.BeforeTask(context);
        _start = ParameterTensors.CopyOf(context.Network);
        _previous = ParameterTensors.CopyOf(context.Network);
        _omega = ParameterTensors.ZerosLike(context.Network);
    }

    // g is the gradient the optimizer used (task loss and penalty), as in the reference implementations of
    // Zenke et al. and van de Ven et al.; it is still in .grad after the step, so nothing is copied.
    public override void AfterStep(TrainingContext context)
    {
        using var _ = no_grad();
        foreach (var (name, p) in context.Network.OrderedParameters())
        {
            if (p.grad is not Tensor g) continue;
            Tensor previous = _previous![name];
            _omega![name].addcmul_(g, previous.sub_(p), value: 1); // previous − p = −Δθ, so ω += −g Δθ
            previous.copy_(p);
        }
    }

    protected override void Consolidate(TrainingContext context)
    {
        float damping = (float)options.Damping;
        var end = ParameterTensors.CopyOf(context.Network);
        var contribution = _omega!.Combine(null, (name, w, _) => w / ((end[name] - _start![name]).pow(2) + damping));
        var previous = Terms.Count > 0 ? Terms[0].Importance : null;
        Terms = [new PenaltyTerm(end, contribution.Combine(previous, (c, old) => old is null ? c.clone() : old + c))];
        _start = _previous = _omega = null;
    }
}

/// <summary>
/// RWalk: an online Fisher F ← α g² + (1−α) F updated at every step (EWC++), plus a path score
/// s_i += −g_i Δθ_i / (½ F_i Δθ_i² + ε) (the KL-normalised path integral); after each task the importance is
/// F/max F + s̄, with s̄ ← ½ (s̄ + s_t/max s_t) and s_t clipped at 0.
/// </summary>
internal sealed class RWalkStrategy(RWalkTrainer.Options options) : RegularizationStrategy(options.Lambda)
{
    private ParameterTensors? _fisher, _scores, _previous, _taskScores;
    // Within a window of ScoreUpdateInterval steps: Σ g² (task loss), Σ −g·Δθ per step, θ at the window's start.
    private ParameterTensors? _windowSquares, _windowPath, _windowStart;
    private int _windowSteps;

    // The running Fisher and path scores change at every step; they are not part of a within-task checkpoint.
    public override bool SupportsCheckpoints => false;

    public override void BeforeTask(TrainingContext context)
    {
        base.BeforeTask(context);
        _fisher ??= ParameterTensors.ZerosLike(context.Network);
        _fisher.AlignTo(context.Network);
        _fisher.AddMissing(context.Network); // parameters new in this task (a new head) start with zero Fisher
        _scores?.AlignTo(context.Network);
        _previous = ParameterTensors.CopyOf(context.Network);
        _windowStart = ParameterTensors.CopyOf(context.Network);
        _windowSquares = ParameterTensors.ZerosLike(context.Network);
        _windowPath = ParameterTensors.ZerosLike(context.Network);
        _taskScores = ParameterTensors.ZerosLike(context.Network);
        _windowSteps = 0;
    }

    public override void AfterBackward(TrainingContext context)
    {
        // The Fisher uses the task loss's gradient, before the penalty's is added.
        using (no_grad())
            foreach (var (name, p) in context.Network.OrderedParameters())
                if (p.grad is Tensor g) _windowSquares![name].addcmul_(g, g, CachedScalars.One);
        base.AfterBackward(context);
    }

    public override void AfterStep(TrainingContext context)
    {
        // The path uses the gradient the optimizer used (still in .grad after the step): Σ −g·Δθ, three passes, no allocation.
        using (no_grad())
            foreach (var (name, p) in context.Network.OrderedParameters())
            {
                if (p.grad is not Tensor g) continue;
                Tensor previous = _previous![name];
                previous.sub_(p);                           // −Δθ
                _windowPath![name].addcmul_(g, previous, CachedScalars.One); // += −g·Δθ
                previous.copy_(p);
            }
        if (++_windowSteps == options.ScoreUpdateInterval) CloseWindow(context);
    }

    /// <summary>The end of a window of steps (the authors' code: FISHER_UPDATE_AFTER = 50): the window's path divided by
    /// ½ F (θ − θ_window start)² + ε joins the task's score, then the running Fisher takes the window's mean squared gradient.</summary>
    private void CloseWindow(TrainingContext context)
    {
        float alpha = (float)options.FisherAlpha;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var epsilonTensor = tensor((float)options.Epsilon, device: context.Device);
        foreach (var (name, p) in context.Network.OrderedParameters())
        {
            Tensor start = _windowStart![name];
            Tensor fisher = _fisher![name];
            if (_windowSquares![name].abs().max().item<float>() > 0 || _windowPath![name].abs().max().item<float>() > 0)
            {
                Tensor delta = p - start;
                Tensor denominator = epsilonTensor.addcmul(fisher, delta.square(), value: 0.5f); // ½ F Δθ² + ε
                _taskScores![name].addcdiv_(_windowPath![name], denominator);
                fisher.mul_(1 - alpha).add_(_windowSquares[name], alpha: alpha / _windowSteps);
            }
            start.copy_(p);
            _windowSquares[name].zero_();
            _windowPath![name].zero_();
        }
        _windowSteps = 0;
    }

    protected override void Consolidate(TrainingContext context)
    {
        if (_windowSteps > 0) CloseWindow(context); // the task's last, shorter window
        float scoreMax = Math.Max(_taskScores!.Names.Select(n => _taskScores[n].clamp_min(0).max().item<float>()).DefaultIfEmpty(0).Max(), 1e-12f);
        float fisherMax = Math.Max(_fisher!.Names.Select(n => _fisher[n].max().item<float>()).DefaultIfEmpty(0).Max(), 1e-12f);
        var taskScores = _taskScores.Combine(null, (s, _) => s.clamp_min(0) / scoreMax);
        _scores = taskScores.Combine(_scores, (s, old) => old is null ? s.clone() : (old + s) * 0.5f);
        var importance = _scores.Combine(_fisher, (s, f) => f is null ? s.clone() : s + f / fisherMax);
        Terms = [new PenaltyTerm(ParameterTensors.CopyOf(context.Network), importance)];
        foreach (var spent in new[] { _previous, _taskScores, _windowStart, _windowSquares, _windowPath }) spent?.Dispose();
        _previous = _taskScores = _windowStart = _windowSquares = _windowPath = null;
    }

    protected override void SaveExtra(BinaryWriter writer)
    {
        writer.Write(_fisher is not null);
        _fisher?.Write(writer);
        writer.Write(_scores is not null);
        _scores?.Write(writer);
    }

    protected override void LoadExtra(BinaryReader reader, int formatVersion)
    {
        _fisher = reader.ReadBoolean() ? ParameterTensors.Read(reader, "RWalk Fisher") : null;
        _scores = reader.ReadBoolean() ? ParameterTensors.Read(reader, "RWalk scores") : null;
    }

    protected override long ExtraFloats => (_fisher?.ElementCount ?? 0) + (_scores?.ElementCount ?? 0);
}
