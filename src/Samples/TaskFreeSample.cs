using Microsoft.ML;
using Microsoft.ML.Data;
using Microsoft.ML.Continual;

namespace Samples;

/// <summary>
/// Sample for streams without task boundaries: MNIST-360 (<c>ml.Continual().Benchmarks.Mnist360</c>) trained in one pass in
/// its order (<c>ShuffleRows = false</c>, one epoch) by <c>Trainers.Er</c> and <c>Trainers.DerPlusPlus</c>, whose memories
/// change at every step; the pass's prequential accuracy (<c>ContinualFitStatistics.EpochTrainingAccuracy</c>) beside the
/// accuracy on the rotated test digits afterwards; Split MNIST with fuzzy boundaries (<c>FuzzySplitMnist</c>,
/// <c>TaskStream.TrainingInOrder</c>) trained by online EWC consolidating every N steps
/// (<c>Boundaries = ContinualBoundaries.EverySteps</c>), then the same stream in twelve refit jobs through the model file
/// (<c>ContinueAcrossFits</c>), bit-identical to the one pass; GEM, LwF, iCaRL and ER-ACE with boundaries where the inputs
/// shift; and Rotated MNIST with given angles (<c>RotatedMnist(angles)</c>).
/// </summary>
public static class TaskFreeSample
{
    public static void Run(string workDirectory)
    {
        var ml = new MLContext(seed: 1);
        TaskStream stream = ml.Continual().Benchmarks.Mnist360(batchSize: 16);
        T OnePass<T>(T options) where T : ContinualTrainerOptions
        {
            options.ShuffleRows = false;       // the stream's order is the drift: keep it
            options.NumberOfEpochs = 1;
            options.BatchSize = 16;
            options.Optimizer = ContinualOptimizer.Sgd;
            options.LearningRate = 0.2;
            return options;
        }
        var trainers = new (string Name, ContinualTrainer Trainer)[]
        {
            ("FineTune", ml.Continual().Trainers.FineTune(OnePass(new FineTuneTrainer.Options()))),
            ("ER, 500 rows", ml.Continual().Trainers.Er(OnePass(new ErTrainer.Options { MemorySize = 500 }))),
            ("DER++, 500 rows", ml.Continual().Trainers.DerPlusPlus(OnePass(new DerPlusPlusTrainer.Options { MemorySize = 500, Beta = 1.0 }))),
        };
        Console.WriteLine($"MNIST-360: {stream[0].Train.GetRowCount():N0} rows in one pass, no task boundaries.");
        foreach (var (name, trainer) in trainers)
        {
            ContinualFitStatistics? pass = null;
            var model = trainer.Fit(stream[0].Train, null, new ContinualFitOptions { Completed = s => pass = s });
            Console.WriteLine($"{name}: prequential accuracy {pass!.EpochTrainingAccuracy[0]:P1}, test accuracy after the pass {ml.Continual().Score(model, stream[0].Test):P1}");
        }

        // Split MNIST whose pairs of digits blend into each other (fuzzy boundaries), in one pass: online EWC told nothing
        // about where a pair ends, consolidating every 23 steps (about one pair's worth) on a sample of the rows since.
        var fuzzy = ml.Continual().Benchmarks.FuzzySplitMnist(ContinualScenario.DomainIncremental, fuzzyBatches: 5, trainSamplesPerTask: 3000, testSamplesPerTask: 500);
        T TaskFree<T>(T options) where T : ContinualTrainerOptions
        {
            options.ShuffleRows = false;
            options.NumberOfEpochs = 1;
            options.Boundaries = ContinualBoundaries.EverySteps;
            options.BoundaryEverySteps = 23;
            return options;
        }
        static T OnPlateau<T>(T options) where T : ContinualTrainerOptions
        {
            options.Boundaries = ContinualBoundaries.OnLossPlateau; // instead of every 23 steps
            return options;
        }
        static T OnInputShift<T>(T options) where T : ContinualTrainerOptions
        {
            options.Boundaries = ContinualBoundaries.OnInputShift; // a two-sample test on each block of 512 rows
            return options;
        }
        foreach (var (name, trainer) in new (string, ContinualTrainer)[]
        {
            ("FineTune", ml.Continual().Trainers.FineTune(TaskFree(new FineTuneTrainer.Options()))),
            ("online EWC", ml.Continual().Trainers.Ewc(TaskFree(new EwcTrainer.Options { Mode = EwcMode.Online }))),
            // The same, with a new optimizer at each boundary, as a new fit would start.
            ("online EWC, optimizer reset at each boundary", ml.Continual().Trainers.Ewc(TaskFree(new EwcTrainer.Options { Mode = EwcMode.Online, BoundaryResetsOptimizer = true }))),
            // Boundaries where the task loss settles after a rise (Aljundi et al. 2019), no step count given.
            ("online EWC, boundaries on a loss plateau", ml.Continual().Trainers.Ewc(OnPlateau(TaskFree(new EwcTrainer.Options { Mode = EwcMode.Online })))),
            // Boundaries where the inputs change: each block of rows compared with the rows since the last boundary.
            ("online EWC, boundaries where the inputs shift", ml.Continual().Trainers.Ewc(OnInputShift(TaskFree(new EwcTrainer.Options { Mode = EwcMode.Online })))),
            // GEM's memory inside a fit: at most MemoryGroupsInsideFit groups (constraints), each a sample of its windows.
            ("GEM, boundaries where the inputs shift", ml.Continual().Trainers.Gem(OnInputShift(TaskFree(new GemTrainer.Options { MemoryGroupsInsideFit = 5 })))),
            // LwF keeps no rows: its teacher becomes the network as it is at each boundary.
            ("LwF, boundaries where the inputs shift", ml.Continual().Trainers.Lwf(OnInputShift(TaskFree(new LwfTrainer.Options())))),
            // iCaRL replays its exemplars at every step; at each boundary the rows since the last one are herded into them.
            ("iCaRL, boundaries where the inputs shift", ml.Continual().Trainers.Icarl(OnInputShift(TaskFree(new IcarlTrainer.Options { MemorySize = 500 })))),
            // ER-ACE's asymmetric loss starts at the first boundary.
            ("ER-ACE, boundaries where the inputs shift", ml.Continual().Trainers.ErAce(OnInputShift(TaskFree(new ErAceTrainer.Options())))),
        })
        {
            ContinualFitStatistics? pass = null;
            var model = trainer.Fit(fuzzy.TrainingInOrder(), null, new ContinualFitOptions { Completed = s => pass = s });
            Console.WriteLine($"{fuzzy.Name}, {name}: {pass!.BoundariesPassed} boundaries passed, mean test accuracy over the pairs {fuzzy.Average(t => ml.Continual().Score(model, t.Test)):P1}");
        }

        // The same stream arriving in slices, one refit job per slice (an hourly batch job), each loading the model file the
        // previous job saved: with ContinueAcrossFits the jobs train exactly as the one pass above would, to the bit.
        var options = TaskFree(new EwcTrainer.Options { Mode = EwcMode.Online, ContinueAcrossFits = true });
        var onePass = ml.Continual().Trainers.Ewc(options).Fit(fuzzy.TrainingInOrder());
        IDataView all = fuzzy.TrainingInOrder();
        long rows = all.GetRowCount() ?? all.GetColumn<uint>("Label").LongCount();
        const int jobs = 12;
        string file = Path.Combine(workDirectory, "task-free-stream.zip");
        for (int job = 0; job < jobs; job++)
        {
            long start = rows * job / jobs, end = rows * (job + 1) / jobs;
            IDataView slice = ml.Data.TakeRows(start == 0 ? all : ml.Data.SkipRows(all, start), end - start);
            ITransformer model = job == 0 ? ml.Continual().Trainers.Ewc(options).Fit(slice)
                : ml.Continual().Refit(ml.Model.Load(file, out _), slice);
            ml.Model.Save(model, all.Schema, file);
        }
        var sliced = ml.Model.Load(file, out _);
        float[] Scores(ITransformer model) => ml.Data.CreateEnumerable<ScoreRow>(model.Transform(fuzzy[0].Test), reuseRowObject: false).SelectMany(r => r.Score).ToArray();
        Console.WriteLine($"{fuzzy.Name}, online EWC in {jobs} refit jobs with ContinueAcrossFits: scores identical to one pass: {Scores(sliced).SequenceEqual(Scores(onePass))}, " +
            $"mean test accuracy over the pairs {fuzzy.Average(t => ml.Continual().Score(sliced, t.Test)):P1}");

        // Rotated MNIST with the tasks' angles given, e.g. drawn at random once per task as Mammoth's rot-mnist.
        var random = new Random(0);
        var rotated = ml.Continual().Benchmarks.RotatedMnist(Enumerable.Range(0, 3).Select(_ => random.NextDouble() * 180).ToArray(), trainSamplesPerTask: 1000, testSamplesPerTask: 200);
        Console.WriteLine($"{rotated.Name}: {string.Join(", ", rotated.Select(t => t.Name))}");
    }

    private sealed class ScoreRow
    {
        public float[] Score { get; set; } = [];
    }
}
