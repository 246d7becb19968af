// Data-parallel training over c10d Gloo on loopback: the launcher environment (torchrun, srun, Slurm node lists),
// DistributedSampler-style shards, and whole runs through `bilevel train --nproc 2`: 2 ranks with per-rank batch
// B/2 end with the parameters of 1 rank with batch B (1e-5 relative) for backprop, ep and dual_prop; a killed or
// preempted 2-rank run resumes to exactly the uninterrupted one; bad worlds fail with a named error and no run
// directory.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/data/batches.h"
#include "bilevel/dist/data_parallel.h"
#include "bilevel/dist/local_launcher.h"
#include "bilevel/dist/world.h"
#include "bilevel/run/checkpoint.h"
#include "bilevel/train/experiment.h"
#include "bilevel/util/error.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace bilevel;
using namespace testutil;

namespace {

EnvLookup env_of(const std::map<std::string, std::string>& vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

// 500 training examples, batches of 50 (10 per epoch, 25 per rank with 2 ranks): no padding.
const std::string kYaml = small_synthetic_yaml("dist", 5, R"(train:
  epochs: 2
  batch_size: 50
  threads: 1
optimizer:
  name: sgd
  lr: 0.05
  momentum: 0.9
dist:
  timeout: 60
)");

const std::vector<std::string> kBackprop{};
const std::vector<std::string> kEp{"rule.name=ep", "train.loss=mse", "model.activation=sigmoid4",
                                   "rule.beta=0.5", "optimizer.lr=0.2"};
const std::vector<std::string> kDualProp{"rule.name=dual_prop", "model.activation=sigmoid4"};

struct Workspace {
  TempDir tmp{"bilevel_test_dist"};
  std::string config = tmp.write("cfg.yaml", kYaml);
  fs::path out() const { return tmp.path() / "out"; }
  std::vector<std::string> args(const std::vector<std::string>& overrides, int nproc = 0) const {
    std::vector<std::string> a{"train", config, "output.root=" + out().string()};
    a.insert(a.end(), overrides.begin(), overrides.end());
    if (nproc > 0) a.insert(a.end(), {"--nproc", std::to_string(nproc)});
    return a;
  }
  CliResult train(const std::vector<std::string>& overrides, int nproc = 0,
                  const std::vector<std::string>& env = {}) const {
    return run_cli(args(overrides, nproc), env);
  }
};

// The parameters of a run's final.pt (network built from its config).
std::vector<torch::Tensor> final_parameters(const fs::path& run) {
  Experiment x = prepare(load_config((run / "config.yaml").string()));
  load_model(run / "final.pt", *x.net);
  std::vector<torch::Tensor> p;
  for (const auto& t : x.net->parameters()) p.push_back(t.detach().clone());
  return p;
}

void expect_close_parameters(const fs::path& expected, const fs::path& actual, double rel) {
  const auto a = final_parameters(expected), b = final_parameters(actual);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const double scale = a[i].abs().max().item<double>();
    const double diff = (a[i] - b[i]).abs().max().item<double>();
    EXPECT_LE(diff, rel * scale) << "parameter " << i << ": max difference " << diff << ", scale " << scale;
  }
}

// Loss, accuracy, learning rate and the quantization's columns. The rules' diagnostics (relaxation residuals and
// steps) are statistics of each rank's shard, averaged over the ranks, not of the global batch: left out.
void expect_close_metrics(const fs::path& expected, const fs::path& actual, double rel) {
  const Csv e = read_csv(expected), a = read_csv(actual);
  ASSERT_EQ(e.header, a.header);
  ASSERT_EQ(e.rows.size(), a.rows.size());
  for (size_t r = 0; r < e.rows.size(); ++r)
    for (const auto& c : e.header) {
      const bool compared = c == "epoch" || c == "lr" || c.find("_loss") != std::string::npos ||
                            c.find("_accuracy") != std::string::npos || c.rfind("quant_", 0) == 0;
      if (!compared) continue;
      const double x = e.value(r, c), y = a.value(r, c);
      EXPECT_LE(std::abs(x - y), rel * std::max(1.0, std::abs(x))) << "row " << r + 1 << ", column " << c;
    }
}

YAML::Node meta_of(const fs::path& run) { return YAML::LoadFile((run / "meta.yaml").string()); }

// 2 ranks × B/2 against 1 rank × B. dist.backend=auto on one host averages the gradients through shared memory
// (dist/shm_allreduce.h); gloo sends them over loopback.
void two_ranks_equal_one(const std::vector<std::string>& rule, const std::string& backend = "auto") {
  Workspace w;
  CliResult one = w.train(rule);
  ASSERT_EQ(one.exit_code, 0) << one.describe();
  std::vector<std::string> overrides = rule;
  overrides.push_back("dist.backend=" + backend);
  CliResult two = w.train(overrides, 2);
  ASSERT_EQ(two.exit_code, 0) << two.describe();
  // Only rank 0 prints, and only one run directory exists per run.
  EXPECT_EQ(std::count(two.out.begin(), two.out.end(), '\n'), 1) << two.out;
  EXPECT_EQ(list_dir(w.out() / "dist").size(), 2u);
  const fs::path a = one.first_line(), b = two.first_line();
  expect_close_parameters(a, b, 1e-5);
  expect_close_metrics(a / "metrics.csv", b / "metrics.csv", 1e-5);
  YAML::Node meta = meta_of(b);
  EXPECT_EQ(meta["status"].as<std::string>(), "completed");
  EXPECT_EQ(meta["distributed"]["world_size"].as<int>(), 2);
  EXPECT_EQ(meta["distributed"]["backend"].as<std::string>(), "gloo");
  EXPECT_EQ(meta["distributed"]["gradient_allreduce"].as<std::string>(), backend == "auto" ? "shm" : "gloo");
  EXPECT_EQ(meta["distributed"]["launcher"].as<std::string>(), "nproc");
  EXPECT_EQ(meta["distributed"]["hosts"].size(), 2u);
  EXPECT_EQ(meta["distributed"]["per_rank_batch_size"].as<int>(), 25);
  EXPECT_FALSE(meta_of(a)["distributed"].IsDefined());
}

}  // namespace

// ================================================================ the launcher's environment

TEST(World, AloneWithoutALauncher) {
  EXPECT_FALSE(detect_world(env_of({})).has_value());
  EXPECT_FALSE(detect_world(env_of({{"RANK", "0"}, {"WORLD_SIZE", "1"}})).has_value());
  EXPECT_FALSE(detect_world(env_of({{"SLURM_JOB_ID", "7"}})).has_value());  // sbatch without srun
  EXPECT_FALSE(detect_world(env_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}})).has_value());
}

TEST(World, Torchrun) {
  const auto w = detect_world(env_of({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"},
                                      {"MASTER_ADDR", "10.0.0.5"}, {"MASTER_PORT", "29500"}}));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->rank, 3);
  EXPECT_EQ(w->size, 4);
  EXPECT_EQ(w->local_rank, 1);
  EXPECT_EQ(w->master_addr, "10.0.0.5");
  EXPECT_EQ(w->master_port, 29500);
  EXPECT_EQ(w->launcher, "torchrun");
}

TEST(World, SrunTakesTheFirstHostOfTheNodeList) {
  const auto w = detect_world(env_of({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "0"},
                                      {"SLURM_JOB_NODELIST", "gpu[07-09,12],cpu1"}, {"SLURM_JOB_ID", "123456"}}));
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(w->launcher, "srun");
  EXPECT_EQ(w->rank, 1);
  EXPECT_EQ(w->size, 2);
  EXPECT_EQ(w->master_addr, "gpu07");
  EXPECT_EQ(w->master_port, 20000 + 123456 % 10000);
  // The step's own task count wins over the job's; MASTER_ADDR and MASTER_PORT win over the node list.
  const auto s = detect_world(env_of({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "8"}, {"SLURM_STEP_NUM_TASKS", "2"},
                                      {"SLURM_JOB_NODELIST", "n1"}, {"MASTER_ADDR", "127.0.0.1"},
                                      {"MASTER_PORT", "4000"}}));
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->size, 2);
  EXPECT_EQ(s->master_addr, "127.0.0.1");
  EXPECT_EQ(s->master_port, 4000);
}

TEST(World, BadEnvironmentNamesTheVariable) {
  auto message = [](const std::map<std::string, std::string>& vars) {
    try {
      detect_world(env_of(vars));
    } catch (const UserError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_TRUE(contains(message({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}),
                       "RANK='2'"));
  EXPECT_TRUE(contains(message({{"RANK", "0"}, {"WORLD_SIZE", "two"}}), "WORLD_SIZE='two'"));
  EXPECT_TRUE(contains(message({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "1"}}), "MASTER_ADDR"));
  EXPECT_TRUE(contains(message({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}}),
                       "MASTER_PORT='70000'"));
}

TEST(World, SlurmNodeLists) {
  EXPECT_EQ(expand_slurm_nodelist("node1"), std::vector<std::string>{"node1"});
  EXPECT_EQ(expand_slurm_nodelist("a[1-3],b"), (std::vector<std::string>{"a1", "a2", "a3", "b"}));
  EXPECT_EQ(expand_slurm_nodelist("n[008-010,3]x"), (std::vector<std::string>{"n008x", "n009x", "n010x", "n3x"}));
  for (const char* bad : {"", "a[1-", "a[3-1]", "a[x]", "a,,b", "a]"})
    EXPECT_THROW(expand_slurm_nodelist(bad), UserError) << bad;
}

TEST(LocalLauncher, TakeNproc) {
  std::vector<std::string> a{"cfg.yaml", "--nproc", "2", "seed=1"};
  EXPECT_EQ(take_nproc(a), 2);
  EXPECT_EQ(a, (std::vector<std::string>{"cfg.yaml", "seed=1"}));
  std::vector<std::string> b{"--nproc=3", "cfg.yaml"};
  EXPECT_EQ(take_nproc(b), 3);
  std::vector<std::string> none{"cfg.yaml"};
  EXPECT_EQ(take_nproc(none), 0);
  for (std::vector<std::string> bad : {std::vector<std::string>{"--nproc"}, {"--nproc", "0"}, {"--nproc", "x"},
                                        {"--nproc=2x"}})
    EXPECT_THROW(take_nproc(bad), UserError);
  const int port = free_loopback_port();
  EXPECT_GT(port, 0);
  EXPECT_LT(port, 65536);
}

// ================================================================ shards

TEST(Shards, RanksTogetherReadTheOneRankBatches) {
  Dataset d;
  d.images = torch::zeros({103, 1, 1, 1});
  d.labels = torch::arange(103);
  const int64_t batch = 10;
  Batches one(d, batch, true, 4, 2);
  for (int world : {2, 5}) {
    std::vector<Batches> ranks;
    for (int r = 0; r < world; ++r) ranks.emplace_back(d, batch / world, 4, 2, r, world);
    for (int r = 0; r < world; ++r) EXPECT_EQ(ranks[size_t(r)].count(), one.count()) << world;
    for (int64_t i = 0; i + 1 < one.count(); ++i) {
      std::multiset<int64_t> global, joined;
      const auto labels = one.get(i).second;
      for (int64_t k = 0; k < labels.numel(); ++k) global.insert(labels[k].item<int64_t>());
      for (int r = 0; r < world; ++r) {
        const auto l = ranks[size_t(r)].get(i).second;
        EXPECT_EQ(l.numel(), batch / world);
        for (int64_t k = 0; k < l.numel(); ++k) joined.insert(l[k].item<int64_t>());
      }
      EXPECT_EQ(global, joined) << "world " << world << ", batch " << i;
    }
    // The last batch: the 3 examples left, padded to equal shares with the permutation's first examples.
    std::multiset<int64_t> last;
    for (int r = 0; r < world; ++r) {
      const auto l = ranks[size_t(r)].get(one.count() - 1).second;
      EXPECT_EQ(l.numel(), (103 + world - 1) / world - (one.count() - 1) * (batch / world));
      for (int64_t k = 0; k < l.numel(); ++k) last.insert(l[k].item<int64_t>());
    }
    const auto tail = one.get(one.count() - 1).second;
    for (int64_t k = 0; k < tail.numel(); ++k) EXPECT_EQ(last.count(tail[k].item<int64_t>()), 1u);
  }
}

// ================================================================ whole runs on loopback

TEST(DataParallel, BackpropTwoRanksEqualOne) { two_ranks_equal_one(kBackprop); }
TEST(DataParallel, EpTwoRanksEqualOne) { two_ranks_equal_one(kEp); }
TEST(DataParallel, DualPropTwoRanksEqualOne) { two_ranks_equal_one(kDualProp); }
TEST(DataParallel, BackpropTwoRanksEqualOneOverGloo) { two_ranks_equal_one(kBackprop, "gloo"); }
TEST(DataParallel, EpTwoRanksEqualOneOverGloo) { two_ranks_equal_one(kEp, "gloo"); }

// A quantized run: the flip rule's state and the learned scales stay identical on both ranks (else their next
// steps would differ and the result would not match one rank).
TEST(DataParallel, QuantizedFlipTwoRanksEqualOne) {
  two_ranks_equal_one({"quantization.enabled=true", "quantization.weights.solver=flip",
                       "quantization.weights.learn_scale=true", "quantization.flip.tau=1e-5",
                       "quantization.flip.gamma=0.01", "optimizer.name=adam", "optimizer.lr=0.01",
                       "optimizer.momentum=0"});
}

TEST(DataParallel, KilledRankResumesExactly) {
  Workspace w;
  const std::vector<std::string> o{"train.epochs=3"};
  CliResult ref = w.train(o, 2);
  ASSERT_EQ(ref.exit_code, 0) << ref.describe();
  // Rank 1 dies (SIGKILL) in epoch 2; rank 0 notices in its next collective and fails.
  CliResult killed = w.train({"train.epochs=3", "checkpoint.every_batches=3"}, 2,
                             {"BILEVEL_CRASH_AT=batch:2.5", "BILEVEL_CRASH_RANK=1"});
  EXPECT_NE(killed.exit_code, 0) << killed.describe();
  const fs::path run = killed.first_line();
  ASSERT_TRUE(fs::is_directory(run)) << killed.describe();
  EXPECT_EQ(meta_of(run)["status"].as<std::string>(), "failed");
  EXPECT_TRUE(contains(meta_of(run)["error"].as<std::string>(), "distributed")) << read_file(run / "meta.yaml");
  EXPECT_EQ(list_dir(run / "checkpoints"), (std::vector<std::string>{"epoch_0001.pt", "epoch_0001_batch_000003.pt"}));
  CliResult resumed = run_cli({"resume", run.string(), "--nproc", "2"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  expect_same_metrics(fs::path(ref.first_line()) / "metrics.csv", run / "metrics.csv");
  EXPECT_EQ(meta_of(run)["resumes"][0]["from_batch"].as<int>(), 3);
  EXPECT_EQ(meta_of(run)["resumes"][0]["distributed"]["world_size"].as<int>(), 2);
  // Only rank 0 printed the run directory.
  EXPECT_EQ(resumed.out, run.string() + "\n");
}

// Only rank 1 gets the preemption signal; the flag is reduced, so both stop after the same batch.
TEST(DataParallel, PreemptionOfOneRankStopsAllAndResumesExactly) {
  Workspace w;
  CliResult ref = w.train({}, 2);
  ASSERT_EQ(ref.exit_code, 0) << ref.describe();
  CliResult preempted = w.train({}, 2, {"BILEVEL_CRASH_AT=batch:1.6=USR2", "BILEVEL_CRASH_RANK=1"});
  ASSERT_EQ(preempted.exit_code, 75) << preempted.describe();
  const fs::path run = preempted.first_line();
  YAML::Node meta = meta_of(run);
  EXPECT_EQ(meta["status"].as<std::string>(), "preempted");
  EXPECT_EQ(meta["preempted_at"]["batch"].as<int>(), 7);
  EXPECT_EQ(list_dir(run / "checkpoints"), std::vector<std::string>{"epoch_0000_batch_000007.pt"});
  CliResult resumed = run_cli({"resume", run.string(), "--nproc", "2"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.describe();
  expect_same_metrics(fs::path(ref.first_line()) / "metrics.csv", run / "metrics.csv");
  EXPECT_EQ(list_dir(run / "checkpoints"), list_dir(fs::path(ref.first_line()) / "checkpoints"));
}

// ================================================================ named errors, no run directory

TEST(DataParallel, WorldSizeMustDivideTheBatch) {
  Workspace w;
  CliResult r = w.train({}, 3);
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "train.batch_size")) << r.describe();
  EXPECT_TRUE(contains(r.err, "3 equal per-rank batches")) << r.describe();
  EXPECT_TRUE(list_dir(w.out()).empty());
}

TEST(DataParallel, NcclInACpuBuildIsANamedError) {
  Workspace w;
  CliResult r = w.train({"dist.backend=nccl"}, 2);
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "dist.backend")) << r.describe();
  EXPECT_TRUE(contains(r.err, "nccl")) << r.describe();
  EXPECT_TRUE(list_dir(w.out()).empty());
}

TEST(DataParallel, MismatchedConfigAcrossRanks) {
  Workspace w;
  const std::string port = std::to_string(free_loopback_port());
  auto env = [&](int rank) {
    return std::vector<std::string>{"RANK=" + std::to_string(rank), "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1",
                                    "MASTER_PORT=" + port};
  };
  CliProcess r0(w.args({}), env(0));
  CliProcess r1(w.args({"optimizer.lr=0.07"}), env(1));
  CliResult a = r0.wait(), b = r1.wait();
  EXPECT_EQ(a.exit_code, 2) << a.describe();
  EXPECT_EQ(b.exit_code, 2) << b.describe();
  EXPECT_TRUE(contains(a.err, "rank 1 has a different config")) << a.describe();
  EXPECT_TRUE(contains(b.err, "rank 1 has a different config")) << b.describe();
  EXPECT_TRUE(list_dir(w.out()).empty());
}

TEST(DataParallel, UnreachableMaster) {
  Workspace w;
  const std::string port = std::to_string(free_loopback_port());
  CliResult r = w.train({"dist.timeout=2"}, 0,
                        {"RANK=1", "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port});
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "cannot reach the rendezvous at MASTER_ADDR:MASTER_PORT = 127.0.0.1:" + port))
      << r.describe();
  EXPECT_TRUE(list_dir(w.out()).empty());
}

TEST(DataParallel, MissingRankTimesOut) {
  Workspace w;
  const std::string port = std::to_string(free_loopback_port());
  CliResult r = w.train({"dist.timeout=2"}, 0,
                        {"RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + port});
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(contains(r.err, "rank(s) 1 of 2 did not join")) << r.describe();
  EXPECT_TRUE(list_dir(w.out()).empty());
}

// Two ranks as two threads of this process (loopback, shared memory). Gloo's TCP device runs a thread that wakes
// every 10 ms; when shared memory carries every later sum, the process group goes after the starting state's
// broadcast (its threads end), and a later collective that needs Gloo connects a new one.
TEST(DataParallel, IdleGlooGroupIsReleasedAndReconnectsWhenNeeded) {
  if (!gloo_available()) GTEST_SKIP() << "built without Gloo";
  Workspace w;
  const ExperimentConfig cfg = load_config(w.config);
  const int port = free_loopback_port();
  const std::vector<torch::Tensor> params{torch::zeros({1001})};
  std::shared_ptr<DataParallel> dp[2];
  auto both = [&](const std::function<void(int)>& f) {
    std::string errors[2];
    auto run = [&](int r) {
      try {
        f(r);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    };
    std::thread t0(run, 0), t1(run, 1);
    t0.join(), t1.join();
    ASSERT_TRUE(errors[0].empty() && errors[1].empty()) << errors[0] << " | " << errors[1];
  };
  auto threads = [] { return std::distance(fs::directory_iterator("/proc/self/task"), fs::directory_iterator{}); };
  both([&](int r) { dp[r] = DataParallel::join(World{r, 2, r, "127.0.0.1", port, "test"}, cfg, params); });
  ASSERT_TRUE(dp[0] && dp[1]);
  ASSERT_EQ(dp[0]->gradient_transport(), "shm");
  const auto connected = threads();

  torch::manual_seed(int64_t(std::random_device{}()));
  const torch::Tensor blob = torch::randint(0, 256, {70001}, torch::kUInt8);
  std::string bytes[2] = {std::string(reinterpret_cast<const char*>(blob.data_ptr<uint8_t>()), 70001), "poison"};
  both([&](int r) { dp[r]->broadcast_bytes(bytes[r]); });
  EXPECT_EQ(bytes[1], bytes[0]);
  const auto released = threads();
  EXPECT_LT(released, connected) << "the Gloo group's threads should have ended";

  // More values than the small-sums segment holds: through Gloo, a group connected again, released again.
  const torch::Tensor x = torch::randn({2, 300}, torch::kFloat64);
  std::vector<double> v[2];
  for (int r = 0; r < 2; ++r) v[r].assign(x[r].data_ptr<double>(), x[r].data_ptr<double>() + 300);
  both([&](int r) { dp[r]->allreduce_sum(v[r]); });
  for (int i = 0; i < 300; ++i) {
    const double expected = x[0][i].item<double>() + x[1][i].item<double>();
    ASSERT_EQ(v[0][size_t(i)], expected) << i;
    ASSERT_EQ(v[1][size_t(i)], expected) << i;
  }
  EXPECT_EQ(threads(), released);
  std::string again[2] = {"rank 0's bytes", ""};
  both([&](int r) { dp[r]->broadcast_bytes(again[r]); });
  EXPECT_EQ(again[1], "rank 0's bytes");
  EXPECT_EQ(threads(), released);
}

// ================================================================ under srun (scripts/slurm-local; skipped without it)

TEST(DataParallel, TwoRanksUnderSrun) {
  if (std::system("sinfo -h -o %t 2>/dev/null | grep -q idle") != 0) GTEST_SKIP() << "no local Slurm";
  Workspace w;
  CliResult local = w.train({}, 2);
  ASSERT_EQ(local.exit_code, 0) << local.describe();
  std::vector<std::string> args{"srun", "-n", "2", "--kill-on-bad-exit=1", BILEVEL_CLI};
  const auto train = w.args({});
  args.insert(args.end(), train.begin(), train.end());
  std::string command;
  for (const auto& a : args) command += "'" + a + "' ";
  const TempDir capture;
  const fs::path out_file = capture.path() / "out";
  const int rc = std::system((command + "> " + out_file.string() + " 2>/dev/null").c_str());
  ASSERT_EQ(rc, 0);
  const std::string out = read_file(out_file);
  const fs::path run = out.substr(0, out.find('\n'));
  ASSERT_TRUE(fs::is_directory(run)) << out;
  YAML::Node meta = meta_of(run);
  EXPECT_EQ(meta["distributed"]["launcher"].as<std::string>(), "srun");
  EXPECT_EQ(meta["distributed"]["world_size"].as<int>(), 2);
  expect_same_metrics(fs::path(local.first_line()) / "metrics.csv", run / "metrics.csv");
}
