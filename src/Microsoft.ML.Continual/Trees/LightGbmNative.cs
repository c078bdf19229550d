using System.Runtime.InteropServices;
using System.Text;

namespace Microsoft.ML.Continual.Trees;

/// <summary>
/// The few functions of LightGBM's C API (<c>c_api.h</c>, version 4.6, the native library that ML.NET's own LightGBM
/// trainer ships) that continued boosting needs: datasets from a dense row-major matrix with labels, weights and initial
/// scores, a booster that merges an earlier model in before it trains (what LightGBM's Python <c>init_model</c> does),
/// one boosting round at a time with a validation metric, raw-score prediction and the model as text.
/// ML.NET's wrapper of the same library is internal and has no initial scores or merging, hence this file.
/// </summary>
internal static class LightGbmNative
{
    private const string Library = "lib_lightgbm";
    public const int Float32 = 0;
    public const int Float64 = 1;
    public const int PredictRawScore = 1;

    [DllImport(Library, EntryPoint = "LGBM_GetLastError")]
    private static extern IntPtr GetLastError();

    [DllImport(Library, EntryPoint = "LGBM_RegisterLogCallback")]
    private static extern unsafe int RegisterLogCallback(delegate* unmanaged<IntPtr, void> callback);

    [UnmanagedCallersOnly]
    private static void DropLog(IntPtr message) { }

    [ThreadStatic] private static bool _logRouted;

    /// <summary>LightGBM prints some warnings whatever its verbosity (e.g. on sparse category codes) to standard output, where
    /// they would break a tool's JSON output: its log goes nowhere instead (errors still come back through every call's
    /// result). Its callback is per thread, so every thread that calls it routes its own.</summary>
    private static unsafe void RouteLog()
    {
        if (_logRouted) return;
        try
        {
            RegisterLogCallback(&DropLog);
        }
        catch (DllNotFoundException e)
        {
            // The LightGBM package has natives for linux-x64, win-x64 and osx-x64 only (none for arm64 processes).
            throw new PlatformNotSupportedException(
                $"The boosted trees need LightGBM's native library (lib_lightgbm), which the LightGBM 4.6.0 package has for linux-x64, " +
                $"win-x64 and osx-x64 only; this process is {RuntimeInformation.RuntimeIdentifier}. On Apple silicon run an x64 process " +
                "(Rosetta) or put a lib_lightgbm built for arm64 on the library path. The network trainers do not need it.", e);
        }
        _logRouted = true;
    }

    [DllImport(Library, EntryPoint = "LGBM_DatasetCreateFromMat")]
    private static extern int DatasetCreateFromMat(IntPtr data, int dataType, int rows, int columns, int isRowMajor,
        [MarshalAs(UnmanagedType.LPUTF8Str)] string parameters, IntPtr reference, out IntPtr dataset);

    [DllImport(Library, EntryPoint = "LGBM_DatasetSetField")]
    private static extern int DatasetSetField(IntPtr dataset, [MarshalAs(UnmanagedType.LPUTF8Str)] string field, IntPtr data, int count, int dataType);

    [DllImport(Library, EntryPoint = "LGBM_DatasetFree")]
    private static extern int DatasetFree(IntPtr dataset);

    [DllImport(Library, EntryPoint = "LGBM_BoosterCreate")]
    private static extern int BoosterCreate(IntPtr trainData, [MarshalAs(UnmanagedType.LPUTF8Str)] string parameters, out IntPtr booster);

    [DllImport(Library, EntryPoint = "LGBM_BoosterLoadModelFromString")]
    private static extern int BoosterLoadModelFromString(IntPtr modelText, out int iterations, out IntPtr booster);

    [DllImport(Library, EntryPoint = "LGBM_BoosterFree")]
    private static extern int BoosterFree(IntPtr booster);

    [DllImport(Library, EntryPoint = "LGBM_BoosterMerge")]
    private static extern int BoosterMerge(IntPtr booster, IntPtr other);

    [DllImport(Library, EntryPoint = "LGBM_BoosterAddValidData")]
    private static extern int BoosterAddValidData(IntPtr booster, IntPtr dataset);

    [DllImport(Library, EntryPoint = "LGBM_BoosterUpdateOneIter")]
    private static extern int BoosterUpdateOneIter(IntPtr booster, out int isFinished);

    [DllImport(Library, EntryPoint = "LGBM_BoosterRollbackOneIter")]
    private static extern int BoosterRollbackOneIter(IntPtr booster);

    [DllImport(Library, EntryPoint = "LGBM_BoosterGetCurrentIteration")]
    private static extern int BoosterGetCurrentIteration(IntPtr booster, out int iteration);

    [DllImport(Library, EntryPoint = "LGBM_BoosterGetEval")]
    private static extern int BoosterGetEval(IntPtr booster, int dataIndex, out int count, [Out] double[] results);

    [DllImport(Library, EntryPoint = "LGBM_BoosterPredictForMat")]
    private static extern int BoosterPredictForMat(IntPtr booster, IntPtr data, int dataType, int rows, int columns, int isRowMajor, int predictType,
        int startIteration, int iterations, [MarshalAs(UnmanagedType.LPUTF8Str)] string parameters, out long outLength, IntPtr results);

    [DllImport(Library, EntryPoint = "LGBM_BoosterSaveModelToString")]
    private static extern int BoosterSaveModelToString(IntPtr booster, int startIteration, int iterations, int importanceType, long bufferLength, out long outLength, IntPtr text);

    [DllImport(Library, EntryPoint = "LGBM_BoosterGetNumFeature")]
    private static extern int BoosterGetNumFeature(IntPtr booster, out int features);

    private static void Check(int result, string call)
    {
        if (result == 0) return;
        string message = Marshal.PtrToStringUTF8(GetLastError()) ?? "no message";
        throw new InvalidOperationException($"LightGBM's {call} failed: {message}");
    }

    /// <summary>A LightGBM dataset over a dense row-major float matrix (copied into LightGBM's bins; the matrix may go after).</summary>
    public sealed class Dataset : SafeHandle
    {
        private Dataset() : base(IntPtr.Zero, ownsHandle: true) { }

        public override bool IsInvalid => handle == IntPtr.Zero;

        protected override bool ReleaseHandle() => DatasetFree(handle) == 0;

        public static unsafe Dataset Create(ReadOnlySpan<float> features, int rows, int columns, string parameters, Dataset? reference)
        {
            RouteLog();
            IntPtr created;
            fixed (float* data = features)
                Check(DatasetCreateFromMat((IntPtr)data, Float32, rows, columns, 1, parameters, reference?.handle ?? IntPtr.Zero, out created), "DatasetCreateFromMat");
            var dataset = new Dataset();
            dataset.SetHandle(created);
            return dataset;
        }

        public unsafe void SetLabels(ReadOnlySpan<float> labels) { fixed (float* p = labels) Check(DatasetSetField(handle, "label", (IntPtr)p, labels.Length, Float32), "DatasetSetField(label)"); }

        public unsafe void SetWeights(ReadOnlySpan<float> weights) { fixed (float* p = weights) Check(DatasetSetField(handle, "weight", (IntPtr)p, weights.Length, Float32), "DatasetSetField(weight)"); }

        public unsafe void SetInitialScores(ReadOnlySpan<double> scores) { fixed (double* p = scores) Check(DatasetSetField(handle, "init_score", (IntPtr)p, scores.Length, Float64), "DatasetSetField(init_score)"); }

        internal IntPtr Handle => handle;
    }

    /// <summary>A LightGBM booster: an ensemble of trees, trainable one round at a time while it holds its training data.</summary>
    public sealed class Booster : SafeHandle
    {
        private Booster() : base(IntPtr.Zero, ownsHandle: true) { }

        public override bool IsInvalid => handle == IntPtr.Zero;

        protected override bool ReleaseHandle() => BoosterFree(handle) == 0;

        public static Booster Create(Dataset train, string parameters)
        {
            RouteLog();
            Check(BoosterCreate(train.Handle, parameters, out IntPtr created), "BoosterCreate");
            var booster = new Booster();
            booster.SetHandle(created);
            return booster;
        }

        public static unsafe Booster FromText(string modelText)
        {
            RouteLog();
            byte[] bytes = Encoding.UTF8.GetBytes(modelText + "\0");
            IntPtr created;
            fixed (byte* p = bytes) Check(BoosterLoadModelFromString((IntPtr)p, out _, out created), "BoosterLoadModelFromString");
            var booster = new Booster();
            booster.SetHandle(created);
            return booster;
        }

        /// <summary>Puts <paramref name="earlier"/>'s trees in front of this booster's (LightGBM's <c>GBDT::MergeFrom</c>).</summary>
        public void MergeBefore(Booster earlier) => Check(BoosterMerge(handle, earlier.handle), "BoosterMerge");

        public void AddValidation(Dataset validation) => Check(BoosterAddValidData(handle, validation.Handle), "BoosterAddValidData");

        /// <summary>One boosting round; true when no split could be made (nothing left to learn).</summary>
        public bool Boost()
        {
            RouteLog();
            Check(BoosterUpdateOneIter(handle, out int finished), "BoosterUpdateOneIter");
            return finished != 0;
        }

        public void RollBack() => Check(BoosterRollbackOneIter(handle), "BoosterRollbackOneIter");

        public int Iterations
        {
            get { Check(BoosterGetCurrentIteration(handle, out int n), "BoosterGetCurrentIteration"); return n; }
        }

        public int FeatureCount
        {
            get { Check(BoosterGetNumFeature(handle, out int n), "BoosterGetNumFeature"); return n; }
        }

        /// <summary>The first metric on data set <paramref name="dataIndex"/> (0 training, 1 the first validation set).</summary>
        public double Metric(int dataIndex)
        {
            var results = new double[8];
            Check(BoosterGetEval(handle, dataIndex, out int count, results), "BoosterGetEval");
            if (count < 1) throw new InvalidOperationException("LightGBM reported no metric.");
            return results[0];
        }

        /// <summary>Raw scores (margins) of every tree (<paramref name="threads"/> 0: LightGBM's default) for <paramref name="rows"/> rows of <paramref name="features"/>.</summary>
        public unsafe void PredictRaw(ReadOnlySpan<float> features, int rows, int columns, Span<double> scores, int threads)
        {
            if (rows == 0) return;
            if (rows < 0 || columns <= 0 || features.Length < (long)rows * columns || scores.Length < rows)
                throw new ArgumentException($"PredictRaw: {rows} rows of {columns} features need {(long)rows * columns} values and {rows} scores; {features.Length} and {scores.Length} were given.");
            RouteLog();
            long written;
            fixed (float* data = features)
            fixed (double* output = scores)
                Check(BoosterPredictForMat(handle, (IntPtr)data, Float32, rows, columns, 1, PredictRawScore, 0, -1, threads > 0 ? $"verbosity=-1 num_threads={threads}" : "verbosity=-1", out written, (IntPtr)output), "BoosterPredictForMat");
            if (written != rows) throw new InvalidOperationException($"LightGBM predicted {written} values for {rows} rows.");
        }

        /// <summary>The whole model as LightGBM's text format.</summary>
        public unsafe string ToText()
        {
            Check(BoosterSaveModelToString(handle, 0, -1, 0, 0, out long length, IntPtr.Zero), "BoosterSaveModelToString");
            var buffer = new byte[length];
            fixed (byte* p = buffer) Check(BoosterSaveModelToString(handle, 0, -1, 0, length, out length, (IntPtr)p), "BoosterSaveModelToString");
            return Encoding.UTF8.GetString(buffer, 0, (int)Math.Max(0, length - 1)); // without the terminating NUL
        }
    }
}
