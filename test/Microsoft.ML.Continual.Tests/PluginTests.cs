using System.Collections.Concurrent;
using Xunit;
using static TorchSharp.torch;

namespace Microsoft.ML.Continual.Tests;

/// <summary>
/// A method written the way a user writes one: it records every hook call, asks for one extra batch (half of the task
/// batch's rows, weight 0: forwarded but no default loss), reads the step's outputs, adds a loss term and keeps counts
/// through the state store. Its calls go to <see cref="Calls"/>, under its <see cref="Tag"/> setting.
/// </summary>
public sealed class RecordingPlugin : ContinualPlugin
{
    public const string RegisteredName = "Tests.Recording";

    public static readonly ConcurrentDictionary<string, List<string>> Calls = new();

    static RecordingPlugin() => ContinualPlugins.Register<RecordingPlugin>(RegisteredName);

    /// <summary>Forces the registration (the static constructor) before a model is loaded.</summary>
    public static void EnsureRegistered() { }

    public string Tag { get; set; } = "";
    public double TermWeight { get; set; } = 0.25;

    public long Steps { get; private set; }
    public long Tasks { get; private set; }
    public double LastTermValue { get; private set; }

    private void Log(string call) => Calls.GetOrAdd(Tag, _ => new List<string>()).Add(call);

    public override void AttachTo(ContinualNetwork network) => Log("AttachTo");
    public override void BeforeTask(ContinualTrainingContext context) => Log($"BeforeTask {context.TaskIndex}");
    public override int EpochCount(ContinualTrainingContext context) { Log("EpochCount"); return context.Options.NumberOfEpochs; }
    public override void BeforeEpoch(ContinualTrainingContext context) => Log($"BeforeEpoch {context.Epoch}");
    public override IEnumerable<TorchSharp.Modules.Parameter> ExtraParameters(ContinualTrainingContext context) { Log("ExtraParameters"); return []; }

    public override IEnumerable<ContinualBatch> ExtraBatches(ContinualTrainingContext context, ContinualBatch taskBatch)
    {
        Log("ExtraBatches");
        long half = Math.Max(1, taskBatch.Rows / 2);
        yield return new ContinualBatch(taskBatch.Features.narrow(0, 0, half), taskBatch.Targets.narrow(0, 0, half), taskBatch.Heads?.narrow(0, 0, half), Weight: 0);
    }

    public override void BeforeBackward(ContinualTrainingContext context, ContinualStep step)
    {
        var extra = step.ExtraBatchesOf(this).Single();
        Log($"BeforeBackward task {step.TaskOutputs!.shape[0]}x{step.TaskOutputs.shape[1]} extra {extra.Outputs.shape[0]} terms {string.Join("+", step.LossTerms.Select(t => t.Name))}");
        Tensor term = extra.Outputs.pow(2).mean() * TermWeight;
        LastTermValue = term.item<float>();
        step.AddLoss("recording", term, extra);
    }

    public override void AfterBackward(ContinualTrainingContext context) => Log("AfterBackward");
    public override void AfterStep(ContinualTrainingContext context) { Log("AfterStep"); Steps++; }
    public override void AfterEpoch(ContinualTrainingContext context, double meanTaskLoss) => Log($"AfterEpoch {context.Epoch}");
    public override void AfterTask(ContinualTrainingContext context) { Log($"AfterTask {context.TaskIndex}"); Tasks++; }

    public override void SaveState(ContinualState state)
    {
        Log("SaveState");
        state.Version = 3;
        state.Set("steps", Steps);
        state.Set("tasks", Tasks);
        using var marker = arange(4, dtype: ScalarType.Float32);
        state.Set("marker", marker);
    }

    public override void LoadState(ContinualState state)
    {
        Log("LoadState");
        Assert.Equal(3, state.Version);
        Steps = state.GetInt64("steps");
        Tasks = state.GetInt64("tasks");
        using var marker = state.GetTensor("marker");
        Assert.Equal([0f, 1f, 2f, 3f], marker.data<float>().ToArray());
    }

    public override IReadOnlyDictionary<string, long> StateSizes() => new Dictionary<string, long> { ["recorded steps"] = Steps, ["recorded tasks"] = Tasks };
}

public class PluginTests
{
    static PluginTests() => RecordingPlugin.EnsureRegistered();

    private static ComposedTrainer.Options Small() => new() { HiddenLayerSizes = [8], NumberOfEpochs = 2, BatchSize = 32, LearningRate = 0.01, Seed = 3 };

    [Fact]
    public void EveryHook_RunsInTheDocumentedOrder_OverTwoTasksWithAnExtraBatch()
    {
        var ml = new MLContext(seed: 1);
        string tag = Guid.NewGuid().ToString("N");
        var trainer = ml.Continual().Trainers.Compose(Small(), new RecordingPlugin { Tag = tag });
        var model = trainer.Fit(TestData.View(ml, 0, [0, 1], 64, 1));                      // 2 steps per epoch
        var next = (ContinualTransformer)ml.Continual().Refit(model, TestData.View(ml, 1, [2, 3, 4], 64, 1));

        var expected = new List<string>();
        void Task(int index, string terms, int outputs)
        {
            expected.AddRange(["AttachTo", $"BeforeTask {index}", "ExtraParameters"]);
            for (int epoch = 0; epoch < 2; epoch++)
            {
                expected.AddRange(["EpochCount", $"BeforeEpoch {epoch}", "EpochCount"]);
                for (int step = 0; step < 2; step++)
                    expected.AddRange(["ExtraBatches", $"BeforeBackward task 32x{outputs} extra 16 terms {terms}", "AfterBackward", "AfterStep"]);
                expected.Add($"AfterEpoch {epoch}");
            }
            expected.AddRange(["EpochCount", $"AfterTask {index}"]);
        }
        Task(0, "task", 2);
        expected.AddRange(["SaveState", "LoadState"]); // the refit trains a copy, made through the store
        Task(1, "task", 5);                             // the head grew to five classes; the extra batch adds no default term (weight 0)
        Assert.Equal(expected, RecordingPlugin.Calls[tag]);

        // The term was added: the step's loss is task + recording, and the state carries on.
        Assert.Equal(8, next.StateSizes["recorded steps"]);
        Assert.Equal(2, next.StateSizes["recorded tasks"]);
        Assert.Equal(["Tests.Recording"], next.PluginNames);
        Assert.Equal(4, ((ContinualTransformer)model).StateSizes["recorded steps"]); // the first model did not change
    }

    [Fact]
    public void PluginState_SurvivesAFreshProcessSaveLoadAndRefit()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var data = TestData.View(ml, 0, [0, 1], 64, 1);
        var model = ml.Continual().Trainers.Compose(Small(), new RecordingPlugin { Tag = "fresh", TermWeight = 0.5 }).Fit(data);
        ml.Model.Save(model, data.Schema, temp.File("model.zip"));

        Program.RunFresh("plugin-refit", temp.File("model.zip"), "1", "2,3", "64", "1", temp.File("next.zip"));

        var next = (ContinualTransformer)ml.Continual().LoadModel(temp.File("next.zip"), out _);
        Assert.Equal(8, next.StateSizes["recorded steps"]);
        Assert.Equal(2, next.StateSizes["recorded tasks"]);
        var plugin = (RecordingPlugin)next.State.Plugins.Items.Single();
        Assert.Equal(("fresh", 0.5), (plugin.Tag, plugin.TermWeight)); // the settings travelled too
        // And a fresh process that has not registered the plugin type names it.
        string message = Program.RunFreshForOutput("load-only", temp.File("next.zip"));
        Assert.True(message.Contains("ContinualModelFormatException"), message);
        Assert.True(message.Contains("plugin 'Tests.Recording', which is not registered"), message);
    }

    [Fact]
    public void WarmStart_BetweenReplayAloneAndReplayWithL2_KeepsWhatBothShare()
    {
        var ml = new MLContext(seed: 1);
        var task1 = TestData.View(ml, 0, [0, 1, 2], 150, 1);
        var task2 = TestData.View(ml, 1, [0, 1, 2], 150, 2);
        ReplayTrainer.Options Replay(ReplayRegularization regularization) => new()
        {
            HiddenLayerSizes = [8], NumberOfEpochs = 1, Seed = 3, MemorySize = 50, Regularization = regularization,
        };
        var alone = ml.Continual().Trainers.Replay(Replay(ReplayRegularization.None));
        var withL2 = ml.Continual().Trainers.Replay(Replay(ReplayRegularization.L2));

        // Replay alone, then Replay + L2 (this threw InvalidCastException before plugins): the memory carries on, L2 starts.
        var first = alone.Fit(task1);
        var second = withL2.Fit(task2, first);
        Assert.Equal(["Replay", "L2"], second.PluginNames);
        var memory = ((ReplayPlugin)second.State.Plugins.Items[0]).Memory;
        Assert.Equal(50, memory.Count);
        Assert.Equal(300, memory.RowsOffered); // both tasks' rows were offered: the first model's memory continued
        Assert.Single(((RegularizationPlugin)second.State.Plugins.Items[1]).Terms);

        // And the reverse: L2 is dropped, the memory continues.
        var third = alone.Fit(TestData.View(ml, 2, [0, 1, 2], 150, 3), second);
        Assert.Equal(["Replay"], third.PluginNames);
        Assert.Equal(450, ((ReplayPlugin)third.State.Plugins.Items[0]).Memory.RowsOffered);
    }

    [Fact]
    public void AnyCombination_RunsOnTheOneLoop_AndEachPluginsStateIsSavedUnderItsName()
    {
        using var temp = new TempFolder();
        var ml = new MLContext(seed: 1);
        var data = TestData.View(ml, 0, [0, 1, 2], 150, 1);
        var trainer = ml.Continual().Trainers.Compose(Small(),
            new ReplayPlugin { MemorySize = 40 }, new EwcPlugin { Mode = EwcMode.Online, Lambda = 10, FisherSamples = 50 }, new RecordingPlugin { Tag = "combo" });
        var model = trainer.Fit(data);
        var next = trainer.Fit(TestData.View(ml, 1, [3, 4], 150, 2), model);
        ml.Model.Save(next, data.Schema, temp.File("combo.zip"));
        using (var zip = System.IO.Compression.ZipFile.OpenRead(temp.File("combo.zip")))
        {
            var names = zip.Entries.Select(e => e.Name).ToList();
            Assert.Contains("Plugin0-Replay.bin", names);
            Assert.Contains("Plugin1-Ewc.bin", names);
            Assert.Contains("Plugin2-Tests.Recording.bin", names);
        }
        var loaded = (ContinualTransformer)ml.Continual().LoadModel(temp.File("combo.zip"), out _);
        Assert.Equal(["Replay", "Ewc", "Tests.Recording"], loaded.PluginNames);
        Assert.Equal(40, loaded.StateSizes["memory rows"]);
        Assert.Equal(1, loaded.StateSizes["penalty terms"]);
        Assert.Equal(2, loaded.StateSizes["recorded tasks"]);
        Assert.Equal(TestData.Bytes(TestData.Scores(next, data)), TestData.Bytes(TestData.Scores(loaded, data)));
        var ewc = (EwcPlugin)loaded.State.Plugins.Items[1];
        Assert.Equal((EwcMode.Online, 10.0, 50), (ewc.Mode, ewc.Lambda, ewc.FisherSamples!.Value));
    }

    [Fact]
    public void ThePresets_AreTheirPlugins_WithTheOptionsDefaults()
    {
        var ml = new MLContext(seed: 1);
        Assert.Empty(ml.Continual().Trainers.FineTune().PluginNames);
        Assert.Equal(["Ewc"], ml.Continual().Trainers.Ewc().PluginNames);
        Assert.Equal(["Replay", "Ewc"], ml.Continual().Trainers.Replay(new ReplayTrainer.Options { Regularization = ReplayRegularization.OnlineEwc }).PluginNames);
        Assert.Equal(["PackNet"], ml.Continual().Trainers.PackNet().PluginNames);
        // Every plugin's defaults are its trainer's defaults, so Compose(new XPlugin()) is the trainer X. DER++ is the one
        // preset of a plugin that another preset (DER) also uses: its β differs from the plugin's default (0, DER).
        foreach (string name in ContinualTrainers.Names.Where(n => n is not "Composed" and not "FineTune" and not "DerPlusPlus"))
        {
            var trainer = ml.Continual().Trainers.Create(name);
            var created = TrainerRegistry.Get(name).CreatePlugins(trainer.GetOptions());
            foreach (var plugin in created)
            {
                if (name == "Replay" && plugin is not ReplayPlugin) continue;
                var fresh = ContinualPlugins.Create(plugin.Name, []);
                Assert.Equal(Settings.ToPairs(fresh), Settings.ToPairs(plugin));
            }
        }
    }

    [Fact]
    public void ContinuingAcrossTheArchitectureFamily_IsRefused_AndAnUnknownPluginTypeIsNamed()
    {
        var ml = new MLContext(seed: 1);
        var data = TestData.View(ml, 0, [0, 1], 100, 1);
        var fineTune = ml.Continual().Trainers.FineTune(new FineTuneTrainer.Options { HiddenLayerSizes = [8], NumberOfEpochs = 1, TaskIdColumnName = "Task" }).Fit(data);
        var packNet = ml.Continual().Trainers.PackNet(new PackNetTrainer.Options { HiddenLayerSizes = [8], NumberOfEpochs = 1, TaskIdColumnName = "Task" });
        var error = Assert.Throws<ArgumentException>(() => packNet.Fit(TestData.View(ml, 1, [0, 1], 100, 1), fineTune));
        Assert.Contains("divides the network among its tasks", error.Message);
        var unregistered = Assert.Throws<InvalidOperationException>(() => ml.Continual().Trainers.Compose(null, new UnregisteredPlugin()));
        Assert.Contains("not registered", unregistered.Message);
        Assert.Throws<ArgumentException>(() => ml.Continual().Trainers.Compose(null, new PackNetPlugin(), new CpgPlugin()));
        Assert.Throws<ArgumentException>(() => ml.Continual().Trainers.Compose(null, new EwcPlugin(), new EwcPlugin()));
    }

    private sealed class UnregisteredPlugin : ContinualPlugin { }

    [Fact]
    public void TheStateStore_RefusesDamagedBytes_WithoutAllocatingForThem()
    {
        using var state = new ContinualState { Version = 2 };
        using (var t = ones(3, 4)) state.Set("w", t);
        state.Set("n", 7L);
        state.Set("x", 0.5);
        state.Set("name", "text");
        using var buffer = new MemoryStream();
        using (var w = new BinaryWriter(buffer, System.Text.Encoding.UTF8, leaveOpen: true)) state.Write(w);
        byte[] bytes = buffer.ToArray();
        ContinualState Read(byte[] b)
        {
            using var r = new BinaryReader(new MemoryStream(b));
            return ContinualState.Read(r, b.Length, "test state");
        }
        using (var back = Read(bytes))
        {
            Assert.Equal((2, 7L, 0.5, "text"), (back.Version, back.GetInt64("n"), back.GetDouble("x"), back.GetString("name")));
            Assert.Equal(12, back.GetTensor("w").sum().item<float>());
            Assert.Throws<ContinualModelFormatException>(() => back.GetDouble("n"));   // the wrong kind is named
            Assert.Throws<ContinualModelFormatException>(() => back.GetTensor("nope")); // a missing entry is named
        }
        // Every byte changed to every value, every truncation and an extension: a format error or a store, never more.
        for (int i = 0; i < bytes.Length; i++)
            foreach (byte v in new byte[] { 0, 1, 0x7F, 0x80, 0xFF })
            {
                byte[] damaged = (byte[])bytes.Clone();
                damaged[i] = v;
                try { Read(damaged).Dispose(); } catch (ContinualModelFormatException) { }
            }
        for (int length = 0; length < bytes.Length; length++)
            Assert.Throws<ContinualModelFormatException>(() => Read(bytes[..length]));
        Assert.Throws<ContinualModelFormatException>(() => Read([.. bytes, 0]));
        // A tensor that claims 2^40 elements in a 100-byte entry fails before any allocation.
        byte[] huge = (byte[])bytes.Clone();
        int shapeAt = IndexOf(bytes, BitConverter.GetBytes(3L));
        BitConverter.GetBytes(1L << 40).CopyTo(huge, shapeAt);
        var e = Assert.Throws<ContinualModelFormatException>(() => Read(huge));
        Assert.Contains("more than its entry holds", e.Message);
    }

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
            if (haystack.AsSpan(i, needle.Length).SequenceEqual(needle)) return i;
        return -1;
    }
}
