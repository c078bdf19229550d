using System.Runtime.InteropServices;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// What the training loop does differently when several processes train one model (<see cref="ContinualCommunicator.Size"/> &gt; 1):
/// every process forms the same global minibatch (same data, same seeded shuffle), computes the loss of its own contiguous
/// share of the rows, scaled so that the gradients summed over the processes are the gradient of the global batch's mean loss,
/// and takes the same optimizer step on the summed gradient. The strategies' hooks then see exactly what one process would
/// see: <see cref="ContinualPlugin.AfterBackward"/> runs on the summed gradient (projections, analytic penalty gradients),
/// extra batches (replay) are shared out like the task's batch, and loss penalties are divided by the process count.
/// </summary>
internal sealed class DataParallel : IDisposable
{
    private readonly ContinualCommunicator _communicator;
    private ContinualNetwork? _network;
    private FlatGradients? _flat;
    private Tensor? _buffer, _gradients, _present;

    public DataParallel(ContinualCommunicator communicator) => _communicator = communicator;

    public int Size => _communicator.Size;

    /// <summary>The contiguous share of <paramref name="batch"/>'s rows (views, no copy) that process
    /// <paramref name="communicator"/>.Rank computes: rows [⌊n·rank/size⌋, ⌊n·(rank+1)/size⌋); the batch itself for one process.</summary>
    public static ContinualBatch Share(ContinualBatch batch, ContinualCommunicator communicator)
    {
        if (communicator.Size == 1) return batch;
        long rows = batch.Features.shape[0];
        long start = rows * communicator.Rank / communicator.Size, end = rows * (communicator.Rank + 1) / communicator.Size;
        return new ContinualBatch(batch.Features.narrow(0, start, end - start), batch.Targets.narrow(0, start, end - start),
            batch.Heads?.narrow(0, start, end - start), batch.Weight);
    }

    /// <summary>The first row of process <paramref name="communicator"/>.Rank's share of <paramref name="rows"/> rows (0 for one process).</summary>
    public static long ShareStart(long rows, ContinualCommunicator communicator) => rows * communicator.Rank / communicator.Size;

    /// <summary>The (non-empty) share's mean loss times its fraction of <paramref name="batch"/>'s rows: its part of the
    /// batch's mean loss, so that the parts' gradients summed over the processes are the batch's; unchanged for one process.</summary>
    public static Tensor PartOfMean(Tensor shareMeanLoss, ContinualBatch share, ContinualBatch batch, ContinualCommunicator communicator) =>
        communicator.Size == 1 ? shareMeanLoss : shareMeanLoss * ((double)share.Features.shape[0] / batch.Features.shape[0]);

    /// <summary>Fails in every process, before any training, unless all of them start from the same model (weights and the
    /// plugins' state), options and task rows: a process given another model file or data file would otherwise train on
    /// silently (the weights are broadcast, but the plugins' state and the rows are not).</summary>
    public void CheckSameStart(ContinualTrainingContext context, string trainerName)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        hash.AppendData(System.Text.Encoding.UTF8.GetBytes(Checkpoint.Fingerprint(context, trainerName))); // options, rows, weights
        foreach (var plugin in context.State.Plugins.Items)
        {
            using var state = new ContinualState();
            plugin.SaveState(state);
            using var buffer = new MemoryStream();
            using (var writer = new BinaryWriter(buffer, System.Text.Encoding.UTF8, leaveOpen: true)) state.Write(writer);
            hash.AppendData(buffer.GetBuffer(), 0, (int)buffer.Length);
        }
        int differing = _communicator.CountDiffering(hash.GetHashAndReset());
        if (differing > 0)
            throw new ContinualDistributedException($"{differing} of the {Size} processes of this data-parallel fit start from another model, options or task rows than rank 0 "
                + $"(task {context.TaskIndex + 1}): every process must load the same model file and read the same data (if they do, an earlier fit of this job went apart between processes: a bug to report).");
    }

    /// <summary>Makes every process start the task from rank 0's parameters.</summary>
    public void BroadcastParameters(ContinualTrainingContext context)
    {
        using var _ = no_grad();
        foreach (var parameter in Parameters(context)) _communicator.Broadcast(parameter);
    }

    /// <summary>Sums the gradients of the network and the plugins' extra parameters over all processes, in place
    /// (one flat buffer, allocated once per network, one allreduce per step; the summed parts become the gradients, as views,
    /// so that later backward passes write into the buffer and nothing is copied). The buffer ends with one flag per parameter
    /// (1 where this process has a gradient), so that a parameter has a gradient after the step in every process exactly
    /// when one process would have given it one (the optimizers skip a parameter without a gradient, but not one whose
    /// gradient is zero).</summary>
    public void SumGradients(ContinualTrainingContext context)
    {
        if (!ReferenceEquals(_network, context.Network)) // first step, or the network was replaced (CPG's growth)
        {
            Dispose(); // the previous network's buffer and views
            _network = context.Network;
            _flat = new FlatGradients(Parameters(context));
            _buffer = zeros(_flat.Size + _flat.ParameterCount).DetachFromDisposeScope();
            _gradients = _buffer.narrow(0, 0, _flat.Size).DetachFromDisposeScope();
            _present = _buffer.narrow(0, _flat.Size, _flat.ParameterCount).DetachFromDisposeScope();
        }
        _flat!.CopyTo(_gradients!); // nothing to copy once the gradients are views of the buffer
        _flat.MarkPresent(MemoryMarshal.Cast<byte, float>(_present!.bytes));
        _communicator.AllReduceSum(_buffer!);
        _flat.ShareAsGradients(_gradients!, MemoryMarshal.Cast<byte, float>(_present!.bytes));
    }

    /// <summary>Sums an epoch's loss and correct-prediction counts over the processes.</summary>
    public (double Loss, long Correct) SumEpoch(double lossSum, long correct)
    {
        Span<double> values = [lossSum, correct];
        _communicator.AllReduceSum(values);
        return (values[0], (long)Math.Round(values[1]));
    }

    public void Dispose()
    {
        _flat?.Dispose();
        _gradients?.Dispose();
        _present?.Dispose();
        _buffer?.Dispose();
    }

    private static IEnumerable<Parameter> Parameters(ContinualTrainingContext context) =>
        context.Network.OrderedParameters().Select(p => p.Value).Concat(context.State.Plugins.ExtraParameters(context));
}
