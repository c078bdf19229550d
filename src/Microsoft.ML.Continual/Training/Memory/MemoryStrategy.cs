namespace Microsoft.ML.Continual;

/// <summary>
/// The part every memory-keeping strategy (GEM, A-GEM, replay) shares: one <see cref="ExampleMemory"/>, shared on copy
/// (it is immutable), saved and loaded with the model, and reported in the state sizes.
/// </summary>
internal abstract class MemoryStrategy : ContinualStrategy
{
    internal ExampleMemory Memory { get; private protected set; } = ExampleMemory.Empty;

    public override void CopyStateFrom(ContinualStrategy previous) => Memory = ((MemoryStrategy)previous).Memory;
    public override void SaveState(BinaryWriter writer) => Memory.Save(writer);
    public override void LoadState(BinaryReader reader, int formatVersion) => Memory = ExampleMemory.Load(reader);

    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>
    {
        ["memory rows"] = Memory.Count,
        ["memory tasks"] = Memory.TaskOf.Distinct().Count(),
        ["memory floats"] = Memory.Features?.numel() ?? 0,
        ["rows offered"] = Memory.RowsOffered,
    };
}
