namespace Microsoft.ML.Continual;

/// <summary>
/// The part every memory-keeping plugin (GEM, A-GEM, replay) shares: one <see cref="ExampleMemory"/>, shared on copy
/// (it is immutable), saved and loaded with the model, and reported in the state sizes.
/// </summary>
public abstract class MemoryPlugin : ContinualPlugin
{
    private protected MemoryPlugin() { }

    internal ExampleMemory Memory { get; private protected set; } = ExampleMemory.Empty;

    internal override void CopyStateFrom(ContinualPlugin previous) => Memory = ((MemoryPlugin)previous).Memory;

    /// <inheritdoc/>
    public override void SaveState(ContinualState state) => Memory.Save(state, "memory/");

    /// <inheritdoc/>
    public override void LoadState(ContinualState state) => Memory = ExampleMemory.Load(state, "memory/");

    internal override void LoadLegacyState(BinaryReader reader, int formatVersion) => Memory = ExampleMemory.Load(reader);

    /// <inheritdoc/>
    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long>
    {
        ["memory rows"] = Memory.Count,
        ["memory tasks"] = Memory.TaskOf.Distinct().Count(),
        ["memory floats"] = Memory.Features?.numel() ?? 0,
        ["rows offered"] = Memory.RowsOffered,
    };
}
