// `bilevel bench`: a tiny suite on synthetic data through the CLI — results.csv, summary.md, plots, resuming an
// interrupted suite without re-running finished runs, and validation before anything runs.
#include <signal.h>

#include <chrono>
#include <map>
#include <set>

#include "bilevel/bench/report.h"
#include "test_util.h"

using namespace testutil;

namespace {

const char* kConfig = R"(experiment:
  name: tiny
seed: 0
data:
  name: synthetic
  validation: 100
  synthetic:
    train: 400
    test: 200
    image_size: 4
    classes: 3
model:
  kind: mlp
  hidden: [8]
  activation: relu
rule:
  name: backprop
train:
  loss: cross_entropy
  epochs: 2
  batch_size: 50
  threads: 1
optimizer:
  name: adam
  lr: 0.001
)";

// Two entries × two seeds. The config path is relative to the suite file.
std::string suite_text(const std::string& extra_override = "") {
  return "name: tiny\n"
         "seeds: [0, 1]\n"
         "overrides:\n"
         "  - train.probe_size=64\n" +
         extra_override +
         "entries:\n"
         "  - name: bp\n"
         "    config: tiny.yaml\n"
         "  - name: bp_fast\n"
         "    config: tiny.yaml\n"
         "    overrides: [optimizer.lr=0.01]\n";
}

struct SuiteFixture {
  TempDir tmp{"bilevel_bench"};
  std::string suite;
  explicit SuiteFixture(const std::string& text = suite_text()) {
    tmp.write("suites/tiny.yaml", kConfig);
    suite = tmp.write("suites/tiny_suite.yaml", text);
  }
  fs::path out() const { return tmp.path() / "out"; }
  std::vector<std::string> args(std::vector<std::string> extra = {}) const {
    std::vector<std::string> a{"bench", suite, "output.root=" + out().string()};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
};

// Run directories (relative to the suite directory) by "entry/seed", from results.csv.
std::map<std::string, std::string> run_dirs(const fs::path& suite_dir) {
  const Csv csv = read_csv(suite_dir / "results.csv");
  std::map<std::string, std::string> m;
  for (const auto& row : csv.rows)
    m[row.at(csv.column("entry")) + "/" + row.at(csv.column("seed"))] = row.at(csv.column("run_dir"));
  return m;
}

std::string status_of(const fs::path& run_dir) {
  const std::string meta = read_file(run_dir / "meta.yaml");
  const auto at = meta.find("\nstatus: ");
  if (at == std::string::npos) return "";
  const auto end = meta.find('\n', at + 1);
  return meta.substr(at + 9, end - at - 9);
}

size_t count(const std::string& haystack, const std::string& needle) { return occurrences(haystack, needle); }

}  // namespace

TEST(Bench, RunsEverySeedOfEveryEntryAndReports) {
  SuiteFixture s;
  const CliResult r = run_cli(s.args());
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const fs::path dir = r.first_line();
  EXPECT_EQ(dir.parent_path(), s.out() / "bench" / "tiny");
  for (const char* f : {"suite.yaml", "state.yaml", "bench.log", "results.csv", "summary.md"})
    EXPECT_TRUE(fs::exists(dir / f)) << f;

  const Csv csv = read_csv(dir / "results.csv");
  ASSERT_EQ(csv.rows.size(), 4u) << read_file(dir / "results.csv");
  std::set<std::string> seen;
  for (size_t i = 0; i < csv.rows.size(); ++i) {
    const auto& row = csv.rows[i];
    seen.insert(row.at(csv.column("entry")) + "/" + row.at(csv.column("seed")));
    EXPECT_EQ(row.at(csv.column("status")), "completed");
    EXPECT_EQ(row.at(csv.column("algorithm")), "backprop");
    EXPECT_EQ(csv.value(i, "epochs"), 2);
    const double acc = csv.value(i, "final_test_accuracy");
    EXPECT_GE(acc, 0.0);
    EXPECT_LE(acc, 1.0);
    const double best = csv.value(i, "best_epoch");
    EXPECT_TRUE(best == 1 || best == 2);
    EXPECT_GE(csv.value(i, "test_accuracy_at_best_epoch"), 0.0);
    EXPECT_GT(csv.value(i, "median_epoch_seconds"), 0.0);
    EXPECT_GE(csv.value(i, "train_seconds"), csv.value(i, "median_epoch_seconds"));
    EXPECT_GE(csv.value(i, "wall_seconds"), csv.value(i, "train_seconds"));
    // A LibTorch process holds tens of MB at least; far from the parent's figure would be a wrong rusage.
    EXPECT_GT(csv.value(i, "peak_rss_mb"), 20.0);
    EXPECT_EQ(row.at(csv.column("peak_device_mb")), "n/a");
    // Backprop probed against backprop: identical gradients, on both layers.
    EXPECT_EQ(csv.value(i, "probe_epoch"), 2);
    EXPECT_EQ(csv.value(i, "probe_first_epoch"), 1);
    EXPECT_NEAR(csv.value(i, "probe_cosine"), 1.0, 1e-6);
    EXPECT_NEAR(csv.value(i, "probe_cosine_layer1"), 1.0, 1e-6);
    EXPECT_NEAR(csv.value(i, "probe_norm_ratio_layer2"), 1.0, 1e-6);
    EXPECT_NEAR(csv.value(i, "probe_rel_error"), 0.0, 1e-6);
    const fs::path run = dir / row.at(csv.column("run_dir"));
    EXPECT_EQ(status_of(run), "completed") << run;
    EXPECT_TRUE(fs::exists(run / "final.pt"));
  }
  EXPECT_EQ(seen, (std::set<std::string>{"bp/0", "bp/1", "bp_fast/0", "bp_fast/1"}));
  // Each run is its own child run directory with the seed and the entry's override applied.
  const auto dirs = run_dirs(dir);
  const std::string cfg = read_file(dir / dirs.at("bp_fast/1") / "config.yaml");
  EXPECT_TRUE(contains(cfg, "seed: 1")) << cfg;
  EXPECT_TRUE(contains(cfg, "lr: 0.01")) << cfg;
  EXPECT_TRUE(contains(cfg, "probe_reference: backprop")) << cfg;

  const std::string md = read_file(dir / "summary.md");
  EXPECT_TRUE(contains(md, "| bp (baseline) | backprop | 2/2 |")) << md;
  EXPECT_TRUE(contains(md, "| bp_fast | backprop | 2/2 |")) << md;
  EXPECT_TRUE(contains(md, "1.00×")) << md;  // the baseline's ratio to itself
  EXPECT_TRUE(contains(md, " ± ")) << md;    // two seeds: mean ± std
  // Progress across the suite.
  EXPECT_TRUE(contains(r.err, "[1/4] bp seed 0")) << r.err;
  EXPECT_TRUE(contains(r.err, "[4/4] bp_fast seed 1")) << r.err;

  if (!bilevel::bench::find_gnuplot().empty()) {
    for (const char* f : {"accuracy_vs_epoch.png", "accuracy_vs_time.png", "alignment_per_layer.png"}) {
      EXPECT_TRUE(fs::exists(dir / "plots" / f)) << f << "\n" << r.err;
      EXPECT_GT(fs::file_size(dir / "plots" / f), 1000u) << f;
    }
    EXPECT_TRUE(contains(md, "plots/accuracy_vs_epoch.png"));
  }
}

TEST(Bench, MissingGnuplotWarnsAndSkipsPlots) {
  SuiteFixture s;
  const CliResult r = run_cli(s.args({"train.epochs=1"}), {"BILEVEL_GNUPLOT="});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const fs::path dir = r.first_line();
  EXPECT_TRUE(contains(r.err, "gnuplot not found")) << r.err;
  EXPECT_FALSE(fs::exists(dir / "plots" / "accuracy_vs_epoch.png"));
  // Global overrides apply to every entry.
  const Csv csv = read_csv(dir / "results.csv");
  ASSERT_EQ(csv.rows.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(csv.value(i, "epochs"), 1);
}

TEST(Bench, ResumeSkipsFinishedRunsAndContinuesUnfinishedOnes) {
  SuiteFixture s;
  const CliResult first = run_cli(s.args({"--no-plots"}));
  ASSERT_EQ(first.exit_code, 0) << first.describe();
  const fs::path dir = first.first_line();
  const auto dirs = run_dirs(dir);
  ASSERT_EQ(dirs.size(), 4u);

  // Make one run look interrupted after its last checkpoint: no final.pt, status interrupted.
  const fs::path victim = dir / dirs.at("bp_fast/0");
  fs::remove(victim / "final.pt");
  std::string meta = read_file(victim / "meta.yaml");
  meta.replace(meta.find("\nstatus: completed"), 18, "\nstatus: interrupted");
  write_file(victim / "meta.yaml", meta);

  std::map<std::string, std::string> before;
  for (const auto& [key, rel] : dirs)
    if (key != "bp_fast/0") before[key] = read_file(dir / rel / "meta.yaml") + read_file(dir / rel / "metrics.csv");

  const CliResult again = run_cli({"bench", "--resume", dir.string(), "--no-plots"});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(again.first_line(), dir.string());
  EXPECT_EQ(count(again.err, "completed earlier, skipped"), 3u) << again.err;
  EXPECT_TRUE(contains(again.err, "resuming")) << again.err;
  for (const auto& [key, text] : before)
    EXPECT_EQ(read_file(dir / dirs.at(key) / "meta.yaml") + read_file(dir / dirs.at(key) / "metrics.csv"), text)
        << key << " was re-run";
  EXPECT_EQ(status_of(victim), "completed");
  EXPECT_TRUE(fs::exists(victim / "final.pt"));
  EXPECT_TRUE(contains(read_file(victim / "meta.yaml"), "resumes:"));
  // Still one run directory per entry and seed.
  EXPECT_EQ(run_dirs(dir), dirs);
  const Csv csv = read_csv(dir / "results.csv");
  ASSERT_EQ(csv.rows.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(csv.rows[i].at(csv.column("status")), "completed");
}

TEST(Bench, SigtermStopsTheSuiteAndResumeFinishesIt) {
  // Longer runs, so that the signal arrives while the suite is under way (the three runs after the first must
  // outlast the refused second bench below; with 8 hidden units they did not on a fast machine).
  SuiteFixture s;
  CliProcess p(s.args({"--no-plots", "data.synthetic.train=3000", "train.epochs=6", "model.hidden=[96]"}));
  const fs::path out = s.out() / "bench" / "tiny";
  // Wait for the first run to complete (state.yaml records it), then stop the bench only.
  auto first_done = [&] {
    std::error_code ec;
    if (!fs::is_directory(out, ec)) return false;
    for (const auto& d : fs::directory_iterator(out, ec)) {
      try {
        if (contains(read_file(d.path() / "state.yaml"), "status: completed")) return true;
      } catch (...) {
      }
    }
    return false;
  };
  ASSERT_TRUE(wait_until(first_done, std::chrono::seconds(300)));
  {
    // A second bench on the same suite directory is refused while the first runs.
    std::string running;
    for (const auto& d : fs::directory_iterator(out)) running = d.path().string();
    const CliResult twice = run_cli({"bench", "--resume", running});
    if (!p.finished()) {
      EXPECT_EQ(twice.exit_code, 2) << twice.describe();
      EXPECT_TRUE(contains(twice.err, running + ": in use by another bilevel process (PID " +
                                          std::to_string(p.pid()) + ")"))
          << twice.err;
    }
  }
  p.kill(SIGTERM);
  const CliResult r = p.wait();
  ASSERT_EQ(r.exit_code, 130) << r.describe();
  const fs::path dir = r.first_line();
  EXPECT_TRUE(contains(r.err, "bilevel bench --resume")) << r.err;
  const std::string state = read_file(dir / "state.yaml");
  EXPECT_FALSE(contains(state, "status: running")) << state;

  const auto done_before = run_dirs(dir);
  std::map<std::string, std::string> finished;
  for (const auto& [key, rel] : done_before)
    if (!rel.empty() && status_of(dir / rel) == "completed") finished[key] = read_file(dir / rel / "metrics.csv");
  ASSERT_GE(finished.size(), 1u);
  ASSERT_LT(finished.size(), 4u);

  const CliResult again = run_cli({"bench", "--resume", dir.string(), "--no-plots"});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(count(again.err, "completed earlier, skipped"), finished.size()) << again.err;
  const auto dirs = run_dirs(dir);
  for (const auto& [key, metrics] : finished) {
    EXPECT_EQ(dirs.at(key), done_before.at(key));
    EXPECT_EQ(read_file(dir / dirs.at(key) / "metrics.csv"), metrics) << key << " was re-run";
  }
  const Csv csv = read_csv(dir / "results.csv");
  ASSERT_EQ(csv.rows.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(csv.rows[i].at(csv.column("status")), "completed");
    EXPECT_EQ(csv.value(i, "epochs"), 6);
  }
}

TEST(Bench, KilledRunsFailAloneAndResumeContinuesThem) {
  // Every child is SIGKILLed before epoch 2's first batch (after epoch 1's checkpoint), as an OOM kill would.
  SuiteFixture s;
  const CliResult r = run_cli(s.args({"--no-plots"}), {"BILEVEL_CRASH_AT=batch:2.1"});
  EXPECT_EQ(r.exit_code, 1) << r.describe();
  const fs::path dir = r.first_line();
  EXPECT_EQ(count(r.err, "failed (exit -9)"), 4u) << r.err;  // the suite went on after each failure
  Csv csv = read_csv(dir / "results.csv");
  ASSERT_EQ(csv.rows.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(csv.rows[i].at(csv.column("status")), "failed");
    EXPECT_EQ(csv.value(i, "epochs"), 1);
  }
  EXPECT_TRUE(contains(read_file(dir / "summary.md"), "| bp (baseline) | backprop | 0/2 |"));

  const CliResult again = run_cli({"bench", "--resume", dir.string(), "--no-plots"});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(count(again.err, "resuming runs/"), 4u) << again.err;
  csv = read_csv(dir / "results.csv");
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(csv.rows[i].at(csv.column("status")), "completed");
    EXPECT_EQ(csv.value(i, "attempts"), 2);
    EXPECT_EQ(csv.value(i, "epochs"), 2);
  }
}

TEST(Bench, InvalidEntryOverrideFailsBeforeAnythingRuns) {
  // Line 5 of the suite file holds the typo.
  SuiteFixture s(suite_text("  - train.epoch=3\n"));
  const CliResult r = run_cli(s.args());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "tiny_suite.yaml:5:")) << r.err;
  EXPECT_TRUE(contains(r.err, "train.epoch")) << r.err;
  EXPECT_TRUE(contains(r.err, "did you mean 'train.epochs'")) << r.err;
  EXPECT_FALSE(fs::exists(s.out())) << "something was written";
  EXPECT_TRUE(r.out.empty());
}

TEST(Bench, InvalidEntryValueNamesTheEntryLine) {
  SuiteFixture s("name: tiny\nentries:\n  - name: bp\n    config: tiny.yaml\n    overrides:\n      - train.batch_size=0\n");
  const CliResult r = run_cli(s.args());
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "tiny_suite.yaml:6:")) << r.err;
  EXPECT_TRUE(contains(r.err, "train.batch_size")) << r.err;
  EXPECT_TRUE(contains(r.err, "entry 'bp'")) << r.err;
  EXPECT_FALSE(fs::exists(s.out()));
}

TEST(Bench, SuiteFormatErrors) {
  {
    SuiteFixture s("name: tiny\nseed: [0]\nentries:\n  - config: tiny.yaml\n");
    const CliResult r = run_cli(s.args());
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_TRUE(contains(r.err, "tiny_suite.yaml:2:1")) << r.err;
    EXPECT_TRUE(contains(r.err, "did you mean 'seeds'")) << r.err;
  }
  {
    SuiteFixture s("entries:\n  - name: a\n    config: nowhere.yaml\n");
    const CliResult r = run_cli(s.args());
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_TRUE(contains(r.err, "tiny_suite.yaml:3:13")) << r.err;
    EXPECT_TRUE(contains(r.err, "nowhere.yaml")) << r.err;
  }
  {
    SuiteFixture s("entries:\n  - name: a\n    config: tiny.yaml\n  - name: a\n    config: tiny.yaml\n");
    const CliResult r = run_cli(s.args());
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_TRUE(contains(r.err, "used twice")) << r.err;
  }
  {
    SuiteFixture s;
    const CliResult r = run_cli(s.args({"seed=3"}));
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_TRUE(contains(r.err, "seeds")) << r.err;
  }
}

// A study's expected figures: PASS and FAIL lines in the log and summary.md, exit 1 when one fails (the runs
// themselves completed), and --report re-checks them; malformed expectations fail before anything runs.
TEST(Bench, ExpectedFiguresPassOrFail) {
  const std::string expect_ok = "expect:\n"
                                "  - {entry: bp, metric: test_accuracy, min: 0.0, max: 1.0, note: the paper's 99%}\n"
                                "  - {entry: bp_fast, metric: epoch_time_ratio, max: 1000}\n";
  {
    SuiteFixture s(suite_text() + expect_ok);
    const CliResult r = run_cli(s.args({"--no-plots"}));
    ASSERT_EQ(r.exit_code, 0) << r.describe();
    EXPECT_TRUE(contains(r.err, "PASS  bp test_accuracy = ")) << r.err;
    EXPECT_TRUE(contains(r.err, "(2 seeds), expected [0, 1]; the paper's 99%")) << r.err;
    EXPECT_TRUE(contains(r.err, "expected figures PASS")) << r.err;
    EXPECT_FALSE(contains(r.err, "FAIL")) << "checked once, after every run: " << r.err;
    const std::string summary = read_file(fs::path(r.first_line()) / "summary.md");
    EXPECT_TRUE(contains(summary, "## Expected figures")) << summary;
    EXPECT_TRUE(contains(summary, "2 of 2 pass.")) << summary;
  }
  {
    SuiteFixture s(suite_text() + expect_ok + "  - {entry: bp, metric: best_val_accuracy, min: 1.5}\n");
    const CliResult r = run_cli(s.args({"--no-plots"}));
    EXPECT_EQ(r.exit_code, 1) << r.describe();
    EXPECT_TRUE(contains(r.err, "FAIL  bp best_val_accuracy = ")) << r.err;
    EXPECT_TRUE(contains(r.err, "expected ≥ 1.5")) << r.err;
    const fs::path dir = r.first_line();
    EXPECT_TRUE(contains(read_file(dir / "summary.md"), "**FAIL**"));
    const CliResult again = run_cli({"bench", "--report", dir.string(), "--no-plots"});
    EXPECT_EQ(again.exit_code, 1) << again.describe();
  }
  for (const auto& [bad, where, what] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"  - {entry: nobody, metric: test_accuracy, min: 0.5}\n", "expect[0].entry", "no entry is named 'nobody'"},
           {"  - {entry: bp, metric: accuracy, min: 0.5}\n", "expect[0].metric", "unknown metric 'accuracy'"},
           {"  - {entry: bp, metric: test_accuracy, min: 0.9, max: 0.5}\n", "expect[0]", "min is above max"},
           {"  - {entry: bp, metric: test_accuracy}\n", "expect[0]", "`min:`, `max:` or both"}}) {
    SuiteFixture s(suite_text() + "expect:\n" + bad);
    const CliResult r = run_cli(s.args());
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_TRUE(contains(r.err, where)) << r.err;
    EXPECT_TRUE(contains(r.err, what)) << r.err;
    EXPECT_FALSE(fs::exists(s.out())) << "nothing is written before the suite validates";
  }
}

TEST(Bench, QuickSuiteSmoke) {
  // configs/bench/fmnist_quick.yaml end to end: every rule trains, is measured and is probed against backprop.
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) GTEST_SKIP() << "Fashion-MNIST is not installed";
  TempDir tmp("bilevel_bench_quick");
  const CliResult r = run_cli({"bench", std::string(BILEVEL_SOURCE_DIR) + "/configs/bench/fmnist_quick.yaml",
                               "output.root=" + tmp.path().string(), "--no-plots"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const fs::path dir = r.first_line();
  const Csv csv = read_csv(dir / "results.csv");
  ASSERT_EQ(csv.rows.size(), 7u) << read_file(dir / "results.csv");
  std::set<std::string> algorithms;
  for (size_t i = 0; i < csv.rows.size(); ++i) {
    const std::string entry = csv.rows[i].at(csv.column("entry"));
    algorithms.insert(csv.rows[i].at(csv.column("algorithm")));
    EXPECT_EQ(csv.rows[i].at(csv.column("status")), "completed") << entry;
    EXPECT_EQ(csv.value(i, "epochs"), 2) << entry;
    EXPECT_GT(csv.value(i, "test_accuracy_at_best_epoch"), 0.3) << entry;  // well above chance (0.1)
    EXPECT_GT(csv.value(i, "peak_rss_mb"), 20.0) << entry;
    EXPECT_GE(csv.value(i, "probe_cosine"), -1.0) << entry;
    EXPECT_LE(csv.value(i, "probe_cosine"), 1.0 + 1e-9) << entry;
  }
  EXPECT_EQ(algorithms, (std::set<std::string>{"backprop", "ep", "ep_symmetric", "chl", "bptt", "implicit", "dual_prop"}));
  EXPECT_TRUE(contains(read_file(dir / "summary.md"), "| backprop (baseline) |"));
}

TEST(Bench, ShippedSuitesValidate) {
  // The shipped suites parse, and every entry's config + overrides loads (rules not built yet fail here).
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) GTEST_SKIP() << "Fashion-MNIST is not installed";
  // Every suite file in configs/bench/, its baseline a backprop entry.
  int suites = 0;
  for (const auto& d : fs::directory_iterator(fs::path(BILEVEL_SOURCE_DIR) / "configs" / "bench")) {
    if (d.path().extension() != ".yaml") continue;
    const std::string f = d.path().string();
    bilevel::bench::Suite suite = bilevel::bench::load_suite(f);
    EXPECT_NO_THROW(bilevel::bench::validate_suite(suite, {})) << f;
    const int b = bilevel::bench::baseline_index(suite);
    ASSERT_GE(b, 0) << f;
    EXPECT_EQ(suite.entries[size_t(b)].algorithm, "backprop") << f << ": baseline " << suite.baseline;
    ++suites;
  }
  EXPECT_GE(suites, 4);
  // Every study in experiments/: a README naming its paper and a suite that validates and expects figures.
  int studies = 0;
  for (const auto& d : fs::directory_iterator(fs::path(BILEVEL_SOURCE_DIR) / "experiments")) {
    if (!d.is_directory()) continue;
    const fs::path file = d.path() / "suite.yaml";
    ASSERT_TRUE(fs::exists(file)) << d.path();
    EXPECT_TRUE(fs::exists(d.path() / "README.md")) << d.path();
    bilevel::bench::Suite suite = bilevel::bench::load_suite(file.string());
    EXPECT_NO_THROW(bilevel::bench::validate_suite(suite, {})) << file;
    EXPECT_FALSE(suite.expect.empty()) << file << ": a study states its expected figures";
    ++studies;
  }
  EXPECT_GE(studies, 4);
}
