namespace Microsoft.ML.Continual;

/// <summary>Plain training on each new task: overrides no hook. The lower bound every method is compared with.</summary>
internal sealed class FineTuneStrategy : ContinualStrategy
{
}
