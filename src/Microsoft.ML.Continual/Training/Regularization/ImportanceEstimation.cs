using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>How the labels of EWC's Fisher information are chosen.</summary>
public enum FisherLabels
{
    /// <summary>The rows' true labels: the "empirical Fisher" most implementations use.</summary>
    Empirical,
    /// <summary>Labels drawn from the model's own predictive distribution: the Fisher information as defined (Kirkpatrick et al. 2017, Martens 2020).</summary>
    Sampled,
}

/// <summary>
/// Importance estimates computed from per-sample gradients, one row at a time: an expectation over rows, so its value
/// does not depend on the training batch size (Avalanche's EWC squares minibatch-mean gradients, which does).
/// </summary>
internal static class ImportanceEstimation
{
    /// <summary>Up to <paramref name="samples"/> rows of the task (all when null), drawn with the task's seed.</summary>
    public static long[] SampleRows(ContinualTrainingContext context, int? samples)
    {
        long count = context.Task.Count;
        if (samples is null || samples >= count) return Enumerable.Range(0, (int)count).Select(i => (long)i).ToArray();
        var random = new Random((int)(context.TaskSeed & int.MaxValue) ^ 0x5EED);
        var all = Enumerable.Range(0, (int)count).ToArray();
        random.Shuffle(all);
        return all.Take(samples.Value).Select(i => (long)i).ToArray();
    }

    /// <summary>(1/N) Σ_n statistic(∇_θ loss(x_n)) over the sampled rows, per parameter. In a data-parallel fit each process
    /// takes every Size-th row from its rank on and the sums are added over the processes.</summary>
    /// <param name="context">The task and network.</param>
    /// <param name="samples">How many rows to sample (all when null).</param>
    /// <param name="lossOfRow">The loss of one row, from the network's outputs and the row.</param>
    /// <param name="statistic">What is averaged of each row's gradient (its square, its absolute value).</param>
    /// <param name="drawsInLoss">True when <paramref name="lossOfRow"/> draws from a generator row after row (sampled
    /// labels): then every process also computes the loss of the rows it leaves to others (a forward pass, no backward), so
    /// that each row's draw is the one a single process makes.</param>
    public static ParameterTensors PerSampleMean(ContinualTrainingContext context, int? samples,
        Func<Tensor, ContinualBatch, Tensor> lossOfRow, Func<Tensor, Tensor> statistic, bool drawsInLoss = false)
    {
        var network = context.Network;
        var parameters = network.OrderedParameters();
        var sums = ParameterTensors.ZerosLike(network);
        long[] rows = SampleRows(context, samples);
        var communicator = context.Communicator;
        for (int i = 0; i < rows.Length; i++)
        {
            bool mine = i % communicator.Size == communicator.Rank;
            if (!mine && !drawsInLoss) continue;
            long row = rows[i];
            context.Cancellation.ThrowIfCancellationRequested();
            using var scope = NewDisposeScope();
            var batch = context.Task.Select(tensor(new[] { row }, device: context.Device));
            if (!mine)
            {
                using (no_grad()) lossOfRow(network.Forward(batch.Features, batch.Heads), batch); // the draw only
                continue;
            }
            network.zero_grad();
            Tensor loss = lossOfRow(network.Forward(batch.Features, batch.Heads), batch);
            loss.backward();
            using var _ = no_grad();
            foreach (var (name, p) in parameters)
                if (p.grad is Tensor g) sums[name].add_(statistic(g));
        }
        network.zero_grad();
        SumOverProcesses(sums, communicator);
        using (no_grad())
            foreach (var name in sums.Names) sums[name].div_(Math.Max(rows.Length, 1));
        return sums;
    }

    private static void SumOverProcesses(ParameterTensors sums, ContinualCommunicator communicator)
    {
        if (communicator.Size == 1) return;
        foreach (var name in sums.Names) communicator.AllReduceSum(sums[name]);
    }

    /// <summary>EWC: the diagonal Fisher information, E_x[(∇_θ log p(y|x))²], with y the true or a sampled label.</summary>
    public static ParameterTensors Fisher(ContinualTrainingContext context, int? samples, FisherLabels labels)
    {
        var state = context.State;
        using var generator = new Generator((ulong)context.TaskSeed ^ 0xF15E, CPU);
        Tensor LogLikelihoodLoss(Tensor outputs, ContinualBatch row)
        {
            switch (state.Kind)
            {
                case ContinualPredictionKind.Multiclass:
                {
                    Tensor logits = state.MaskLogits(outputs, row.Heads);
                    Tensor target = labels == FisherLabels.Empirical ? row.Targets
                        : multinomial(nn.functional.softmax(logits.detach(), 1).cpu(), 1, generator: generator).squeeze(1).to(logits.device);
                    return nn.functional.cross_entropy(logits, target);
                }
                case ContinualPredictionKind.Binary:
                {
                    Tensor logit = outputs.squeeze(1);
                    Tensor target = labels == FisherLabels.Empirical ? row.Targets
                        : bernoulli(sigmoid(logit.detach()).cpu(), generator: generator).to(logit.device);
                    return nn.functional.binary_cross_entropy_with_logits(logit, target);
                }
                default:
                {
                    // Unit-variance Gaussian likelihood: −log p = ½ (y − f)².
                    Tensor f = outputs.squeeze(1);
                    Tensor target = labels == FisherLabels.Empirical ? row.Targets
                        : (f.detach().cpu() + randn(f.shape, generator: generator)).to(f.device);
                    return 0.5 * (f - target).pow(2).sum();
                }
            }
        }
        return PerSampleMean(context, samples, LogLikelihoodLoss, g => g * g, drawsInLoss: labels == FisherLabels.Sampled);
    }

    /// <summary>MAS: E_x[|∇_θ ‖f(x)‖²₂|], the sensitivity of the squared L2 norm of the output; needs no labels.</summary>
    public static ParameterTensors OutputSensitivity(ContinualTrainingContext context, int? samples)
    {
        var state = context.State;
        Tensor SquaredNorm(Tensor outputs, ContinualBatch row)
        {
            Tensor? allowed = row.Heads is null ? null : state.AllowedOutputs(outputs.device);
            Tensor kept = allowed is null ? outputs : outputs.masked_fill(allowed.index_select(0, row.Heads!).logical_not(), CachedScalars.Zero);
            return kept.pow(2).sum();
        }
        return PerSampleMean(context, samples, SquaredNorm, g => g.abs());
    }

    /// <summary>
    /// SCP: (1/L) Σ_l (∇_θ ξ_lᵀ E_x[φ(x)])², with ξ_l random unit vectors and φ the model's output distribution
    /// (class probabilities; the probability for binary models; the value for regression).
    /// </summary>
    public static ParameterTensors SlicedCramer(ContinualTrainingContext context, int? samples, int projections)
    {
        var network = context.Network;
        var state = context.State;
        var parameters = network.OrderedParameters();
        var sums = ParameterTensors.ZerosLike(network);
        using var scope = NewDisposeScope();
        network.zero_grad();
        var batch = context.Task.Select(tensor(SampleRows(context, samples), device: context.Device));
        Tensor outputs = network.Forward(batch.Features, batch.Heads);
        Tensor phi = state.Kind switch
        {
            ContinualPredictionKind.Multiclass => nn.functional.softmax(state.MaskLogits(outputs, batch.Heads), 1),
            ContinualPredictionKind.Binary => sigmoid(outputs),
            _ => outputs,
        };
        Tensor mean = phi.mean([0L]);
        using var generator = new Generator((ulong)context.TaskSeed ^ 0x5C9, CPU);
        var communicator = context.Communicator;
        for (int l = 0; l < projections; l++)
        {
            context.Cancellation.ThrowIfCancellationRequested();
            Tensor xi = randn(mean.shape, generator: generator); // drawn in every process, so that each draws the same ξ_l
            if (l % communicator.Size != communicator.Rank) continue; // in a data-parallel fit, each process takes every Size-th projection
            xi = (xi / xi.norm()).to(mean.device);
            network.zero_grad();
            (mean * xi).sum().backward(retain_graph: l + communicator.Size < projections);
            using var _ = no_grad();
            foreach (var (name, p) in parameters)
                if (p.grad is Tensor g) sums[name].add_(g * g);
        }
        network.zero_grad();
        SumOverProcesses(sums, communicator);
        using (no_grad())
            foreach (var name in sums.Names) sums[name].div_(Math.Max(projections, 1));
        return sums;
    }
}
