using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual;

/// <summary>
/// A network for business tables: each numeric column gets a periodic embedding, each categorical column a learned
/// embedding over hashed buckets, and an MLP reads them all with the 0/1 indicator slots (Gorishniy, Rubachev and Babenko
/// 2022, "On Embeddings for Numerical Features in Tabular Deep Learning", NeurIPS: the "PLR" embedding). The row's
/// feature vector is laid out as <see cref="ContinualFeaturizer"/> makes it: <see cref="NumericFeatures"/> standardised
/// numbers, then <see cref="IndicatorFeatures"/> 0/1 slots (missing-value indicators, Booleans), then, for each of the
/// <see cref="CategoricalFeatures"/> columns, its hash bucket in <see cref="CategoricalBits"/> 0/1 slots (ML.NET's
/// <c>MapKeyToBinaryVector</c> of a hashed key: the bucket's index, most significant bit first; all ones for a missing value).
/// </summary>
/// <remarks>
/// <para>Numeric column j with value x: v_j = [sin(2π c_j x), cos(2π c_j x)] ∈ R^{2k} with trainable frequencies
/// c_j ∈ R^k initialised N(0, σ²) (their eq. 8, "periodic"), then e_j = ReLU(W_j v_j + b_j) ∈ R^d (the "LR" that
/// follows; one W_j per column). Categorical column j with bucket id u: e_j = E_j[u] ∈ R^d, a row of its own table of
/// <see cref="Buckets"/> + 1 rows (row 0 for a missing value); a category first seen in a later period hashes to a bucket
/// like any other, so there is nothing to outgrow. The lookups are sparse: only the rows of the batch's buckets get
/// gradients (and importances, for the regularization methods, which cover the tables like any parameter).</para>
/// <para>Defaults (d = 16, k = 16, σ = 0.1, layers 256-256, dropout 0.1) follow the paper's MLP-PLR configuration space
/// (their Table 9 ranges d ∈ [1, 128], k ∈ [1, 96], σ ∈ [0.01, 100]); σ = 0.1 suits standardised inputs.</para>
/// </remarks>
public sealed class TabularBackbone : ContinualBackbone
{
    /// <summary>Leading slots holding standardised numbers.</summary>
    public int NumericFeatures { get; set; }

    /// <summary>Slots after the numbers holding 0/1 values (missing-value indicators, Booleans, hashed word counts), passed to the MLP as they are.</summary>
    public int IndicatorFeatures { get; set; }

    /// <summary>Categorical columns, each encoded in <see cref="CategoricalBits"/> trailing slots.</summary>
    public int CategoricalFeatures { get; set; }

    /// <summary>Slots per categorical column: the bits of its hash bucket's index (ML.NET's binary key encoding: log2(buckets) + 2). Default 12.</summary>
    public int CategoricalBits { get; set; } = 12;

    /// <summary>Hash buckets per categorical column (each column's table has one more row, for a missing value). Default 1,024.</summary>
    public int Buckets { get; set; } = 1024;

    /// <summary>Width d of each column's embedding. Default 16.</summary>
    public int EmbeddingSize { get; set; } = 16;

    /// <summary>Frequencies k of each numeric column's periodic embedding. Default 16.</summary>
    public int Frequencies { get; set; } = 16;

    /// <summary>Standard deviation σ of the frequencies' initialisation. Default 0.1.</summary>
    public double FrequencyScale { get; set; } = 0.1;

    /// <summary>Units of the MLP's layers over the embeddings. Default <c>[256, 256]</c>.</summary>
    public int[] HiddenLayerSizes { get; set; } = [256, 256];

    /// <summary>Dropout after each MLP layer, in [0, 1). Default 0.1.</summary>
    public float Dropout { get; set; } = 0.1f;

    /// <inheritdoc/>
    public override int OutputSize(int inputSize) => HiddenLayerSizes.Length > 0 ? HiddenLayerSizes[^1] : MlpInput;

    private int MlpInput => (NumericFeatures + CategoricalFeatures) * EmbeddingSize + IndicatorFeatures;

    /// <inheritdoc/>
    public override long? ParameterCount(int inputSize)
    {
        checked
        {
            long n = NumericFeatures, m = CategoricalFeatures, d = EmbeddingSize, k = Frequencies;
            long count = n * k + n * 2 * k * d + n * d + m * (Buckets + 1L) * d;
            long width = MlpInput;
            foreach (int h in HiddenLayerSizes) { count += width * h + h; width = h; }
            return count;
        }
    }

    /// <inheritdoc/>
    public override void Validate(int inputSize)
    {
        if (CategoricalBits is < 1 or > 30) throw new ArgumentOutOfRangeException(nameof(CategoricalBits), "TabularBackbone.CategoricalBits must be in [1, 30].");
        if (NumericFeatures < 0 || IndicatorFeatures < 0 || CategoricalFeatures < 0 || (long)NumericFeatures + IndicatorFeatures + (long)CategoricalFeatures * CategoricalBits != inputSize)
            throw new ArgumentOutOfRangeException(nameof(NumericFeatures),
                $"TabularBackbone: {NumericFeatures} numeric + {IndicatorFeatures} indicator + {CategoricalFeatures} × {CategoricalBits} categorical slots do not make the rows' {inputSize} features (make the layout with ContinualFeaturizer).");
        if (Buckets is < 1 or > 1 << 24) throw new ArgumentOutOfRangeException(nameof(Buckets), "TabularBackbone.Buckets must be in [1, 16,777,216].");
        if (EmbeddingSize is < 1 or > 1024) throw new ArgumentOutOfRangeException(nameof(EmbeddingSize), "TabularBackbone.EmbeddingSize must be in [1, 1,024].");
        if (Frequencies is < 1 or > 1024) throw new ArgumentOutOfRangeException(nameof(Frequencies), "TabularBackbone.Frequencies must be in [1, 1,024].");
        if (!(FrequencyScale > 0 && FrequencyScale <= 1000)) throw new ArgumentOutOfRangeException(nameof(FrequencyScale), "TabularBackbone.FrequencyScale must be in (0, 1,000].");
        if (HiddenLayerSizes is null || HiddenLayerSizes.Length > 16 || HiddenLayerSizes.Any(h => h is < 1 or > 1 << 16))
            throw new ArgumentOutOfRangeException(nameof(HiddenLayerSizes), "TabularBackbone.HiddenLayerSizes must be at most 16 sizes in [1, 65,536].");
        if (!(Dropout >= 0 && Dropout < 1)) throw new ArgumentOutOfRangeException(nameof(Dropout), "TabularBackbone.Dropout must be in [0, 1).");
        if (ParameterCount(inputSize) > ModelIO.MaxCount) throw new ArgumentOutOfRangeException(nameof(Buckets), $"TabularBackbone: {ParameterCount(inputSize):N0} parameters is too many; use fewer buckets or a smaller embedding.");
    }

    /// <inheritdoc/>
    public override nn.Module<Tensor, Tensor> CreateModule(ContinualBackboneContext context)
    {
        Validate(context.InputSize);
        return new Module(this, context);
    }

    /// <summary>The network: periodic embeddings, embedding tables, the MLP.</summary>
    internal sealed class Module : nn.Module<Tensor, Tensor>
    {
        /// <summary>For export: the layout and the parameters, as <see cref="forward"/> uses them.</summary>
        internal (int Numeric, int Indicators, int Categorical, int Bits, int Buckets, int EmbeddingSize, int Frequencies) Layout => (_numeric, _indicators, _categorical, _bits, _buckets, _d, _k);
        internal Tensor FrequencyWeights => frequencies;
        internal Tensor NumericWeight => numeric_weight;
        internal Tensor NumericBias => numeric_bias;
        internal Tensor Embeddings => embeddings;
        internal Sequential Mlp => mlp;

        private readonly int _numeric, _indicators, _categorical, _bits, _buckets, _d, _k;
        private readonly Parameter frequencies;     // [n, k]
        private readonly Parameter numeric_weight;  // [n, 2k, d]
        private readonly Parameter numeric_bias;    // [n, d]
        private readonly Parameter embeddings;      // [(B + 1) · m, d]: every column's table, one after the other
        private readonly Sequential mlp;

        public Module(TabularBackbone settings, ContinualBackboneContext context) : base(nameof(TabularBackbone))
        {
            (_numeric, _indicators, _categorical, _bits, _buckets, _d, _k) = (settings.NumericFeatures, settings.IndicatorFeatures, settings.CategoricalFeatures, settings.CategoricalBits, settings.Buckets, settings.EmbeddingSize, settings.Frequencies);
            var random = context.Random;
            using (no_grad())
            {
                // Made inside the fit's dispose scope, but owned by the module: detached from it (nn.Linear does the same).
                frequencies = Owned(empty(Math.Max(_numeric, 1), _k));
                numeric_weight = Owned(empty(Math.Max(_numeric, 1), 2 * _k, _d));
                numeric_bias = Owned(empty(Math.Max(_numeric, 1), _d));
                embeddings = Owned(empty(Math.Max((long)(_buckets + 1) * _categorical, 1), _d));
                if (random is not null)
                {
                    frequencies.normal_(0, settings.FrequencyScale, random);
                    double bound = 1 / Math.Sqrt(2 * _k); // nn.Linear's rule for a 2k-input layer
                    numeric_weight.uniform_(-bound, bound, random);
                    numeric_bias.uniform_(-bound, bound, random);
                    embeddings.normal_(0, 1, random); // nn.Embedding's N(0, 1)
                }
            }
            var layers = new List<(string, nn.Module<Tensor, Tensor>)>();
            int width = settings.MlpInput;
            for (int i = 0; i < settings.HiddenLayerSizes.Length; i++)
            {
                var linear = nn.Linear(width, settings.HiddenLayerSizes[i]);
                if (random is not null) Initializer.Reset(linear.weight!, linear.bias, random);
                layers.Add(($"linear{i}", linear));
                layers.Add(($"activation{i}", nn.ReLU()));
                if (settings.Dropout > 0) layers.Add(($"dropout{i}", context.Dropout(settings.Dropout)));
                width = settings.HiddenLayerSizes[i];
            }
            mlp = nn.Sequential(layers);
            RegisterComponents();
        }

        private static Parameter Owned(Tensor data) => (Parameter)new Parameter(data.DetachFromDisposeScope(), requires_grad: true).DetachFromDisposeScope();

        public override Tensor forward(Tensor x)
        {
            using var scope = NewDisposeScope();
            var parts = new List<Tensor>(3);
            if (_numeric > 0)
            {
                Tensor values = x.narrow(1, 0, _numeric);                                  // [b, n]
                Tensor angles = values.unsqueeze(2) * frequencies.unsqueeze(0) * (2 * Math.PI); // [b, n, k]
                Tensor periodic = cat([angles.sin(), angles.cos()], 2);                    // [b, n, 2k]
                Tensor embedded = nn.functional.relu(einsum("bnk,nkd->bnd", periodic, numeric_weight) + numeric_bias); // [b, n, d]
                parts.Add(embedded.flatten(1));
            }
            if (_indicators > 0) parts.Add(x.narrow(1, _numeric, _indicators));
            if (_categorical > 0)
            {
                // Each column's bits → its bucket index; all ones (ML.NET's code for a missing key) → row 0, else index + 1.
                Tensor bits = x.narrow(1, _numeric + _indicators, _categorical * _bits).reshape(x.shape[0], _categorical, _bits).round();
                Tensor powers = pow(2.0f, arange(_bits - 1, -1, -1, dtype: ScalarType.Float32, device: x.device)); // most significant bit first
                Tensor index = (bits * powers).sum(2);                                     // [b, m], exact: sums of powers of two
                Tensor missing = index.ge((1L << _bits) - 1);
                Tensor ids = (index + 1).masked_fill(missing, 0).clamp(0, _buckets).to_type(ScalarType.Int64);
                Tensor offsets = arange(_categorical, dtype: ScalarType.Int64, device: x.device).mul_(_buckets + 1L); // where each column's table starts
                Tensor rows = ids + offsets.unsqueeze(0);
                parts.Add(embeddings.index_select(0, rows.flatten()).view(x.shape[0], _categorical * _d)); // a gather: only the batch's rows get gradients
            }
            Tensor features = parts.Count == 1 ? parts[0] : cat(parts, 1);
            return mlp.call(features).MoveToOuterDisposeScope();
        }
    }
}
