using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// A distillation teacher kept as task progress (LwF and iCaRL with boundaries inside a fit, where the teacher is the
/// network at the last boundary and cannot be made again from the previous model): its weights and the classes seen
/// before it was made, for checkpoints and <see cref="ContinualTrainerOptions.ContinueAcrossFits"/>.
/// </summary>
internal static class TeacherProgress
{
    public static void Save(ContinualState state, ContinualNetwork? teacher, bool[] seenBefore)
    {
        using (var before = tensor(seenBefore)) state.Set("classes seen before", before);
        state.Set("teacher", teacher is not null);
        if (teacher is null) return;
        var parameters = teacher.OrderedParameters();
        state.Set("teacher parameters", (long)parameters.Count);
        for (int i = 0; i < parameters.Count; i++) state.Set($"teacher/{i}", parameters[i].Value);
    }

    /// <summary>The classes seen before the teacher, and the teacher (null when none was saved) as a copy of
    /// <paramref name="student"/> with the saved weights. A head that has grown since (a continuing fit that brought a new
    /// class) keeps the saved rows first: the new outputs are those of classes the teacher had not seen.</summary>
    public static (ContinualNetwork? Teacher, bool[] SeenBefore) Load(ContinualState state, ContinualNetwork? student, string method)
    {
        bool[] seenBefore;
        using (var before = state.GetTensor("classes seen before"))
        {
            if (before.dtype != ScalarType.Bool || before.dim() != 1) throw new ContinualModelFormatException($"{method}'s classes seen before the teacher must be a vector of Booleans.");
            seenBefore = before.data<bool>().ToArray();
        }
        if (!state.GetBoolean("teacher")) return (null, seenBefore);
        if (student is null) throw new InvalidOperationException($"{method}'s progress is loaded after BeforeTask.");
        using var scratch = new Generator(0, CPU); // the copy's fresh layers are overwritten: their draws must not move the fit's generator
        var teacher = student.Copy(scratch);
        try
        {
            CopyWeights(state, teacher, method);
        }
        catch
        {
            teacher.Dispose();
            throw;
        }
        return (teacher, seenBefore);
    }

    private static void CopyWeights(ContinualState state, ContinualNetwork teacher, string method)
    {
        var parameters = teacher.OrderedParameters();
        long count = state.GetInt64("teacher parameters");
        if (count != parameters.Count) throw new ContinualModelFormatException($"{method}'s teacher has {count} parameters; the network has {parameters.Count}.");
        using var _ = no_grad();
        for (int i = 0; i < parameters.Count; i++)
        {
            using var saved = state.GetTensor($"teacher/{i}");
            var target = parameters[i].Value;
            bool sameTrailing = saved.dim() == target.dim() && saved.shape.Skip(1).SequenceEqual(target.shape.Skip(1));
            if (saved.dtype != target.dtype || !sameTrailing || saved.shape[0] > target.shape[0])
                throw new ContinualModelFormatException($"{method}'s teacher parameter {i} is {saved.dtype} [{string.Join(", ", saved.shape)}]; the network's is {target.dtype} [{string.Join(", ", target.shape)}].");
            target.narrow(0, 0, saved.shape[0]).copy_(saved.to(target.device));
        }
    }
}
