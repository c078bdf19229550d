using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// TorchSharp 0.107's <see cref="Adam"/> step, operation for operation, with every <see cref="Scalar"/> held in a variable
/// until the native call that reads it has returned.
/// </summary>
/// <remarks>
/// TorchSharp's own step passes implicit temporaries (<c>mul_(beta1)</c>, <c>add_(eps)</c>, <c>addcdiv_(..., -step)</c>).
/// A temporary is unreachable once its handle has been read, so a garbage collection during the native call can run its
/// finalizer, which frees the native scalar libtorch is about to read: the demo failed once inside <c>Adam.step</c> with
/// libtorch's "Expected false to be true" from <c>Scalar::toDouble</c> (see <see cref="CachedScalars"/> for the first
/// sighting). Same operations in the same order, so the results are bit-identical to TorchSharp's Adam; the state is
/// TorchSharp's (<see cref="Adam.State"/>), so checkpoints read and write it as before.
/// </remarks>
internal sealed class KeptScalarAdam : Adam
{
    public KeptScalarAdam(IEnumerable<Parameter> parameters, double learningRate, double weightDecay)
        : base(parameters, learningRate, weight_decay: weightDecay) { }

    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
    {
        Options options = group.Options;
        double beta1 = options.beta1!.Value, beta2 = options.beta2!.Value, weightDecay = options.weight_decay!.Value;
        double eps = options.eps!.Value, learningRate = options.LearningRate!.Value;
        if (options.amsgrad!.Value || options.maximize!.Value) throw new NotSupportedException("AMSGrad and maximize are not used by this library.");
        using Scalar beta1Scalar = beta1.ToScalar(), oneMinusBeta1 = (1.0 - beta1).ToScalar();
        using Scalar beta2Scalar = beta2.ToScalar(), oneMinusBeta2 = (1.0 - beta2).ToScalar();
        using Scalar epsScalar = eps.ToScalar(), weightDecayScalar = weightDecay.ToScalar();
        foreach (Parameter parameter in group.Parameters)
        {
            var state = (State)_state[parameter.Handle];
            Tensor? gradient = parameter.grad;
            if (gradient is null) continue;
            state.step++;
            double biasCorrection1 = 1.0 - Math.Pow(beta1, state.step);
            double biasCorrection2 = 1.0 - Math.Pow(beta2, state.step);
            if (weightDecay != 0.0) gradient = gradient.add(parameter, weightDecayScalar);
            state.exp_avg.mul_(beta1Scalar).add_(gradient, oneMinusBeta1);
            state.exp_avg_sq.mul_(beta2Scalar).addcmul_(gradient, gradient.conj(), oneMinusBeta2);
            using Scalar sqrtBiasCorrection2 = Math.Sqrt(biasCorrection2).ToScalar();
            // add_(Scalar) would pass an implicit alpha of 1, a temporary of TorchSharp's own (the demo failed there once).
            Tensor denominator = (state.exp_avg_sq.sqrt() / sqrtBiasCorrection2).add_(epsScalar, CachedScalars.One);
            using Scalar minusStepSize = (0.0 - learningRate / biasCorrection1).ToScalar();
            parameter.addcdiv_(state.exp_avg, denominator, minusStepSize);
        }
    }, closure);
}

/// <summary>TorchSharp 0.107's <see cref="SGD"/> step (with momentum when set), operation for operation, with every
/// <see cref="Scalar"/> held until its native call returns; see <see cref="KeptScalarAdam"/>.</summary>
internal sealed class KeptScalarSgd : SGD
{
    public KeptScalarSgd(IEnumerable<Parameter> parameters, double learningRate, double momentum, double weightDecay)
        : base(parameters, learningRate, momentum: momentum, weight_decay: weightDecay) { }

    public override Tensor step(Func<Tensor>? closure = null) => _step<ParamGroup>(group =>
    {
        Options options = group.Options;
        double momentum = options.momentum!.Value, dampening = options.dampening!.Value, weightDecay = options.weight_decay!.Value;
        double learningRate = options.LearningRate!.Value;
        if (options.nesterov!.Value || options.maximize!.Value) throw new NotSupportedException("Nesterov momentum and maximize are not used by this library.");
        using Scalar momentumScalar = momentum.ToScalar(), oneMinusDampening = (1.0 - dampening).ToScalar();
        using Scalar weightDecayScalar = weightDecay.ToScalar(), minusLearningRate = (0.0 - learningRate).ToScalar();
        foreach (Parameter parameter in group.Parameters)
        {
            var state = (State)_state[parameter.Handle];
            Tensor? gradient = parameter.grad;
            if (gradient is null) continue;
            if (weightDecay != 0.0) gradient = gradient.add(parameter, weightDecayScalar);
            if (momentum != 0.0)
            {
                Tensor? buffer = state.momentum_buffer;
                if (buffer is null) buffer = state.momentum_buffer = gradient.clone().detach().DetachFromDisposeScope();
                else buffer.mul_(momentumScalar).add_(gradient, oneMinusDampening);
                gradient = buffer;
                state.momentum_buffer = buffer;
            }
            parameter.add_(gradient, minusLearningRate);
        }
    }, closure);
}
