// The CLI and the run directory: bad configs fail before anything is written, a good run's directory layout,
// meta.yaml and metrics.csv, eval, --help; exact resume after SIGKILL at every kind of point (mid-epoch, between
// the metrics row and the checkpoint, during a checkpoint write, from outside); checkpoint round trips; and the
// small utilities the run directory relies on (metrics.csv rewriting, atomic files, learning-rate schedules).
#include <gtest/gtest.h>

#include <torch/optim/adam.h>
#include <torch/types.h>
#include <torch/utils.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <ctime>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/data/batches.h"
#include "bilevel/run/checkpoint.h"
#include "bilevel/run/metrics.h"
#include "bilevel/run/run_dir.h"
#include "bilevel/train/experiment.h"
#include "bilevel/train/optim.h"
#include "bilevel/util/atomic_file.h"
#include "bilevel/util/error.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace bilevel;
using namespace testutil;

namespace {

// A small synthetic problem that is not solved in one epoch (8 classes of 3x3 images), so metrics move.
const std::string kRunYaml = small_synthetic_yaml("runtest", 1, R"(train:
  epochs: 5
  batch_size: 32
  threads: 1
optimizer:
  name: sgd
  lr: 0.05
checkpoint:
  every: 1
)");

// A test's own folder with the config in it; runs go to out().
struct Workspace {
  TempDir tmp{"bilevel_test_run"};
  std::string config = tmp.write("cfg.yaml", kRunYaml);
  fs::path out() const { return tmp.path() / "out"; }

  std::vector<std::string> train_args(const std::vector<std::string>& overrides) const {
    std::vector<std::string> a{"train", config, "output.root=" + out().string()};
    a.insert(a.end(), overrides.begin(), overrides.end());
    return a;
  }
  CliResult train(const std::vector<std::string>& overrides, const std::vector<std::string>& env = {}) const {
    return run_cli(train_args(overrides), env);
  }
};

YAML::Node load_meta(const fs::path& run) { return YAML::LoadFile((run / "meta.yaml").string()); }

std::vector<fs::path> temp_files_in(const fs::path& run) {
  std::vector<fs::path> found;
  for (const auto& e : fs::recursive_directory_iterator(run))
    if (e.path().extension() == ".tmp") found.push_back(e.path());
  return found;
}

// `bilevel eval` output as numbers.
struct EvalOut {
  double loss = -1, accuracy = -1;
  long long examples = -1;
};
EvalOut parse_eval(const CliResult& r) {
  EvalOut o;
  YAML::Node n = YAML::Load(r.out);
  o.loss = n["test_loss"].as<double>();
  o.accuracy = n["test_accuracy"].as<double>();
  o.examples = n["examples"].as<long long>();
  return o;
}

// `bilevel eval` output without its timing lines (seconds, examples_per_second), which differ from run to run.
std::string without_timing(const std::string& out) {
  std::string kept, line;
  std::istringstream in(out);
  while (std::getline(in, line))
    if (line.rfind("seconds:", 0) != 0 && line.rfind("examples_per_second:", 0) != 0) kept += line + "\n";
  return kept;
}

// An uninterrupted run per set of overrides, made once per test program and shared by the resume tests.
struct Reference {
  fs::path dir;
  std::string eval_final, eval_best;
};
const Reference& reference(const std::vector<std::string>& overrides) {
  static std::map<std::vector<std::string>, Reference> cache;
  static std::vector<std::unique_ptr<Workspace>> keep;
  auto it = cache.find(overrides);
  if (it != cache.end()) return it->second;
  keep.push_back(std::make_unique<Workspace>());
  const Workspace& w = *keep.back();
  CliResult r = w.train(overrides);
  if (r.exit_code != 0) throw std::runtime_error("reference run failed: " + r.describe());
  Reference ref;
  ref.dir = r.first_line();
  CliResult e = run_cli({"eval", ref.dir.string()});
  if (e.exit_code != 0) throw std::runtime_error("reference eval failed: " + e.describe());
  ref.eval_final = without_timing(e.out);
  if (fs::exists(ref.dir / "best.pt")) {
    CliResult b = run_cli({"eval", ref.dir.string(), "--checkpoint", (ref.dir / "best.pt").string()});
    if (b.exit_code != 0) throw std::runtime_error("reference eval of best.pt failed: " + b.describe());
    ref.eval_best = without_timing(b.out);
  }
  return cache.emplace(overrides, ref).first->second;
}

struct CrashExpectation {
  int rows_before = 0;       // complete metrics rows the killed run left
  int resume_from = 0;       // epoch of the latest complete checkpoint it left
  bool torn_temp = false;    // whether it left a .tmp file behind
};

// Runs with BILEVEL_CRASH_AT=crash_at, checks that the process died by SIGKILL leaving the expected state, resumes,
// and checks that the resumed run equals an uninterrupted one.
void crash_and_resume(const std::vector<std::string>& overrides, const std::string& crash_at,
                      const CrashExpectation& expect) {
  const Reference& ref = reference(overrides);
  Workspace w;
  CliResult killed = w.train(overrides, {"BILEVEL_CRASH_AT=" + crash_at});
  ASSERT_TRUE(killed.signaled) << killed.describe();
  ASSERT_EQ(killed.signal, SIGKILL) << killed.describe();
  const fs::path run = killed.first_line();
  ASSERT_TRUE(fs::is_directory(run)) << killed.describe();

  // What the crash left behind.
  EXPECT_EQ(load_meta(run)["status"].as<std::string>(), "running");
  EXPECT_EQ(complete_rows(run / "metrics.csv"), expect.rows_before) << read_file(run / "metrics.csv");
  auto latest = latest_checkpoint(run / "checkpoints");
  if (expect.resume_from == 0) {
    EXPECT_FALSE(latest.has_value()) << latest->string();
  } else {
    ASSERT_TRUE(latest.has_value());
    EXPECT_EQ(latest->filename().string(), checkpoint_path("", expect.resume_from).filename().string());
  }
  EXPECT_EQ(!temp_files_in(run).empty(), expect.torn_temp);
  EXPECT_FALSE(fs::exists(run / "final.pt"));

  // Resume.
  CliResult resumed = run_cli({"resume", run.string()});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  EXPECT_EQ(resumed.out, run.string() + "\n");
  expect_same_metrics(ref.dir / "metrics.csv", run / "metrics.csv");

  YAML::Node meta = load_meta(run);
  EXPECT_EQ(meta["status"].as<std::string>(), "completed");
  ASSERT_TRUE(meta["resumes"].IsSequence()) << read_file(run / "meta.yaml");
  ASSERT_EQ(meta["resumes"].size(), 1u);
  EXPECT_EQ(meta["resumes"][0]["from_epoch"].as<int>(), expect.resume_from);
  EXPECT_TRUE(contains(meta["resumes"][0]["command_line"].as<std::string>(), "resume"));
  EXPECT_FALSE(meta["end_time"].as<std::string>().empty());
  YAML::Node ref_meta = load_meta(ref.dir);
  EXPECT_EQ(meta["epochs_completed"].as<int>(), ref_meta["epochs_completed"].as<int>());
  if (ref_meta["model_selection"]) {
    EXPECT_EQ(meta["model_selection"]["best_epoch"].as<int>(), ref_meta["model_selection"]["best_epoch"].as<int>());
    EXPECT_EQ(meta["model_selection"]["best_val_accuracy"].as<double>(),
              ref_meta["model_selection"]["best_val_accuracy"].as<double>());
  }

  EXPECT_TRUE(temp_files_in(run).empty());
  EXPECT_TRUE(fs::exists(run / "final.pt"));
  EXPECT_EQ(list_dir(run / "checkpoints"), list_dir(ref.dir / "checkpoints"));
  // The final and best models are the reference's.
  CliResult e = run_cli({"eval", run.string()});
  ASSERT_EQ(e.exit_code, 0) << e.describe();
  EXPECT_EQ(without_timing(e.out), ref.eval_final);
  if (!ref.eval_best.empty()) {
    CliResult b = run_cli({"eval", run.string(), "--checkpoint", (run / "best.pt").string()});
    ASSERT_EQ(b.exit_code, 0) << b.describe();
    EXPECT_EQ(without_timing(b.out), ref.eval_best);
  }
}

std::string local_stamp(std::time_t t) {
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d_%H-%M-%S", &tm);
  return buf;
}

}  // namespace

// ================================================================ bad configs: exit 2, nothing written

TEST(CliBadConfig, EachErrorExitsTwoNamesFileLineKeyAndCreatesNoRunDirectory) {
  struct Case {
    std::string what, body, key;
    int line;
  };
  // Lines 1-4 are the same in every file; each case's offending key is on `line`.
  const std::vector<Case> cases{
      {"unknown key", "train:\n  epoch: 3\n", "train.epoch", 6},
      {"wrong type", "train:\n  epochs: three\n", "train.epochs", 6},
      {"batch_size 0", "train:\n  epochs: 2\n  batch_size: 0\n", "train.batch_size", 7},
      {"negative lr", "optimizer:\n  name: sgd\n  lr: -0.5\n", "optimizer.lr", 7},
      {"missing data file", "data:\n  name: fashion_mnist\n  root: /nonexistent/data\n", "data.root", 7},
      {"unknown algorithm", "rule:\n  name: foo\n", "rule.name", 6},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    TempDir tmp("bilevel_test_badcfg");
    const fs::path out = tmp.path() / "out";
    const std::string cfg =
        tmp.write("cfg.yaml", "output:\n  root: " + out.string() + "\nexperiment:\n  name: bad\n" + c.body);
    CliResult r = run_cli({"train", cfg});
    EXPECT_EQ(r.exit_code, 2) << r.describe();
    EXPECT_TRUE(contains(r.err, cfg + ":" + std::to_string(c.line) + ":")) << r.describe();
    EXPECT_TRUE(contains(r.err, "'" + c.key + "'")) << r.describe();
    EXPECT_TRUE(r.out.empty()) << r.describe();
    EXPECT_TRUE(list_dir(out).empty()) << "a run directory was created under " << out;
  }
}

TEST(CliBadConfig, MissingDataFileNamesTheFile) {
  Workspace w;
  CliResult r = w.train({"data.name=mnist", "data.root=/nonexistent/mnist_dir"});
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "/nonexistent/mnist_dir/")) << r.describe();
  EXPECT_TRUE(contains(r.err, "data.root")) << r.describe();
  EXPECT_TRUE(list_dir(w.out()).empty());
}

TEST(CliBadConfig, BadOverridesExitTwo) {
  Workspace w;
  for (const std::string o : {"train.epochs", "train.epoch=3", "train.batch_size=0", "optimizer.lr=-1"}) {
    CliResult r = w.train({o});
    EXPECT_EQ(r.exit_code, 2) << o << "\n" << r.describe();
    EXPECT_TRUE(contains(r.err, "command-line override '" + o + "'")) << r.describe();
  }
  EXPECT_TRUE(list_dir(w.out()).empty());
}

TEST(CliBadConfig, BadCommandLinesExitTwo) {
  TempDir tmp;
  EXPECT_EQ(run_cli({"train"}).exit_code, 2);
  EXPECT_EQ(run_cli({"train", "train.epochs=3"}).exit_code, 2);
  CliResult missing = run_cli({"train", (tmp.path() / "nope.yaml").string()});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_TRUE(contains(missing.err, "nope.yaml")) << missing.describe();
  EXPECT_EQ(run_cli({"train", tmp.write("c.yaml", ""), "--bogus"}).exit_code, 2);
  EXPECT_EQ(run_cli({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(run_cli({}).exit_code, 2);
}

TEST(CliHelp, EverySubcommandHelpExitsZero) {
  CliResult top = run_cli({"--help"});
  EXPECT_EQ(top.exit_code, 0);
  EXPECT_TRUE(contains(top.out, "usage: bilevel")) << top.describe();
  // Every command the top-level usage lists (lines "  NAME ..." after "commands:").
  std::set<std::string> commands;
  {
    std::stringstream ss(top.out.substr(std::min(top.out.find("commands:"), top.out.size())));
    std::string line;
    std::getline(ss, line);
    while (std::getline(ss, line) && !line.empty())
      if (line.size() > 2 && line[0] == ' ' && line[1] == ' ' && line[2] != ' ')
        commands.insert(line.substr(2, line.find(' ', 2) - 2));
  }
  for (const char* required : {"train", "resume", "eval", "env"}) EXPECT_EQ(commands.count(required), 1u) << required;
  for (const std::string& cmd : commands) {
    CliResult r = run_cli({cmd, "--help"});
    EXPECT_EQ(r.exit_code, 0) << cmd << "\n" << r.describe();
    EXPECT_TRUE(contains(r.out, "usage: bilevel " + cmd)) << r.describe();
  }
  // train --help lists every key with its default.
  CliResult train = run_cli({"train", "--help"});
  for (const char* key : {"train.batch_size", "optimizer.lr", "data.synthetic.classes", "checkpoint.every"})
    EXPECT_TRUE(contains(train.out, key)) << key;
}

// ================================================================ a good run

TEST(CliRun, GoodRunProducesACompleteRunDirectory) {
  Workspace w;
  const std::vector<std::string> overrides{"checkpoint.every=2"};
  CliResult r = w.train(overrides);
  ASSERT_EQ(r.exit_code, 0) << r.describe();

  // stdout is exactly the run directory.
  ASSERT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.back(), '\n');
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  const fs::path run = r.first_line();
  const std::regex layout(std::regex_replace((w.out() / "runtest").string(), std::regex(R"([.^$|()\[\]{}*+?\\])"),
                                             R"(\$&)") +
                          R"(/\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}(_\d+)?)");
  EXPECT_TRUE(std::regex_match(run.string(), layout)) << run;
  ASSERT_TRUE(fs::is_directory(run));
  EXPECT_EQ(list_dir(w.out() / "runtest").size(), 1u);

  EXPECT_EQ(list_dir(run), (std::vector<std::string>{".lock", "best.pt", "checkpoints", "config.yaml", "final.pt",
                                                     "meta.yaml", "metrics.csv", "train.log"}));
  EXPECT_EQ(list_dir(run / "checkpoints"),
            (std::vector<std::string>{"epoch_0002.pt", "epoch_0004.pt", "epoch_0005.pt"}));

  // config.yaml: the resolved config, re-loadable, with the overrides applied.
  ExperimentConfig cfg = load_config((run / "config.yaml").string());
  EXPECT_EQ(cfg.checkpoint_every, 2);
  EXPECT_EQ(cfg.train.epochs, 5);
  EXPECT_EQ(cfg.output_root, w.out().string());
  EXPECT_EQ(cfg.hash(), load_config(w.config, {"output.root=" + w.out().string(), "checkpoint.every=2"}).hash());

  // meta.yaml.
  YAML::Node meta = load_meta(run);
  for (const char* k : {"command_line", "overrides", "config_hash", "git_commit", "git_dirty", "host", "start_time",
                        "end_time", "status", "seed", "device", "environment"})
    EXPECT_TRUE(meta[k].IsDefined()) << "meta.yaml lacks " << k;
  EXPECT_EQ(meta["status"].as<std::string>(), "completed");
  EXPECT_TRUE(contains(meta["command_line"].as<std::string>(), "train " + w.config)) << meta["command_line"];
  EXPECT_TRUE(contains(meta["command_line"].as<std::string>(), "checkpoint.every=2"));
  ASSERT_TRUE(meta["overrides"].IsSequence());
  EXPECT_EQ(meta["overrides"].as<std::vector<std::string>>(),
            (std::vector<std::string>{"output.root=" + w.out().string(), "checkpoint.every=2"}));
  EXPECT_EQ(meta["config_hash"].as<std::string>(), cfg.hash());
  EXPECT_FALSE(meta["git_commit"].as<std::string>().empty());
  EXPECT_NO_THROW(meta["git_dirty"].as<bool>());
  EXPECT_FALSE(meta["host"].as<std::string>().empty());
  const std::regex iso(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}.*)");
  EXPECT_TRUE(std::regex_match(meta["start_time"].as<std::string>(), iso)) << meta["start_time"];
  EXPECT_TRUE(std::regex_match(meta["end_time"].as<std::string>(), iso)) << meta["end_time"];
  EXPECT_LE(meta["start_time"].as<std::string>(), meta["end_time"].as<std::string>());
  EXPECT_EQ(meta["seed"].as<int>(), 1);
  EXPECT_EQ(meta["device"].as<std::string>(), "cpu");
  ASSERT_TRUE(meta["environment"].IsMap());
  EXPECT_FALSE(meta["environment"]["libtorch"].as<std::string>("").empty());
  EXPECT_FALSE(meta["environment"]["blas"].as<std::string>("").empty());
  EXPECT_EQ(meta["epochs_completed"].as<int>(), 5);

  // metrics.csv.
  const Csv m = read_csv(run / "metrics.csv");
  ASSERT_GE(m.header.size(), 3u);
  EXPECT_EQ(std::vector<std::string>(m.header.begin(), m.header.begin() + 3),
            (std::vector<std::string>{"epoch", "train_loss", "train_accuracy"}));
  for (const char* c : {"val_loss", "val_accuracy", "test_loss", "test_accuracy", "lr", "epoch_seconds"})
    EXPECT_TRUE(m.has(c)) << c;
  EXPECT_EQ(m.header.back(), "epoch_seconds");
  ASSERT_EQ(m.rows.size(), 5u);
  for (size_t i = 0; i < m.rows.size(); ++i) {
    ASSERT_EQ(m.rows[i].size(), m.header.size());
    EXPECT_EQ(m.value(i, "epoch"), double(i + 1));
    for (const char* acc : {"train_accuracy", "val_accuracy", "test_accuracy"}) {
      EXPECT_GE(m.value(i, acc), 0.0) << acc;
      EXPECT_LE(m.value(i, acc), 1.0) << acc;
    }
    for (const char* loss : {"train_loss", "val_loss", "test_loss"}) {
      EXPECT_TRUE(std::isfinite(m.value(i, loss))) << loss;
      EXPECT_GT(m.value(i, loss), 0.0) << loss;
    }
    EXPECT_GE(m.value(i, "epoch_seconds"), 0.0);
    EXPECT_DOUBLE_EQ(m.value(i, "lr"), 0.05);
  }

  // Model selection on the validation split: the first epoch with the best validation accuracy.
  const auto val = m.values("val_accuracy");
  const size_t best = std::max_element(val.begin(), val.end()) - val.begin();
  EXPECT_EQ(meta["model_selection"]["best_epoch"].as<int>(), int(best + 1));
  EXPECT_EQ(meta["model_selection"]["best_val_accuracy"].as<double>(), val[best]);
  EXPECT_EQ(meta["model_selection"]["test_accuracy_at_best_epoch"].as<double>(), m.value(best, "test_accuracy"));

  const std::string log = read_file(run / "train.log");
  EXPECT_FALSE(log.empty());
  EXPECT_TRUE(contains(log, "epoch 5/5")) << log;
  EXPECT_TRUE(temp_files_in(run).empty());

  // The run's config.yaml is a config: training from it reproduces the run in a new directory.
  CliResult again = run_cli({"train", (run / "config.yaml").string()});
  ASSERT_EQ(again.exit_code, 0) << again.describe();
  const fs::path run2 = again.first_line();
  EXPECT_NE(run2, run);
  EXPECT_EQ(run2.parent_path(), run.parent_path());
  expect_same_metrics(run / "metrics.csv", run2 / "metrics.csv");
  EXPECT_EQ(load_meta(run2)["config_hash"].as<std::string>(), cfg.hash());
}

TEST(CliRun, NoValidationMeansNoBestModelAndNoValColumns) {
  Workspace w;
  CliResult r = w.train({"data.validation=0", "train.epochs=2"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const fs::path run = r.first_line();
  EXPECT_FALSE(fs::exists(run / "best.pt"));
  EXPECT_TRUE(fs::exists(run / "final.pt"));
  const Csv m = read_csv(run / "metrics.csv");
  EXPECT_FALSE(m.has("val_loss"));
  EXPECT_FALSE(m.has("val_accuracy"));
  EXPECT_TRUE(m.has("test_accuracy"));
  EXPECT_EQ(m.rows.size(), 2u);
  EXPECT_FALSE(load_meta(run)["model_selection"].IsDefined());
}

TEST(CliRun, RunStartedInAnOccupiedSecondGetsASuffixAndOverwritesNothing) {
  Workspace w;
  // Occupy the directory names of the coming seconds, as runs started in those seconds would.
  const fs::path parent = w.out() / "runtest";
  fs::create_directories(parent);
  std::set<std::string> taken;
  const std::time_t now = std::time(nullptr);
  for (std::time_t t = now - 1; t <= now + 30; ++t) {
    const std::string stamp = local_stamp(t);
    fs::create_directory(parent / stamp);
    write_file(parent / stamp / "marker", stamp);
    taken.insert(stamp);
  }
  CliResult r = w.train({"train.epochs=1"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const fs::path run = r.first_line();
  const std::string name = run.filename().string();
  ASSERT_GT(name.size(), 2u);
  EXPECT_EQ(name.substr(name.size() - 2), "_1") << name;
  EXPECT_EQ(taken.count(name.substr(0, name.size() - 2)), 1u) << name;
  EXPECT_TRUE(fs::exists(run / "metrics.csv"));
  for (const auto& stamp : taken) {
    EXPECT_EQ(list_dir(parent / stamp), std::vector<std::string>{"marker"}) << stamp;
    EXPECT_EQ(read_file(parent / stamp / "marker"), stamp);
  }
}

TEST(RunDirTest, CreateInTheSameSecondAddsSuffixes) {
  TempDir tmp;
  bool checked = false;
  for (int attempt = 0; attempt < 5 && !checked; ++attempt) {
    const fs::path root = tmp.path() / std::to_string(attempt);
    const std::time_t t0 = std::time(nullptr);
    RunDir a = RunDir::create(root, "exp");
    RunDir b = RunDir::create(root, "exp");
    RunDir c = RunDir::create(root, "exp");
    EXPECT_NE(a.root, b.root);
    EXPECT_NE(b.root, c.root);
    EXPECT_NE(a.root, c.root);
    EXPECT_TRUE(fs::is_directory(a.checkpoints()));
    EXPECT_TRUE(fs::is_directory(c.checkpoints()));
    if (std::time(nullptr) != t0) continue;  // crossed a second boundary; try again
    const std::string stamp = local_stamp(t0);
    EXPECT_EQ(a.root, root / "exp" / stamp);
    EXPECT_EQ(b.root, root / "exp" / (stamp + "_1"));
    EXPECT_EQ(c.root, root / "exp" / (stamp + "_2"));
    checked = true;
  }
  EXPECT_TRUE(checked);
}

TEST(RunDirTest, OpenRejectsWhatIsNotARun) {
  TempDir tmp;
  EXPECT_THROW(RunDir::open(tmp.path() / "missing"), UserError);
  EXPECT_THROW(RunDir::open(tmp.path()), UserError);
  tmp.write("run/config.yaml", "");
  EXPECT_NO_THROW(RunDir::open(tmp.path() / "run"));
}

// ================================================================ eval

TEST(CliEval, EvalMatchesTheMetricsAndAcceptsCheckpoints) {
  Workspace w;
  CliResult r = w.train({});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const fs::path run = r.first_line();
  const Csv m = read_csv(run / "metrics.csv");
  ASSERT_EQ(m.rows.size(), 5u);

  CliResult e = run_cli({"eval", run.string()});
  ASSERT_EQ(e.exit_code, 0) << e.describe();
  EvalOut out = parse_eval(e);
  EXPECT_NEAR(out.accuracy, m.value(4, "test_accuracy"), 1e-6);
  EXPECT_NEAR(out.loss, m.value(4, "test_loss"), 1e-6);
  EXPECT_EQ(out.examples, 200);

  CliResult e2 = run_cli({"eval", run.string(), "--checkpoint", (run / "checkpoints" / "epoch_0002.pt").string()});
  ASSERT_EQ(e2.exit_code, 0) << e2.describe();
  EvalOut out2 = parse_eval(e2);
  EXPECT_NEAR(out2.accuracy, m.value(1, "test_accuracy"), 1e-6);
  EXPECT_NEAR(out2.loss, m.value(1, "test_loss"), 1e-6);
  EXPECT_NE(out2.loss, out.loss);  // a different model was evaluated

  const int best = load_meta(run)["model_selection"]["best_epoch"].as<int>();
  CliResult e3 = run_cli({"eval", run.string(), "--checkpoint", (run / "best.pt").string()});
  ASSERT_EQ(e3.exit_code, 0) << e3.describe();
  EvalOut out3 = parse_eval(e3);
  EXPECT_NEAR(out3.accuracy, m.value(best - 1, "test_accuracy"), 1e-6);
  EXPECT_NEAR(out3.loss, m.value(best - 1, "test_loss"), 1e-6);

  // The names resume, eval and export share (runner.h run_checkpoint): best, final, a name in checkpoints/.
  EXPECT_NEAR(parse_eval(run_cli({"eval", run.string(), "--checkpoint", "best"})).loss, out3.loss, 1e-9);
  EXPECT_NEAR(parse_eval(run_cli({"eval", run.string(), "--checkpoint=final"})).loss, out.loss, 1e-9);
  EXPECT_NEAR(parse_eval(run_cli({"eval", run.string(), "--checkpoint", "epoch_0002.pt"})).loss, out2.loss, 1e-9);
  CliResult none = run_cli({"eval", run.string(), "--checkpoint", "epoch_0042.pt"});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.err.find("epoch_0042.pt: no such checkpoint"), std::string::npos) << none.describe();
}

TEST(CliEval, BadArgumentsExitTwo) {
  Workspace w;
  CliResult bad = run_cli({"eval", (w.tmp.path() / "no_such_run").string()});
  EXPECT_EQ(bad.exit_code, 2) << bad.describe();
  EXPECT_TRUE(contains(bad.err, "no_such_run")) << bad.describe();
  CliResult not_run = run_cli({"eval", w.tmp.path().string()});
  EXPECT_EQ(not_run.exit_code, 2) << not_run.describe();
  EXPECT_EQ(run_cli({"eval"}).exit_code, 2);

  CliResult r = w.train({"train.epochs=1"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const std::string run = r.first_line();
  CliResult missing = run_cli({"eval", run, "--checkpoint", run + "/checkpoints/epoch_0009.pt"});
  EXPECT_EQ(missing.exit_code, 2) << missing.describe();
  EXPECT_TRUE(contains(missing.err, "epoch_0009.pt")) << missing.describe();
  EXPECT_EQ(run_cli({"eval", run, "--checkpoint"}).exit_code, 2);
  EXPECT_EQ(run_cli({"eval", run, "--bogus"}).exit_code, 2);
  // A file that is not a checkpoint.
  CliResult garbage = run_cli({"eval", run, "--checkpoint", run + "/config.yaml"});
  EXPECT_EQ(garbage.exit_code, 2) << garbage.describe();
}

// ================================================================ exact resume

TEST(Resume, KilledMidEpoch) {
  crash_and_resume({}, "batch:3.2", {2, 2, false});
}

TEST(Resume, KilledAfterTheMetricsRowBeforeTheCheckpoint) {
  crash_and_resume({}, "epoch_end:2", {2, 1, false});
}

TEST(Resume, KilledDuringACheckpointWrite) {
  crash_and_resume({}, "atomic_write:epoch_0003.pt", {3, 2, true});
}

TEST(Resume, KilledBeforeTheFirstCheckpoint) {
  crash_and_resume({}, "batch:1.5", {0, 0, false});
}

TEST(Resume, KilledWhileWritingBestModel) {
  crash_and_resume({}, "atomic_write:best.pt", {1, 0, true});
}

TEST(Resume, KilledWhileWritingFinalModel) {
  crash_and_resume({}, "atomic_write:final.pt", {5, 5, true});
}

TEST(Resume, SgdNesterovMomentumCosineWithSparseCheckpoints) {
  // Checkpoints every 2 epochs: killed in epoch 4, resumes from epoch 2 and recomputes epoch 3's row.
  crash_and_resume({"optimizer.momentum=0.9", "optimizer.nesterov=true", "scheduler.name=cosine",
                    "scheduler.min_lr=0.001", "checkpoint.every=2"},
                   "batch:4.1", {3, 2, false});
}

TEST(Resume, AdamWithStepSchedule) {
  crash_and_resume({"optimizer.name=adam", "optimizer.lr=0.01", "optimizer.weight_decay=0.001",
                    "scheduler.name=step", "scheduler.step_size=2", "scheduler.gamma=0.5"},
                   "batch:3.2", {2, 2, false});
}

// Quantized runs: the flip rule's moving average and codes, learned scales (flip, lsq) and stochastic rounding drawn
// from (seed, epoch, batch) all resume exactly.
TEST(Resume, QuantizedFlipWithLearnedScale) {
  crash_and_resume({"quantization.enabled=true", "quantization.weights.solver=flip", "quantization.weights.learn_scale=true",
                    "quantization.flip.tau=1e-5", "quantization.flip.gamma=0.01"},
                   "batch:3.2", {2, 2, false});
}

TEST(Resume, QuantizedLsqWeightsAndActivationsStochasticRounding) {
  crash_and_resume({"quantization.enabled=true", "quantization.weights.quantizer=uniform", "quantization.weights.bits=3",
                    "quantization.weights.solver=lsq", "quantization.weights.rounding=stochastic",
                    "quantization.activations.quantizer=uniform", "quantization.activations.bits=2",
                    "quantization.activations.solver=lsq", "model.activation=relu", "optimizer.name=adam",
                    "optimizer.lr=0.01"},
                   "batch:4.1", {3, 3, false});
}

TEST(Resume, ExternalSigkill) {
  // Long enough (tens of ms per epoch, 15 epochs) that the kill lands mid-run.
  const std::vector<std::string> overrides{"data.synthetic.train=3000", "data.synthetic.image_size=6",
                                           "model.hidden=[64]", "train.batch_size=16", "train.epochs=15",
                                           "optimizer.name=adam", "optimizer.lr=0.002"};
  const Reference& ref = reference(overrides);
  Workspace w;
  CliProcess p(w.train_args(overrides));
  fs::path run;
  ASSERT_TRUE(wait_until(
      [&] {
        if (run.empty()) {
          const auto names = list_dir(w.out() / "runtest");
          if (names.size() == 1) run = w.out() / "runtest" / names[0];
        }
        return !run.empty() && complete_rows(run / "metrics.csv") >= 2;
      },
      std::chrono::seconds(60)))
      << "the run did not reach 2 epochs";
  p.kill(SIGKILL);
  CliResult killed = p.wait();
  ASSERT_TRUE(killed.signaled) << killed.describe();
  ASSERT_EQ(killed.signal, SIGKILL);
  EXPECT_EQ(killed.first_line(), run.string());
  const int rows = complete_rows(run / "metrics.csv");
  ASSERT_LT(rows, 15) << "the run finished before it was killed; make it longer";
  EXPECT_EQ(load_meta(run)["status"].as<std::string>(), "running");

  CliResult resumed = run_cli({"resume", run.string()});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  expect_same_metrics(ref.dir / "metrics.csv", run / "metrics.csv");
  YAML::Node meta = load_meta(run);
  EXPECT_EQ(meta["status"].as<std::string>(), "completed");
  ASSERT_EQ(meta["resumes"].size(), 1u);
  EXPECT_GE(meta["resumes"][0]["from_epoch"].as<int>(), rows - 1);
  EXPECT_LE(meta["resumes"][0]["from_epoch"].as<int>(), rows);
  CliResult e = run_cli({"eval", run.string()});
  EXPECT_EQ(without_timing(e.out), ref.eval_final);
}

TEST(Resume, TwiceInterruptedRecordsTwoResumes) {
  const Reference& ref = reference({});
  Workspace w;
  CliResult killed = w.train({}, {"BILEVEL_CRASH_AT=batch:2.1"});
  ASSERT_TRUE(killed.signaled) << killed.describe();
  const std::string run = killed.first_line();
  CliResult again = run_cli({"resume", run}, {"BILEVEL_CRASH_AT=batch:4.3"});
  ASSERT_TRUE(again.signaled) << again.describe();
  EXPECT_EQ(again.signal, SIGKILL);
  CliResult done = run_cli({"resume", run});
  ASSERT_EQ(done.exit_code, 0) << done.describe();
  expect_same_metrics(ref.dir / "metrics.csv", fs::path(run) / "metrics.csv");
  YAML::Node meta = load_meta(run);
  ASSERT_EQ(meta["resumes"].size(), 2u);
  EXPECT_EQ(meta["resumes"][0]["from_epoch"].as<int>(), 1);
  EXPECT_EQ(meta["resumes"][1]["from_epoch"].as<int>(), 3);
  EXPECT_EQ(meta["status"].as<std::string>(), "completed");
}

TEST(Resume, CompletedRunIsLeftAlone) {
  Workspace w;
  CliResult r = w.train({"train.epochs=2"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const fs::path run = r.first_line();
  const std::string metrics = read_file(run / "metrics.csv");
  const std::string meta = read_file(run / "meta.yaml");
  CliResult again = run_cli({"resume", run.string()});
  EXPECT_EQ(again.exit_code, 0) << again.describe();
  EXPECT_EQ(read_file(run / "metrics.csv"), metrics);
  EXPECT_EQ(read_file(run / "meta.yaml"), meta);
}

TEST(Resume, CheckpointOfAnotherConfigIsRejected) {
  Workspace w;
  CliResult killed = w.train({}, {"BILEVEL_CRASH_AT=batch:3.0"});
  ASSERT_TRUE(killed.signaled) << killed.describe();
  const fs::path run = killed.first_line();
  // Editing the run's config makes its checkpoints belong to another config.
  ExperimentConfig cfg = load_config((run / "config.yaml").string(), {"optimizer.lr=0.07"});
  write_file(run / "config.yaml", cfg.to_yaml());
  CliResult r = run_cli({"resume", run.string()});
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "different config")) << r.describe();
}

TEST(Resume, BadArgumentsExitTwo) {
  TempDir tmp;
  EXPECT_EQ(run_cli({"resume"}).exit_code, 2);
  EXPECT_EQ(run_cli({"resume", (tmp.path() / "nope").string()}).exit_code, 2);
  EXPECT_EQ(run_cli({"resume", tmp.path().string()}).exit_code, 2);
  EXPECT_EQ(run_cli({"resume", "a", "b"}).exit_code, 2);
}

// ================================================================ checkpoints, in process

namespace {

ExperimentConfig checkpoint_config(const std::vector<std::string>& overrides = {}) {
  std::vector<std::string> o{"data.validation=0", "train.epochs=3"};
  o.insert(o.end(), overrides.begin(), overrides.end());
  return load_config_text(kRunYaml, "cfg.yaml", o);
}

void train_batch(Experiment& x, const Batches& batches, int64_t i) {
  auto [xb, yb] = batches.get(i);
  x.optimizer.impl->zero_grad();
  x.rule->train_step(x.net, xb, yb);
  x.optimizer.impl->step();
}

bool same_parameters(LayeredNet& a, LayeredNet& b) {
  auto pa = a->parameters(), pb = b->parameters();
  if (pa.size() != pb.size()) return false;
  for (size_t i = 0; i < pa.size(); ++i)
    if (!torch::equal(pa[i], pb[i])) return false;
  return true;
}

// The optimizer state's key for a parameter: the address of its TensorImpl, which LibTorch 1.x keys as a string
// (c10::guts::to_string, i.e. ostream << pointer) and 2.x as the pointer itself.
template <class StateMap>
typename StateMap::key_type param_state_key(const StateMap&, const torch::Tensor& p) {
  using Key = typename StateMap::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

const torch::optim::AdamParamState& adam_state(torch::optim::Optimizer& opt, const torch::Tensor& p) {
  auto& state = opt.state();
  auto it = state.find(param_state_key(state, p));
  if (it == state.end()) throw std::runtime_error("no Adam state for a parameter");
  return static_cast<const torch::optim::AdamParamState&>(*it->second);
}

}  // namespace

TEST(Checkpoint, RoundTripRestoresParametersOptimizerProgressAndRng) {
  TempDir tmp;
  const fs::path file = tmp.path() / "epoch_0007.pt";
  const ExperimentConfig cfg = checkpoint_config({"optimizer.name=adam", "optimizer.lr=0.01"});

  Experiment a = prepare(cfg);
  Batches batches(a.data.train, cfg.train.batch_size, true, cfg.seed, 0);
  ASSERT_GE(batches.count(), 4);
  for (int64_t i = 0; i < 3; ++i) train_batch(a, batches, i);

  const TrainProgress saved{7, 5, 0.75, 0.625};
  save_checkpoint(file, *a.net, *a.optimizer.impl, saved, cfg.hash());
  ASSERT_TRUE(fs::exists(file));
  EXPECT_EQ(list_dir(tmp.path()), std::vector<std::string>{"epoch_0007.pt"});  // no temporary file left
  const torch::Tensor rng_after_save = torch::rand({16});

  Experiment b = prepare(cfg);  // re-seeds the global RNG and builds the initial network
  torch::rand({100});           // move the RNG on
  ASSERT_FALSE(same_parameters(a.net, b.net));
  const TrainProgress loaded = load_checkpoint(file, *b.net, *b.optimizer.impl, cfg.hash());
  EXPECT_TRUE(torch::equal(torch::rand({16}), rng_after_save)) << "the CPU RNG state was not restored";

  EXPECT_EQ(loaded.epoch, 7);
  EXPECT_EQ(loaded.best_epoch, 5);
  EXPECT_EQ(loaded.best_val_accuracy, 0.75);
  EXPECT_EQ(loaded.best_test_accuracy, 0.625);
  EXPECT_TRUE(same_parameters(a.net, b.net));

  // Adam's moments and step counts were restored.
  auto pa = a.net->parameters(), pb = b.net->parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    const auto& sa = adam_state(*a.optimizer.impl, pa[i]);
    const auto& sb = adam_state(*b.optimizer.impl, pb[i]);
    EXPECT_EQ(sa.step(), sb.step());
    EXPECT_TRUE(torch::equal(sa.exp_avg(), sb.exp_avg())) << "parameter " << i;
    EXPECT_TRUE(torch::equal(sa.exp_avg_sq(), sb.exp_avg_sq())) << "parameter " << i;
  }
  // So one more identical step gives identical parameters...
  train_batch(a, batches, 3);
  train_batch(b, batches, 3);
  EXPECT_TRUE(same_parameters(a.net, b.net));

  // ...which it would not with the parameters alone (fresh Adam state): the check above can fail.
  save_checkpoint(file, *a.net, *a.optimizer.impl, saved, cfg.hash());
  Experiment d = prepare(cfg);
  load_model(file, *d.net);
  EXPECT_TRUE(same_parameters(a.net, d.net));
  train_batch(a, batches, 0);
  train_batch(d, batches, 0);
  EXPECT_FALSE(same_parameters(a.net, d.net));
}

TEST(Checkpoint, SgdMomentumBufferRoundTrips) {
  TempDir tmp;
  const fs::path file = tmp.path() / "epoch_0001.pt";
  const ExperimentConfig cfg = checkpoint_config({"optimizer.momentum=0.9"});
  Experiment a = prepare(cfg);
  Batches batches(a.data.train, cfg.train.batch_size, true, cfg.seed, 0);
  for (int64_t i = 0; i < 3; ++i) train_batch(a, batches, i);
  save_checkpoint(file, *a.net, *a.optimizer.impl, TrainProgress{1, 0, -1, -1}, cfg.hash());
  Experiment b = prepare(cfg);
  load_checkpoint(file, *b.net, *b.optimizer.impl, cfg.hash());
  train_batch(a, batches, 3);
  train_batch(b, batches, 3);
  EXPECT_TRUE(same_parameters(a.net, b.net));
}

TEST(Checkpoint, DifferentConfigHashIsRejected) {
  TempDir tmp;
  const fs::path file = tmp.path() / "epoch_0001.pt";
  const ExperimentConfig cfg = checkpoint_config();
  Experiment a = prepare(cfg);
  save_checkpoint(file, *a.net, *a.optimizer.impl, TrainProgress{1, 0, -1, -1}, cfg.hash());
  const ExperimentConfig other = checkpoint_config({"train.epochs=4"});
  ASSERT_NE(other.hash(), cfg.hash());
  Experiment b = prepare(other);
  try {
    load_checkpoint(file, *b.net, *b.optimizer.impl, other.hash());
    FAIL() << "a checkpoint of another config was accepted";
  } catch (const UserError& e) {
    EXPECT_TRUE(contains(e.what(), "different config")) << e.what();
    EXPECT_TRUE(contains(e.what(), file.string())) << e.what();
  }
  // An empty expected hash skips the check.
  EXPECT_NO_THROW(load_checkpoint(file, *b.net, *b.optimizer.impl, ""));
}

TEST(Checkpoint, TruncatedFileIsAUserError) {
  TempDir tmp;
  const fs::path file = tmp.path() / "epoch_0001.pt";
  const ExperimentConfig cfg = checkpoint_config();
  Experiment a = prepare(cfg);
  save_checkpoint(file, *a.net, *a.optimizer.impl, TrainProgress{1, 0, -1, -1}, cfg.hash());
  fs::resize_file(file, fs::file_size(file) / 2);
  EXPECT_THROW(load_checkpoint(file, *a.net, *a.optimizer.impl, cfg.hash()), UserError);
  EXPECT_THROW(load_model(file, *a.net), UserError);
}

TEST(Checkpoint, LatestIgnoresTemporaryAndForeignFiles) {
  TempDir tmp;
  const fs::path dir = tmp.path();
  EXPECT_FALSE(latest_checkpoint(dir / "missing").has_value());
  EXPECT_FALSE(latest_checkpoint(dir).has_value());
  EXPECT_EQ(checkpoint_path(dir, 3), dir / "epoch_0003.pt");
  EXPECT_EQ(checkpoint_path(dir, 12345), dir / "epoch_12345.pt");
  for (const char* name : {"epoch_0002.pt", "epoch_0010.pt", ".epoch_0011.pt.123.tmp", "epoch_0012.pt.tmp",
                           "best.pt", "notes.txt"})
    write_file(dir / name, "x");
  ASSERT_TRUE(latest_checkpoint(dir).has_value());
  EXPECT_EQ(latest_checkpoint(dir)->filename(), "epoch_0010.pt");
}

// ================================================================ utilities

TEST(Metrics, WritesHeaderThenRowsAndRoundTripsValues) {
  TempDir tmp;
  const fs::path file = tmp.path() / "metrics.csv";
  {
    MetricsWriter w(file, {"epoch", "loss", "acc"});
    w.append({1, 0.1, 1.0 / 3.0});
    w.append({2, 0.25, 0.5});
    EXPECT_THROW(w.append({3, 0.1}), std::logic_error);
  }
  const std::string text = read_file(file);
  EXPECT_EQ(text.substr(0, text.find('\n') + 1), "epoch,loss,acc\n");
  const Csv csv = parse_csv(text);
  ASSERT_EQ(csv.rows.size(), 2u);
  EXPECT_EQ(csv.rows[0][0], "1");  // integers without a decimal point
  EXPECT_EQ(csv.value(0, "loss"), 0.1);  // exact round trip
  EXPECT_EQ(csv.value(0, "acc"), 1.0 / 3.0);
  EXPECT_TRUE(contains(text, "\n2,0.25,0.5\n")) << text;
  EXPECT_EQ(text.back(), '\n');
  for (double v : {0.1, 1.0 / 3.0, 2.5e-7, 123456.789, -4.0, 1e20})
    EXPECT_EQ(std::stod(format_metric(v)), v) << format_metric(v);
  EXPECT_EQ(format_metric(3.0), "3");
  EXPECT_EQ(format_metric(0.0), "0");
}

TEST(Metrics, ReopeningDropsRowsAfterKeepThroughAndATornLine) {
  TempDir tmp;
  const fs::path file = tmp.path() / "metrics.csv";
  write_file(file, "epoch,loss\n1,0.5\n2,0.4\n3,0.3\n4,0.2\n5,0.1");  // row 5 is torn (no newline)
  {
    MetricsWriter w(file, {"epoch", "loss"}, 2);
    EXPECT_EQ(read_file(file), "epoch,loss\n1,0.5\n2,0.4\n");
    w.append({3, 0.25});
  }
  EXPECT_EQ(read_file(file), "epoch,loss\n1,0.5\n2,0.4\n3,0.25\n");

  // keep_through = -1 keeps every complete row but still drops a torn one.
  write_file(file, "epoch,loss\n1,0.5\n2,0.4\n3,0.3");
  { MetricsWriter w(file, {"epoch", "loss"}); }
  EXPECT_EQ(read_file(file), "epoch,loss\n1,0.5\n2,0.4\n");

  // keep_through = 0 keeps only the header.
  { MetricsWriter w(file, {"epoch", "loss"}, 0); }
  EXPECT_EQ(read_file(file), "epoch,loss\n");

  // A file with other columns is refused.
  EXPECT_THROW(MetricsWriter(file, {"epoch", "accuracy"}, 0), UserError);
  EXPECT_EQ(read_file(file), "epoch,loss\n");

  // An empty file gets the header.
  write_file(file, "");
  { MetricsWriter w(file, {"epoch", "loss"}); }
  EXPECT_EQ(read_file(file), "epoch,loss\n");
}

TEST(AtomicFile, WritesReplacesAndLeavesNoTemporaryFile) {
  TempDir tmp;
  const fs::path file = tmp.path() / "out.txt";
  write_file_atomic(file, "first version, rather long\n");
  EXPECT_EQ(read_file(file), "first version, rather long\n");
  write_file_atomic(file, "second\n");
  EXPECT_EQ(read_file(file), "second\n");
  write_file_atomic(file, "");
  EXPECT_EQ(read_file(file), "");
  EXPECT_EQ(list_dir(tmp.path()), std::vector<std::string>{"out.txt"});

  const fs::path t = temp_path_for(file);
  EXPECT_EQ(t.parent_path(), file.parent_path());
  EXPECT_EQ(t.extension(), ".tmp");
  EXPECT_NE(t, file);

  // A writer that fails leaves the old file and no temporary file.
  EXPECT_THROW(write_atomic_with(file,
                                 [](const fs::path& tmp_file) {
                                   write_file(tmp_file, "partial");
                                   throw std::runtime_error("disk full");
                                 }),
               std::runtime_error);
  EXPECT_EQ(read_file(file), "");
  EXPECT_EQ(list_dir(tmp.path()), std::vector<std::string>{"out.txt"});
}

TEST(Schedule, StepAndCosineAtKnownEpochs) {
  SchedulerConfig none;
  none.name = "none";
  EXPECT_DOUBLE_EQ(schedule_lr(none, 0.1, 0, 10), 0.1);
  EXPECT_DOUBLE_EQ(schedule_lr(none, 0.1, 9, 10), 0.1);

  SchedulerConfig step;
  step.name = "step";
  step.step_size = 2;
  step.gamma = 0.5;
  EXPECT_DOUBLE_EQ(schedule_lr(step, 0.1, 0, 10), 0.1);
  EXPECT_DOUBLE_EQ(schedule_lr(step, 0.1, 1, 10), 0.1);
  EXPECT_DOUBLE_EQ(schedule_lr(step, 0.1, 2, 10), 0.05);
  EXPECT_DOUBLE_EQ(schedule_lr(step, 0.1, 3, 10), 0.05);
  EXPECT_DOUBLE_EQ(schedule_lr(step, 0.1, 4, 10), 0.025);
  EXPECT_DOUBLE_EQ(schedule_lr(step, 0.1, 9, 10), 0.1 * 0.5 * 0.5 * 0.5 * 0.5);

  SchedulerConfig cosine;
  cosine.name = "cosine";
  cosine.min_lr = 0.01;
  EXPECT_DOUBLE_EQ(schedule_lr(cosine, 0.1, 0, 10), 0.1);
  EXPECT_DOUBLE_EQ(schedule_lr(cosine, 0.1, 5, 10), 0.055);
  EXPECT_NEAR(schedule_lr(cosine, 0.1, 10, 10), 0.01, 1e-15);
  EXPECT_NEAR(schedule_lr(cosine, 0.1, 2, 10), 0.01 + 0.045 * (1 + std::cos(M_PI * 0.2)), 1e-15);
  EXPECT_NEAR(schedule_lr(cosine, 0.1, 9, 10), 0.01 + 0.045 * (1 + std::cos(M_PI * 0.9)), 1e-15);
  // Monotone decreasing over the run.
  for (int64_t e = 1; e < 10; ++e) EXPECT_LT(schedule_lr(cosine, 0.1, e, 10), schedule_lr(cosine, 0.1, e - 1, 10));
}

TEST(Schedule, ApplyScheduleSetsEveryGroupFromItsBaseRate) {
  ExperimentConfig cfg = load_config_text(kRunYaml, "cfg.yaml",
                                          {"data.validation=0", "optimizer.layer_lrs=[0.2,0.02]",
                                           "scheduler.name=step", "scheduler.step_size=1", "scheduler.gamma=0.5"});
  Experiment x = prepare(cfg);
  const double first = apply_schedule(x.optimizer, cfg.scheduler, 2, cfg.train.epochs);
  EXPECT_DOUBLE_EQ(first, 0.05);
  auto& groups = x.optimizer.impl->param_groups();
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_DOUBLE_EQ(groups[0].options().get_lr(), 0.05);
  EXPECT_DOUBLE_EQ(groups[1].options().get_lr(), 0.005);
  // A schedule is a function of the epoch: going back restores the earlier rate.
  apply_schedule(x.optimizer, cfg.scheduler, 0, cfg.train.epochs);
  EXPECT_DOUBLE_EQ(groups[0].options().get_lr(), 0.2);
  EXPECT_DOUBLE_EQ(groups[1].options().get_lr(), 0.02);
}

TEST(CliRun, ScheduledLearningRateIsRecordedPerEpoch) {
  Workspace w;
  CliResult r = w.train({"train.epochs=4", "scheduler.name=step", "scheduler.step_size=2", "scheduler.gamma=0.5"});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const Csv m = read_csv(fs::path(r.first_line()) / "metrics.csv");
  EXPECT_EQ(m.values("lr"), (std::vector<double>{0.05, 0.05, 0.025, 0.025}));
}
