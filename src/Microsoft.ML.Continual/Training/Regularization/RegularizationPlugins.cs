using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>L2 (<see cref="L2Trainer"/>): b_i = 1, anchored at the parameters after the previous task: L'(θ) = L_t(θ) + λ Σ_i (θ_i − θ_i^{t−1})².</summary>
public sealed class L2Plugin : RegularizationPlugin
{
    /// <summary>Creates the plugin with λ = 0.01 (<see cref="L2Trainer.Options"/>' default).</summary>
    public L2Plugin() : base(0.01) { }

    private protected override void Consolidate(ContinualTrainingContext context) =>
        Terms = [new PenaltyTerm(ParameterTensors.CopyOf(context.Network), ParameterTensors.FullLike(context.Network, 1f))];
}

/// <summary>EWC (<see cref="EwcTrainer"/>, whose remarks give the equations): separate (one term per task) or online (one
/// running Fisher F ← γF + F_t, Schwarz et al. 2018), F the per-sample Fisher information.</summary>
public sealed class EwcPlugin : RegularizationPlugin
{
    /// <summary>Creates the plugin with <see cref="EwcTrainer.Options"/>' defaults (λ = 100, separate mode).</summary>
    public EwcPlugin() : base(100) { }

    /// <summary>Separate (one term per task, the default) or online (one running Fisher).</summary>
    public EwcMode Mode { get; set; } = EwcMode.Separate;

    /// <summary>Online mode's decay γ of the running Fisher, in [0, 1]. Default 1.</summary>
    public double Gamma { get; set; } = 1;

    /// <summary>Rows per task used to estimate the Fisher (drawn with the task's seed); null: all rows. Default 1,000.</summary>
    public int? FisherSamples { get; set; } = 1000;

    /// <summary>True labels (the empirical Fisher, the default) or labels sampled from the model.</summary>
    public FisherLabels FisherLabels { get; set; } = FisherLabels.Empirical;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (!(Gamma >= 0 && Gamma <= 1)) throw new ArgumentOutOfRangeException(nameof(Gamma), "Option Gamma must be in [0, 1].");
        if (FisherSamples is < 1) throw new ArgumentOutOfRangeException(nameof(FisherSamples), "Option FisherSamples must be null or positive.");
    }

    /// <summary>In <see cref="EwcMode.Separate"/> mode EWC keeps a penalty term per consolidation, which would grow
    /// with every boundary inside a fit; online EWC keeps one.</summary>
    public override string? WhyNotBoundariesInsideFit => Mode == EwcMode.Separate
        ? "its Separate mode keeps one penalty term per consolidation, so its state would grow with every boundary; set Mode = Online"
        : null;

    private protected override void Consolidate(ContinualTrainingContext context)
    {
        var fisher = ImportanceEstimation.Fisher(context, FisherSamples, FisherLabels);
        var anchor = ParameterTensors.CopyOf(context.Network);
        if (Mode == EwcMode.Separate)
            Terms = [.. Terms, new PenaltyTerm(anchor, fisher)];
        else
        {
            var previous = Terms.Count > 0 ? Terms[0].Importance : null;
            float gamma = (float)Gamma;
            Terms = [new PenaltyTerm(anchor, fisher.Combine(previous, (f, old) => old is null ? f.clone() : old * gamma + f))];
            fisher.Dispose();
        }
    }
}

/// <summary>MAS (<see cref="MasTrainer"/>): Ω ← Ω + E_x|∇‖f(x)‖²|; needs no labels.</summary>
public sealed class MasPlugin : RegularizationPlugin
{
    /// <summary>Creates the plugin with λ = 0.1 (<see cref="MasTrainer.Options"/>' default).</summary>
    public MasPlugin() : base(0.1) { }

    /// <summary>Rows per task used to estimate Ω; null: all rows. Default 1,000.</summary>
    public int? ImportanceSamples { get; set; } = 1000;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (ImportanceSamples is < 1) throw new ArgumentOutOfRangeException(nameof(ImportanceSamples), "Option ImportanceSamples must be null or positive.");
    }

    private protected override void Consolidate(ContinualTrainingContext context)
    {
        var omega = ImportanceEstimation.OutputSensitivity(context, ImportanceSamples);
        var previous = Terms.Count > 0 ? Terms[0].Importance : null;
        Terms = [new PenaltyTerm(ParameterTensors.CopyOf(context.Network), omega.Combine(previous, (w, old) => old is null ? w.clone() : old + w))];
        omega.Dispose();
    }
}

/// <summary>SCP (<see cref="ScpTrainer"/>): Γ ← γΓ + Γ_t with Γ_t from sliced projections of the output distribution.</summary>
public sealed class ScpPlugin : RegularizationPlugin
{
    /// <summary>Creates the plugin with λ = 1,000,000 (<see cref="ScpTrainer.Options"/>' default).</summary>
    public ScpPlugin() : base(1e6) { }

    /// <summary>Random projections L. Default 100.</summary>
    public int Projections { get; set; } = 100;

    /// <summary>Rows per task whose mean output is projected; null: all rows. Default 500.</summary>
    public int? ImportanceSamples { get; set; } = 500;

    /// <summary>Decay γ of the accumulated importance, in [0, 1]. Default 1.</summary>
    public double Gamma { get; set; } = 1;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (Projections < 1) throw new ArgumentOutOfRangeException(nameof(Projections), "Option Projections must be positive.");
        if (!(Gamma >= 0 && Gamma <= 1)) throw new ArgumentOutOfRangeException(nameof(Gamma), "Option Gamma must be in [0, 1].");
        if (ImportanceSamples is < 1) throw new ArgumentOutOfRangeException(nameof(ImportanceSamples), "Option ImportanceSamples must be null or positive.");
    }

    private protected override void Consolidate(ContinualTrainingContext context)
    {
        var gamma = ImportanceEstimation.SlicedCramer(context, ImportanceSamples, Projections);
        var previous = Terms.Count > 0 ? Terms[0].Importance : null;
        float decay = (float)Gamma;
        Terms = [new PenaltyTerm(ParameterTensors.CopyOf(context.Network), gamma.Combine(previous, (g, old) => old is null ? g.clone() : old * decay + g))];
        gamma.Dispose();
    }
}

/// <summary>
/// SI (<see cref="SiTrainer"/>): during training ω_i += −g_i Δθ_i (the path integral of the gradient along the parameter
/// trajectory); after the task Ω_i ← Ω_i + ω_i / ((θ_i(end) − θ_i(start))² + ξ).
/// </summary>
public sealed class SiPlugin : RegularizationPlugin
{
    private ParameterTensors? _start, _previous, _omega;

    /// <summary>Creates the plugin with λ (c) = 100 (<see cref="SiTrainer.Options"/>' default).</summary>
    public SiPlugin() : base(100) { }

    /// <summary>The damping ξ that keeps Ω finite when a parameter barely moved. Default 0.1.</summary>
    public double Damping { get; set; } = 0.1;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (!(Damping > 0)) throw new ArgumentOutOfRangeException(nameof(Damping), "Option Damping must be positive.");
    }

    /// <summary>The path integral ω, the task's starting θ and the last step's θ: what a checkpoint or a pass continued
    /// across fits must carry (<see cref="ContinualTrainerOptions.ContinueAcrossFits"/>).</summary>
    public override void SaveTaskProgress(ContinualState state)
    {
        state.Set("tracking", _omega is not null);
        if (_omega is null) return;
        _start!.Save(state, "start/");
        _previous!.Save(state, "previous/");
        _omega.Save(state, "omega/");
    }

    /// <inheritdoc/>
    public override void LoadTaskProgress(ContinualState state)
    {
        if (!state.GetBoolean("tracking") || _omega is null) return;
        _start = ParameterTensors.LoadLike(state, "start/", _start!, "SI progress");
        _previous = ParameterTensors.LoadLike(state, "previous/", _previous!, "SI progress");
        _omega = ParameterTensors.LoadLike(state, "omega/", _omega, "SI progress");
    }

    /// <inheritdoc/>
    public override void BeforeTask(ContinualTrainingContext context)
    {
        base.BeforeTask(context);
        _start = ParameterTensors.CopyOf(context.Network);
        _previous = ParameterTensors.CopyOf(context.Network);
        _omega = ParameterTensors.ZerosLike(context.Network);
    }

    /// <summary>ω += −g Δθ, with g the gradient the optimizer used (task loss and penalty), as in the reference implementations
    /// of Zenke et al. and van de Ven et al.; it is still in .grad after the step, so nothing is copied.</summary>
    public override void AfterStep(ContinualTrainingContext context)
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

    private protected override void Consolidate(ContinualTrainingContext context)
    {
        float damping = (float)Damping;
        var end = ParameterTensors.CopyOf(context.Network);
        var contribution = _omega!.Combine(null, (name, w, _) => w / ((end[name] - _start![name]).pow(2) + damping));
        var previous = Terms.Count > 0 ? Terms[0].Importance : null;
        Terms = [new PenaltyTerm(end, contribution.Combine(previous, (c, old) => old is null ? c.clone() : old + c))];
        contribution.Dispose();
        foreach (var spent in new[] { _start, _previous, _omega }) spent?.Dispose();
        _start = _previous = _omega = null;
    }
}

/// <summary>
/// RWalk (<see cref="RWalkTrainer"/>, whose remarks give the equations): an online Fisher (EWC++) plus a KL-normalised
/// path score, both updated once per window of <see cref="ScoreUpdateInterval"/> steps; after each task the importance is
/// F/max F + s̄, with s̄ ← ½ (s̄ + s_t/max s_t) and s_t clipped at 0.
/// </summary>
public sealed class RWalkPlugin : RegularizationPlugin
{
    /// <summary>Creates the plugin with λ = 1 (<see cref="RWalkTrainer.Options"/>' default).</summary>
    public RWalkPlugin() : base(1) { }

    /// <summary>Weight α of the newest window's mean squared gradient in the running Fisher. Default 0.9.</summary>
    public double FisherAlpha { get; set; } = 0.9;

    /// <summary>Steps per window. Default 50 (the authors' code).</summary>
    public int ScoreUpdateInterval { get; set; } = 50;

    /// <summary>ε in the path score's denominator. Default 1e-3.</summary>
    public double Epsilon { get; set; } = 1e-3;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (!(FisherAlpha > 0 && FisherAlpha <= 1)) throw new ArgumentOutOfRangeException(nameof(FisherAlpha), "Option FisherAlpha must be in (0, 1].");
        if (!(Epsilon > 0)) throw new ArgumentOutOfRangeException(nameof(Epsilon), "Option Epsilon must be positive.");
        if (ScoreUpdateInterval < 1 || ScoreUpdateInterval > 1_000_000) throw new ArgumentOutOfRangeException(nameof(ScoreUpdateInterval), "Option ScoreUpdateInterval must be in [1, 1,000,000].");
    }

    private ParameterTensors? _fisher, _scores, _previous, _taskScores;
    // Within a window of ScoreUpdateInterval steps: Σ g² (task loss), Σ −g·Δθ per step, θ at the window's start.
    private ParameterTensors? _windowSquares, _windowPath, _windowStart;
    private int _windowSteps;

    /// <summary>The running Fisher, the task's scores and the open window (its sums, its starting θ, its steps) and the last
    /// step's θ: what a checkpoint or a pass continued across fits must carry.</summary>
    public override void SaveTaskProgress(ContinualState state)
    {
        state.Set("tracking", _taskScores is not null);
        if (_taskScores is null) return;
        _fisher!.Save(state, "fisher/");
        _taskScores.Save(state, "task scores/");
        _previous!.Save(state, "previous/");
        _windowStart!.Save(state, "window start/");
        _windowSquares!.Save(state, "window squares/");
        _windowPath!.Save(state, "window path/");
        state.Set("window steps", (long)_windowSteps);
    }

    /// <inheritdoc/>
    public override void LoadTaskProgress(ContinualState state)
    {
        if (!state.GetBoolean("tracking") || _taskScores is null) return;
        long steps = state.GetInt64("window steps");
        if (steps < 0 || steps >= ScoreUpdateInterval) throw new ContinualModelFormatException($"RWalk's progress has {steps} steps in its window; ScoreUpdateInterval is {ScoreUpdateInterval}.");
        _fisher = ParameterTensors.LoadLike(state, "fisher/", _fisher!, "RWalk progress");
        _taskScores = ParameterTensors.LoadLike(state, "task scores/", _taskScores, "RWalk progress");
        _previous = ParameterTensors.LoadLike(state, "previous/", _previous!, "RWalk progress");
        _windowStart = ParameterTensors.LoadLike(state, "window start/", _windowStart!, "RWalk progress");
        _windowSquares = ParameterTensors.LoadLike(state, "window squares/", _windowSquares!, "RWalk progress");
        _windowPath = ParameterTensors.LoadLike(state, "window path/", _windowPath!, "RWalk progress");
        _windowSteps = (int)steps;
    }

    /// <inheritdoc/>
    public override void BeforeTask(ContinualTrainingContext context)
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

    /// <inheritdoc/>
    public override void AfterBackward(ContinualTrainingContext context)
    {
        // The Fisher uses the task loss's gradient, before the penalty's is added.
        using (no_grad())
            foreach (var (name, p) in context.Network.OrderedParameters())
                if (p.grad is Tensor g) _windowSquares![name].addcmul_(g, g, CachedScalars.One);
        base.AfterBackward(context);
    }

    /// <inheritdoc/>
    public override void AfterStep(ContinualTrainingContext context)
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
        if (++_windowSteps == ScoreUpdateInterval) CloseWindow(context);
    }

    /// <summary>The end of a window of steps (the authors' code: FISHER_UPDATE_AFTER = 50): the window's path divided by
    /// ½ F (θ − θ_window start)² + ε joins the task's score, then the running Fisher takes the window's mean squared gradient.</summary>
    private void CloseWindow(ContinualTrainingContext context)
    {
        float alpha = (float)FisherAlpha;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var epsilonTensor = tensor((float)Epsilon, device: context.Device);
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

    private protected override void Consolidate(ContinualTrainingContext context)
    {
        if (_windowSteps > 0) CloseWindow(context); // the task's last, shorter window
        float scoreMax = Math.Max(_taskScores!.Names.Select(n => _taskScores[n].clamp_min(0).max().item<float>()).DefaultIfEmpty(0).Max(), 1e-12f);
        float fisherMax = Math.Max(_fisher!.Names.Select(n => _fisher[n].max().item<float>()).DefaultIfEmpty(0).Max(), 1e-12f);
        var taskScores = _taskScores.Combine(null, (s, _) => s.clamp_min(0) / scoreMax);
        var oldScores = _scores;
        _scores = taskScores.Combine(oldScores, (s, old) => old is null ? s.clone() : (old + s) * 0.5f);
        oldScores?.Dispose();
        taskScores.Dispose();
        var importance = _scores.Combine(_fisher, (s, f) => f is null ? s.clone() : s + f / fisherMax);
        Terms = [new PenaltyTerm(ParameterTensors.CopyOf(context.Network), importance)];
        foreach (var spent in new[] { _previous, _taskScores, _windowStart, _windowSquares, _windowPath }) spent?.Dispose();
        _previous = _taskScores = _windowStart = _windowSquares = _windowPath = null;
    }

    private protected override void SaveExtra(ContinualState state)
    {
        state.Set("has fisher", _fisher is not null);
        _fisher?.Save(state, "fisher/");
        state.Set("has scores", _scores is not null);
        _scores?.Save(state, "scores/");
    }

    private protected override void LoadExtra(ContinualState state)
    {
        _fisher = state.GetBoolean("has fisher") ? ParameterTensors.Load(state, "fisher/") : null;
        _scores = state.GetBoolean("has scores") ? ParameterTensors.Load(state, "scores/") : null;
    }

    private protected override void LoadLegacyExtra(BinaryReader reader)
    {
        _fisher = reader.ReadBoolean() ? ParameterTensors.Read(reader, "RWalk Fisher") : null;
        _scores = reader.ReadBoolean() ? ParameterTensors.Read(reader, "RWalk scores") : null;
    }

    private protected override long ExtraFloats => (_fisher?.ElementCount ?? 0) + (_scores?.ElementCount ?? 0);
}
