// Multirun sweeps: the grammar (lists, brackets, range, choice), the grid's order, and malformed sweeps rejected
// with the argument and the position named; `bilevel train -m` running a grid as a suite.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "bilevel/sweep/sweep.h"
#include "test_util.h"

using namespace bilevel;
using testutil::contains;

namespace {
using Strings = std::vector<std::string>;

std::string error_of(const Strings& overrides) {
  try {
    parse_sweep(overrides);
  } catch (const SweepError& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST(SweepGrammar, ListsAndFixedOverrides) {
  const Sweep s = parse_sweep({"optimizer.lr=1e-3,3e-4", "train.epochs=2", "seed=0,1,2", "~scheduler.name",
                               "model.hidden=[256,128]"});
  EXPECT_EQ(s.fixed, (Strings{"train.epochs=2", "~scheduler.name", "model.hidden=[256,128]"}));
  ASSERT_EQ(s.params.size(), 2u);
  EXPECT_EQ(s.params[0].key, "optimizer.lr");
  EXPECT_EQ(s.params[0].values, (Strings{"1e-3", "3e-4"}));
  EXPECT_EQ(s.params[1].values, (Strings{"0", "1", "2"}));
  const auto points = s.points();
  ASSERT_EQ(points.size(), 6u);
  EXPECT_EQ(points[0], (Strings{"optimizer.lr=1e-3", "seed=0"}));
  EXPECT_EQ(points[1], (Strings{"optimizer.lr=1e-3", "seed=1"}));
  EXPECT_EQ(points[5], (Strings{"optimizer.lr=3e-4", "seed=2"}));
}

TEST(SweepGrammar, BracketedListsAreOneValue) {
  const Sweep s = parse_sweep({"model.hidden=[256],[512,256]", "+rule.beta=0.1,0.2"});
  ASSERT_EQ(s.params.size(), 2u);
  EXPECT_EQ(s.params[0].values, (Strings{"[256]", "[512,256]"}));
  EXPECT_EQ(s.params[1].key, "rule.beta");
  EXPECT_EQ(s.points().size(), 4u);
}

TEST(SweepGrammar, RangeAndChoice) {
  EXPECT_EQ(parse_sweep({"seed=range(0,3)"}).params[0].values, (Strings{"0", "1", "2"}));
  EXPECT_EQ(parse_sweep({"seed=range(10,0,-4)"}).params[0].values, (Strings{"10", "6", "2"}));
  EXPECT_EQ(parse_sweep({"rule.beta=range(0.1, 0.45, 0.1)"}).params[0].values,
            (Strings{"0.1", "0.2", "0.3", "0.4"}));
  // Rounding does not add the stop value: 0 + 10 × 0.1 is not below 1.
  EXPECT_EQ(parse_sweep({"x=range(0,1,0.1)"}).params[0].values.size(), 10u);
  EXPECT_EQ(parse_sweep({"optimizer.name=choice(sgd, adam)"}).params[0].values, (Strings{"sgd", "adam"}));
  // One value in choice() is still a sweep (of one point).
  EXPECT_EQ(parse_sweep({"optimizer.name=choice(sgd)"}).params.size(), 1u);
}

TEST(SweepGrammar, MalformedSweepsNameThePosition) {
  struct Case {
    std::string arg, expected;
  };
  for (const Case& c : std::vector<Case>{
           {"optimizer.lr=1e-3,,3e-4", "sweep 'optimizer.lr=1e-3,,3e-4', position 19: empty value"},
           {"seed=0,1,", "sweep 'seed=0,1,', position 10: empty value"},
           {"seed=,1", "sweep 'seed=,1', position 6: empty value"},
           {"seed=", "sweep 'seed=', position 6: no value after '='"},
           {"=1,2", "sweep '=1,2', position 1: no key before '='"},
           {"model.hidden=[256,[1]", "sweep 'model.hidden=[256,[1]', position 14: '[' is never closed"},
           {"model.hidden=256],[1]", "sweep 'model.hidden=256],[1]', position 17: ']' closes nothing"},
           {"seed=range(0,3", "sweep 'seed=range(0,3', position 11: '(' is never closed"},
           {"seed=range(0)", "sweep 'seed=range(0)', position 11: range() takes start, stop and an optional step"},
           {"seed=range(0,a)", "sweep 'seed=range(0,a)', position 14: range() expects numbers, got 'a'"},
           {"seed=range(0,3,0)", "sweep 'seed=range(0,3,0)', position 16: range() step must not be 0"},
           {"seed=range(3,0)", "sweep 'seed=range(3,0)', position 11: range() is empty"},
           {"seed=range(0,3),5", "sweep 'seed=range(0,3),5', position 6: range(...) must be the whole value"},
           {"x=choice()", "sweep 'x=choice()', position 10: choice() needs at least one value"},
       }) {
    const std::string e = error_of({c.arg});
    EXPECT_EQ(e.substr(0, c.expected.size()), c.expected) << c.arg << " gave: " << e;
  }
  EXPECT_TRUE(contains(error_of({"seed=0,1", "seed=2,3"}), "key 'seed' is swept twice"));
}

// ================================================================ bilevel train -m

namespace {
namespace fs = std::filesystem;
using namespace testutil;

const char* kYaml = R"(experiment:
  name: sweep
seed: 0
data:
  name: synthetic
  validation: 100
  synthetic: {train: 400, test: 100, image_size: 3, classes: 4}
model:
  hidden: [8]
train:
  epochs: 2
  batch_size: 50
  threads: 1
optimizer:
  name: sgd
  lr: 0.05
)";
}  // namespace

TEST(SweepRun, GridRunsAsASuiteAndAnInterruptedSweepResumes) {
  TempDir tmp;
  const std::string cfg = tmp.write("cfg.yaml", kYaml);
  const std::string out = "output.root=" + (tmp.path() / "out").string();
  // Every run is killed in its second epoch: the sweep records them as failed.
  CliResult killed = run_cli({"train", cfg, "-m", "optimizer.lr=0.05,0.1", "seed=0,1", out, "--jobs", "2",
                              "--no-plots"},
                             {"BILEVEL_CRASH_AT=batch:2.1"});
  EXPECT_EQ(killed.exit_code, 1) << killed.describe();
  const fs::path dir = killed.first_line();
  ASSERT_TRUE(fs::is_directory(dir)) << killed.describe();
  EXPECT_EQ(dir.parent_path().parent_path().filename(), "multirun");
  EXPECT_EQ(read_csv(dir / "results.csv").rows.size(), 4u);

  CliResult resumed = run_cli({"bench", "--resume", dir.string(), "--jobs", "2", "--no-plots"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  const std::string state = read_file(dir / "state.yaml");
  size_t completed = 0;
  for (size_t at = 0; (at = state.find("status: completed", at)) != std::string::npos; ++at) ++completed;
  EXPECT_EQ(completed, 4u) << state;
  // Each point's run has its own values, and equals a direct run of the same overrides.
  bool compared = false;
  for (const auto& entry : list_dir(dir / "runs")) {
    for (const auto& seed_dir : list_dir(dir / "runs" / entry)) {
      if (fs::path(seed_dir).extension() == ".log") continue;
      const auto runs = list_dir(dir / "runs" / entry / seed_dir);
      ASSERT_EQ(runs.size(), 1u) << seed_dir;
      const fs::path run = dir / "runs" / entry / seed_dir / runs[0];
      const std::string config = read_file(run / "config.yaml");
      EXPECT_TRUE(contains(config, entry.find("lr-0.1") != std::string::npos ? "lr: 0.1" : "lr: 0.05")) << config;
      if (seed_dir == "001_lr-0.1_seed1") {
        CliResult direct = run_cli({"train", cfg, out, "optimizer.lr=0.1", "seed=1"});
        ASSERT_EQ(direct.exit_code, 0) << direct.describe();
        const Csv a = read_csv(run / "metrics.csv"), b = read_csv(fs::path(direct.first_line()) / "metrics.csv");
        ASSERT_EQ(a.rows.size(), 2u);
        EXPECT_EQ(a.values("test_loss"), b.values("test_loss"));
        compared = true;
      }
    }
  }
  EXPECT_TRUE(compared);
  EXPECT_TRUE(fs::exists(dir / "summary.md"));

  // Resuming a finished sweep skips every point.
  CliResult again = run_cli({"bench", "--resume", dir.string(), "--no-plots"});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  size_t skipped = 0;
  for (size_t at = 0; (at = again.err.find("completed earlier, skipped", at)) != std::string::npos; ++at) ++skipped;
  EXPECT_EQ(skipped, 4u) << again.err;
}

TEST(SweepRun, MalformedSweepExitsTwoAndWritesNothing) {
  TempDir tmp;
  const std::string cfg = tmp.write("cfg.yaml", kYaml);
  const fs::path out = tmp.path() / "out";
  CliResult r = run_cli({"train", cfg, "-m", "optimizer.lr=0.1,,0.2", "output.root=" + out.string()});
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "sweep 'optimizer.lr=0.1,,0.2', position 18: empty value")) << r.err;
  CliResult bad_key = run_cli({"train", cfg, "-m", "optimizer.lrr=0.1,0.2", "output.root=" + out.string()});
  EXPECT_EQ(bad_key.exit_code, 2) << bad_key.describe();
  EXPECT_TRUE(contains(bad_key.err, "optimizer.lrr")) << bad_key.err;
  CliResult nothing = run_cli({"train", cfg, "-m", "optimizer.lr=0.1", "output.root=" + out.string()});
  EXPECT_EQ(nothing.exit_code, 2) << nothing.describe();
  EXPECT_TRUE(contains(nothing.err, "nothing to sweep")) << nothing.err;
  EXPECT_TRUE(list_dir(out).empty());
}

// ================================================================ --launcher slurm

namespace {
// Whether a local Slurm answers (scripts/slurm-local start) with an idle node.
bool slurm_available() {
  return std::system("sinfo -h -o %t 2>/dev/null | grep -q idle") == 0;
}
}  // namespace

TEST(SweepSlurm, DryRunPrintsTheArrayScriptAndWritesNothing) {
  TempDir tmp;
  const std::string cfg = tmp.write("cfg.yaml", kYaml);
  const fs::path out = tmp.path() / "out";
  CliResult r = run_cli({"train", cfg, "-m", "optimizer.lr=0.05,0.1", "seed=0,1", "output.root=" + out.string(),
                         "--launcher", "slurm", "--max-parallel", "3", "--time", "00:10:00", "--partition", "local",
                         "--ntasks-per-run", "2", "--dry-run"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  for (const char* line : {"#SBATCH --array=0-3%3\n", "#SBATCH --signal=B:USR2@120\n", "#SBATCH --requeue\n",
                           "#SBATCH --open-mode=append\n", "#SBATCH --time=00:10:00\n", "#SBATCH --partition=local\n",
                           "#SBATCH --ntasks=2\n", "launch=(srun --ntasks=2 ", "trap 'kill -USR2 \"$child\""})
    EXPECT_TRUE(contains(r.out, line)) << line << "\n" << r.out;
  // Every run's overrides, and a resume for a task that finds its run directory.
  EXPECT_TRUE(contains(r.out, "'optimizer.lr=0.1'")) << r.out;
  EXPECT_TRUE(contains(r.out, "'seed=1'")) << r.out;
  EXPECT_TRUE(contains(r.out, "cmd=(resume \"$run\")")) << r.out;
  EXPECT_FALSE(fs::exists(out));
  // The script is valid bash.
  const std::string script = tmp.write("array.sbatch", r.out);
  EXPECT_EQ(std::system(("bash -n " + script).c_str()), 0);
  // Slurm options without --launcher slurm are refused.
  CliResult bad = run_cli({"bench", "x.yaml", "--dry-run"});
  EXPECT_EQ(bad.exit_code, 2) << bad.describe();
}

// A sweep as a real job array on the local Slurm (scripts/slurm-local start; skipped without it): every task
// completes, and the collected results equal a local run's.
TEST(SweepSlurm, JobArrayOnLocalSlurm) {
  if (!slurm_available()) GTEST_SKIP() << "no local Slurm (scripts/slurm-local start)";
  TempDir tmp;
  const std::string cfg = tmp.write("cfg.yaml", kYaml);
  const fs::path out = tmp.path() / "out";
  CliResult r = run_cli({"train", cfg, "-m", "optimizer.lr=0.05,0.1", "output.root=" + out.string(), "--launcher",
                         "slurm", "--no-plots"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const fs::path dir = r.first_line();
  const Csv slurm = read_csv(dir / "results.csv");
  ASSERT_EQ(slurm.rows.size(), 2u);
  CliResult local = run_cli({"train", cfg, "-m", "optimizer.lr=0.05,0.1", "output.root=" + out.string(), "--no-plots"});
  ASSERT_EQ(local.exit_code, 0) << local.describe();
  const Csv here = read_csv(fs::path(local.first_line()) / "results.csv");
  for (const char* c : {"final_test_accuracy", "best_val_accuracy"}) {
    ASSERT_TRUE(here.has(c)) << c;
    EXPECT_EQ(slurm.values(c), here.values(c)) << c;
  }
}

// One task of the array preempted as a cluster would (`scancel --signal=USR2 --batch`, to the batch shell): the
// task checkpoints, requeues itself and, once Slurm starts it again (after its requeue delay, about 2 minutes),
// resumes its run mid-epoch; the collected accuracies equal a local sweep's.
TEST(SweepSlurm, PreemptedTaskIsRequeuedAndResumes) {
  if (!slurm_available()) GTEST_SKIP() << "no local Slurm (scripts/slurm-local start)";
  TempDir tmp;
  const std::string cfg = tmp.write("cfg.yaml", kYaml);
  const fs::path out = tmp.path() / "out";
  const std::vector<std::string> sweep{"train", cfg, "-m", "optimizer.lr=0.05,0.1", "data.synthetic.train=3000",
                                       "data.synthetic.image_size=6", "model.hidden=[64]", "train.batch_size=16",
                                       "train.epochs=150", "output.root=" + out.string(), "--no-plots"};
  std::vector<std::string> on_slurm = sweep;
  on_slurm.insert(on_slurm.end(), {"--launcher", "slurm"});
  CliProcess p(on_slurm);
  fs::path dir, run;
  ASSERT_TRUE(wait_until(
      [&] {
        const auto found = list_dir(out / "multirun" / "sweep");
        if (found.size() != 1) return false;
        dir = out / "multirun" / "sweep" / found[0];
        const fs::path parent = dir / "runs" / "000_lr-0.05" / "000_lr-0.05_seed0";
        const auto runs = list_dir(parent);
        if (runs.size() != 1 || !fs::exists(dir / "slurm" / "job_id")) return false;
        run = parent / runs[0];
        return complete_rows(run / "metrics.csv") >= 3;
      },
      std::chrono::seconds(120)))
      << "task 0 did not start";
  std::string job = read_file(dir / "slurm" / "job_id");
  job = job.substr(0, job.find('\n'));
  ASSERT_EQ(std::system(("scancel --signal=USR2 --batch " + job + "_0").c_str()), 0);
  CliResult r = p.wait();
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  YAML::Node meta = YAML::LoadFile((run / "meta.yaml").string());
  EXPECT_EQ(meta["status"].as<std::string>(), "completed");
  ASSERT_TRUE(meta["resumes"].IsSequence()) << read_file(run / "meta.yaml");
  EXPECT_EQ(meta["resumes"].size(), 1u);
  EXPECT_TRUE(contains(read_file(dir / "slurm" / "task_0.log"), "scontrol requeue " + job + "_0: ok"));

  CliResult local = run_cli(sweep);
  ASSERT_EQ(local.exit_code, 0) << local.describe();
  const Csv a = read_csv(dir / "results.csv"), b = read_csv(fs::path(local.first_line()) / "results.csv");
  for (const char* c : {"final_test_accuracy", "best_val_accuracy", "test_accuracy_at_best_epoch"}) {
    ASSERT_TRUE(b.has(c)) << c;
    EXPECT_EQ(a.values(c), b.values(c)) << c;
  }
  // And the preempted run's every loss, epoch by epoch, equals the local run's.
  const int col = b.column("run_dir");
  ASSERT_GE(col, 0);
  const Csv m = read_csv(run / "metrics.csv");
  const Csv l = read_csv(fs::path(local.first_line()) / b.rows.at(0).at(size_t(col)) / "metrics.csv");
  for (const char* c : {"train_loss", "val_loss", "test_loss"}) EXPECT_EQ(m.values(c), l.values(c)) << c;
}
