// Preemption and positional checkpoints: SIGUSR2 (train.preempt_signal) or SIGTERM at any batch ends the run with
// exit code 75 and a checkpoint of the position inside the epoch; `bilevel resume` continues with the next batch of
// the same shuffle and the finished run equals an uninterrupted one (metrics.csv value for value but timings, the
// final and best models, the checkpoint list), for backprop, ep, dual_prop and a quantized run whose flip state and
// epoch-start codes must round-trip. checkpoint.every_batches adds periodic positional checkpoints; under Slurm
// the preemption signal requeues the job (`scontrol`, faked on PATH here).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/run/checkpoint.h"
#include "bilevel/train/experiment.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace bilevel;
using namespace testutil;

namespace {

// 500 training examples in batches of 32: 16 batches per epoch, the last one of 20.
const std::string kYaml = small_synthetic_yaml("preempt", 3, R"(train:
  epochs: 4
  batch_size: 32
  threads: 1
optimizer:
  name: adam
  lr: 0.01
checkpoint:
  every: 1
)");
constexpr int kBatches = 16;

const std::vector<std::string> kBackprop{};
const std::vector<std::string> kEp{"rule.name=ep", "train.loss=mse", "model.activation=sigmoid4",
                                   "rule.beta=0.5", "rule.random_sign=true", "optimizer.name=sgd",
                                   "optimizer.lr=0.2"};
const std::vector<std::string> kDualProp{"rule.name=dual_prop", "model.activation=sigmoid4"};
const std::vector<std::string> kFlip{"quantization.enabled=true", "quantization.weights.solver=flip",
                                     "quantization.weights.learn_scale=true", "quantization.flip.tau=1e-5",
                                     "quantization.flip.gamma=0.01"};

struct Workspace {
  TempDir tmp{"bilevel_test_preempt"};
  std::string config = tmp.write("cfg.yaml", kYaml);
  fs::path out() const { return tmp.path() / "out"; }
  std::vector<std::string> args(const std::vector<std::string>& overrides) const {
    std::vector<std::string> a{"train", config, "output.root=" + out().string()};
    a.insert(a.end(), overrides.begin(), overrides.end());
    return a;
  }
  CliResult train(const std::vector<std::string>& overrides, const std::vector<std::string>& env = {}) const {
    return run_cli(args(overrides), env);
  }
};

YAML::Node meta_of(const fs::path& run) { return YAML::LoadFile((run / "meta.yaml").string()); }

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::string eval_text(const fs::path& run, const std::vector<std::string>& extra = {}) {
  CliResult e = run_cli(std::vector<std::string>{"eval", run.string()} + extra);
  EXPECT_EQ(e.exit_code, 0) << e.describe();
  std::string kept, line;
  std::istringstream in(e.out);
  while (std::getline(in, line))
    if (line.rfind("seconds:", 0) != 0 && line.rfind("examples_per_second:", 0) != 0) kept += line + "\n";
  return kept;
}

bool has_temp_files(const fs::path& run) {
  for (const auto& e : fs::recursive_directory_iterator(run))
    if (e.path().extension() == ".tmp") return true;
  return false;
}

// One uninterrupted run per set of overrides, shared by the tests of this program.
const fs::path& reference(const std::vector<std::string>& overrides) {
  static std::map<std::vector<std::string>, fs::path> cache;
  static std::vector<std::unique_ptr<Workspace>> keep;
  auto it = cache.find(overrides);
  if (it != cache.end()) return it->second;
  keep.push_back(std::make_unique<Workspace>());
  CliResult r = keep.back()->train(overrides);
  if (r.exit_code != 0) throw std::runtime_error("reference run failed: " + r.describe());
  return cache.emplace(overrides, fs::path(r.first_line())).first->second;
}

// Resumes `run` to the end and checks it against the uninterrupted reference.
void resume_and_compare(const fs::path& run, const std::vector<std::string>& overrides) {
  const fs::path& ref = reference(overrides);
  CliResult resumed = run_cli({"resume", run.string()});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  expect_same_metrics(ref / "metrics.csv", run / "metrics.csv");
  EXPECT_EQ(meta_of(run)["status"].as<std::string>(), "completed");
  // Positional checkpoints are superseded by the epoch checkpoints that follow them.
  EXPECT_EQ(list_dir(run / "checkpoints"), list_dir(ref / "checkpoints"));
  EXPECT_FALSE(has_temp_files(run));
  EXPECT_EQ(eval_text(run), eval_text(ref));
  EXPECT_EQ(eval_text(run, {"--checkpoint", (run / "best.pt").string()}),
            eval_text(ref, {"--checkpoint", (ref / "best.pt").string()}));
}

// A signal raised while batch `batch` (0-based) of 1-based `epoch` runs: that batch finishes, the run checkpoints
// the position after it and exits 75; the resumed run equals the reference.
void preempt_and_resume(const std::vector<std::string>& overrides, const std::string& signal, int epoch, int batch) {
  SCOPED_TRACE(signal + " at epoch " + std::to_string(epoch) + ", batch " + std::to_string(batch));
  Workspace w;
  CliResult r = w.train(overrides, {"BILEVEL_CRASH_AT=batch:" + std::to_string(epoch) + "." + std::to_string(batch) +
                                    "=" + signal});
  ASSERT_EQ(r.exit_code, 75) << r.describe();
  EXPECT_TRUE(contains(r.err, "preempted")) << r.describe();
  const fs::path run = r.first_line();
  YAML::Node meta = meta_of(run);
  EXPECT_EQ(meta["status"].as<std::string>(), "preempted");
  EXPECT_EQ(meta["preempted_at"]["epoch"].as<int>(), epoch);
  EXPECT_EQ(meta["preempted_at"]["batch"].as<int>(), batch + 1);
  EXPECT_EQ(meta["preempted_at"]["signal"].as<std::string>(), "SIG" + signal);
  EXPECT_FALSE(meta["preempted_at"]["requeue"].IsDefined());  // not under Slurm
  EXPECT_EQ(complete_rows(run / "metrics.csv"), epoch - 1);
  const auto latest = latest_checkpoint(run / "checkpoints");
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->filename(), checkpoint_path("", epoch - 1, batch + 1).filename());
  // Only one positional checkpoint, beside the epoch checkpoints before it.
  EXPECT_EQ(list_dir(run / "checkpoints").size(), size_t(epoch));
  EXPECT_FALSE(fs::exists(run / "final.pt"));
  EXPECT_FALSE(has_temp_files(run));
  resume_and_compare(run, overrides);
  YAML::Node after = meta_of(run);
  ASSERT_EQ(after["resumes"].size(), 1u);
  EXPECT_EQ(after["resumes"][0]["from_epoch"].as<int>(), epoch - 1);
  EXPECT_EQ(after["resumes"][0]["from_batch"].as<int>(), batch + 1);
  EXPECT_FALSE(after["preempted_at"].IsDefined());
}

}  // namespace

TEST(Preempt, Usr2AtEveryKindOfBatchResumesExactly) {
  preempt_and_resume(kBackprop, "USR2", 2, 5);                  // mid-epoch
  preempt_and_resume(kBackprop, "USR2", 1, 0);                  // the first batch
  preempt_and_resume(kBackprop, "USR2", 3, kBatches - 1);       // the last batch of an epoch: before evaluation
  preempt_and_resume(kBackprop, "USR2", 4, kBatches - 1);       // the last batch of the run
}

TEST(Preempt, SigtermResumesExactly) { preempt_and_resume(kBackprop, "TERM", 2, 9); }

TEST(Preempt, EpWithRandomSignResumesExactly) { preempt_and_resume(kEp, "USR2", 2, 7); }

TEST(Preempt, DualPropResumesExactly) { preempt_and_resume(kDualProp, "USR2", 3, 2); }

// The flip rule's moving average and the epoch-start codes behind quant_flip_ratio must round-trip.
TEST(Preempt, QuantizedFlipResumesExactly) { preempt_and_resume(kFlip, "USR2", 2, 11); }

TEST(Preempt, ConfiguredSignalOnlyAndCtrlCStillInterrupts) {
  Workspace w;
  // train.preempt_signal=USR1: SIGUSR1 preempts ...
  CliResult usr1 = w.train({"train.preempt_signal=USR1"}, {"BILEVEL_CRASH_AT=batch:1.3=USR1"});
  EXPECT_EQ(usr1.exit_code, 75) << usr1.describe();
  // ... and SIGUSR2 is then no longer handled: it ends the process as by default.
  CliResult usr2 = w.train({"train.preempt_signal=USR1"}, {"BILEVEL_CRASH_AT=batch:1.3=USR2"});
  EXPECT_TRUE(usr2.signaled) << usr2.describe();
  EXPECT_EQ(usr2.signal, SIGUSR2);
  // Ctrl-C: interrupted (130), no positional checkpoint.
  CliResult interrupted = w.train({}, {"BILEVEL_CRASH_AT=batch:2.3=INT"});
  EXPECT_EQ(interrupted.exit_code, 130) << interrupted.describe();
  const fs::path run = interrupted.first_line();
  EXPECT_EQ(meta_of(run)["status"].as<std::string>(), "interrupted");
  EXPECT_EQ(list_dir(run / "checkpoints"), std::vector<std::string>{"epoch_0001.pt"});
}

TEST(Preempt, BadPreemptSignalIsAConfigError) {
  Workspace w;
  CliResult r = w.train({"train.preempt_signal=HUP"});
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "train.preempt_signal")) << r.describe();
  CliResult n = w.train({"checkpoint.every_batches=-1"});
  EXPECT_EQ(n.exit_code, 2) << n.describe();
  EXPECT_TRUE(contains(n.err, "checkpoint.every_batches")) << n.describe();
  EXPECT_TRUE(list_dir(w.out()).empty());
}

// checkpoint.every_batches: a run killed (SIGKILL, no warning) mid-epoch resumes from its newest positional
// checkpoint, and the finished run equals one that never wrote any.
TEST(Preempt, EveryBatchesCheckpointsSurviveSigkill) {
  Workspace w;
  CliResult killed = w.train({"checkpoint.every_batches=4"}, {"BILEVEL_CRASH_AT=batch:2.10"});
  ASSERT_TRUE(killed.signaled) << killed.describe();
  const fs::path run = killed.first_line();
  EXPECT_EQ(list_dir(run / "checkpoints"),
            (std::vector<std::string>{"epoch_0001.pt", "epoch_0001_batch_000008.pt"}));
  const fs::path& ref = reference(kBackprop);
  CliResult resumed = run_cli({"resume", run.string()});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  expect_same_metrics(ref / "metrics.csv", run / "metrics.csv");
  EXPECT_EQ(list_dir(run / "checkpoints"), list_dir(ref / "checkpoints"));
  EXPECT_EQ(eval_text(run), eval_text(ref));
  EXPECT_EQ(meta_of(run)["resumes"][0]["from_batch"].as<int>(), 8);
}

// A signal sent from outside at an arbitrary moment.
TEST(Preempt, ExternalSignalDuringTraining) {
  const std::vector<std::string> longer{"data.synthetic.train=3000", "data.synthetic.image_size=6",
                                        "model.hidden=[64]", "train.batch_size=16", "train.epochs=12"};
  Workspace w;
  CliProcess p(w.args(longer));
  fs::path run;
  ASSERT_TRUE(wait_until(
      [&] {
        if (run.empty()) {
          const auto names = list_dir(w.out() / "preempt");
          if (names.size() == 1) run = w.out() / "preempt" / names[0];
        }
        return !run.empty() && complete_rows(run / "metrics.csv") >= 1;
      },
      std::chrono::seconds(60)));
  p.kill(SIGUSR2);
  CliResult r = p.wait();
  ASSERT_EQ(r.exit_code, 75) << r.describe();
  ASSERT_LT(complete_rows(run / "metrics.csv"), 12) << "finished before the signal; make the run longer";
  EXPECT_EQ(meta_of(run)["status"].as<std::string>(), "preempted");
  resume_and_compare(run, longer);
}

// Under Slurm the preemption signal requeues the job (the array form for an array task); SIGTERM, which `scancel`
// also sends, does not. scontrol is a stand-in on PATH that records its arguments.
TEST(Preempt, RequeuesUnderSlurm) {
  Workspace w;
  const fs::path bin = w.tmp.path() / "bin";
  const fs::path log = w.tmp.path() / "scontrol.log";
  w.tmp.write("bin/scontrol", "#!/bin/sh\necho \"$@\" >> " + log.string() + "\n");
  ::chmod((bin / "scontrol").c_str(), 0755);
  const std::string path = "PATH=" + bin.string() + ":" + std::getenv("PATH");

  CliResult job = w.train({}, {path, "SLURM_JOB_ID=4242", "BILEVEL_CRASH_AT=batch:1.2=USR2"});
  ASSERT_EQ(job.exit_code, 75) << job.describe();
  EXPECT_EQ(read_file(log), "requeue 4242\n");
  EXPECT_EQ(meta_of(job.first_line())["preempted_at"]["requeue"].as<std::string>(), "scontrol requeue 4242: ok");

  CliResult task = w.train({}, {path, "SLURM_JOB_ID=4300", "SLURM_ARRAY_JOB_ID=4290", "SLURM_ARRAY_TASK_ID=7",
                                "BILEVEL_CRASH_AT=batch:1.2=USR2"});
  ASSERT_EQ(task.exit_code, 75) << task.describe();
  EXPECT_EQ(read_file(log), "requeue 4242\nrequeue 4290_7\n");

  CliResult term = w.train({}, {path, "SLURM_JOB_ID=4400", "BILEVEL_CRASH_AT=batch:1.2=TERM"});
  ASSERT_EQ(term.exit_code, 75) << term.describe();
  EXPECT_EQ(read_file(log), "requeue 4242\nrequeue 4290_7\n");
}

// Checkpoints written before positions existed load at an epoch's start.
TEST(Preempt, OldCheckpointsLoadAtPositionZero) {
  const std::string file = std::string(BILEVEL_SOURCE_DIR) + "/fuzz/corpus/checkpoint/epoch_0001.pt";
  ASSERT_TRUE(fs::exists(file));
  // Its network: fuzz/fuzz_checkpoint.cpp's config.
  Experiment x = prepare(load_config_text("data:\n  name: synthetic\n  validation: 0\n  synthetic: {train: 40, "
                                          "test: 10, image_size: 3, classes: 4}\nmodel:\n  hidden: [5]\n"
                                          "train:\n  threads: 1\noptimizer:\n  name: adam\n",
                                          "fuzz.yaml"));
  const TrainProgress p = load_checkpoint(file, *x.net, *x.optimizer.impl, "");
  EXPECT_EQ(p.position.batch, 0);
  EXPECT_EQ(p.position.seen, 0);
  EXPECT_TRUE(p.position.quant_codes.empty());
}

TEST(Preempt, PositionalCheckpointOrdering) {
  TempDir tmp;
  const fs::path dir = tmp.path();
  EXPECT_EQ(checkpoint_path(dir, 2, 7), dir / "epoch_0002_batch_000007.pt");
  for (const char* name : {"epoch_0002.pt", "epoch_0002_batch_000007.pt", "epoch_0002_batch_000012.pt",
                           "epoch_0003.pt", "epoch_0001_batch_000099.pt", "epoch_0002_batch_7.pt.tmp"})
    write_file(dir / name, "x");
  std::vector<std::string> order;
  for (const auto& c : checkpoints_newest_first(dir)) order.push_back(c.filename().string());
  EXPECT_EQ(order, (std::vector<std::string>{"epoch_0003.pt", "epoch_0002_batch_000012.pt",
                                             "epoch_0002_batch_000007.pt", "epoch_0002.pt",
                                             "epoch_0001_batch_000099.pt"}));
  remove_older_positional_checkpoints(dir, dir / "epoch_0002_batch_000012.pt");
  EXPECT_EQ(list_dir(dir), (std::vector<std::string>{"epoch_0002.pt", "epoch_0002_batch_000012.pt",
                                                      "epoch_0002_batch_7.pt.tmp", "epoch_0003.pt"}));
}

// A preemption that arrives while the run starts (before the data is loaded) is honoured at the first batch
// rather than ending the process.
TEST(Preempt, SignalDuringStartUpCheckpointsBeforeTheFirstBatch) {
  Workspace w;
  CliResult r = w.train({}, {"BILEVEL_CRASH_AT=start:train=USR2"});
  ASSERT_EQ(r.exit_code, 75) << r.describe();
  const fs::path run = r.first_line();
  EXPECT_EQ(list_dir(run / "checkpoints"), std::vector<std::string>{"epoch_0000_batch_000000.pt"});
  EXPECT_EQ(meta_of(run)["preempted_at"]["batch"].as<int>(), 0);
  resume_and_compare(run, kBackprop);
}
