// CPU threads: the cgroup cpu.max parser and its walk up the hierarchy, the affinity mask, the train.threads=0
// rule, both pools set, and, end to end, the OpenMP wait-policy re-exec and what `bilevel env` / meta.yaml record.
#include <dlfcn.h>
#include <sched.h>

#include <torch/utils.h>
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <optional>
#include <thread>

#include "bilevel/util/threads.h"
#include "test_util.h"

using namespace bilevel;
using namespace testutil;

namespace {

// The first CPU of this thread's affinity mask.
int first_allowed_cpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  sched_getaffinity(0, sizeof(set), &set);
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) return c;
  return 0;
}

// Restores an environment variable at the end of a scope.
class EnvGuard {
 public:
  explicit EnvGuard(const char* name) : name_(name) {
    if (const char* v = std::getenv(name)) old_ = v;
  }
  ~EnvGuard() {
    if (old_) ::setenv(name_, old_->c_str(), 1);
    else ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// `bilevel ARGS` (stdout only) through /bin/sh, pinned to one CPU, without the thread variables of the test runner.
CliResult run_pinned(const std::string& args, const std::string& extra_env = "") {
  const std::string cmd = "env -u OMP_NUM_THREADS -u OMP_WAIT_POLICY -u BILEVEL_BLAS_THREADS " +
                          extra_env + " taskset -c " + std::to_string(first_allowed_cpu()) + " '" + BILEVEL_CLI +
                          "' " + args;
  CliResult r;
  FILE* p = ::popen((cmd + " 2>/dev/null").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace

TEST(Threads, ParsesCgroupCpuMax) {
  EXPECT_FALSE(parse_cgroup_cpu_max("max 100000\n"));
  EXPECT_DOUBLE_EQ(*parse_cgroup_cpu_max("150000 100000\n"), 1.5);
  EXPECT_DOUBLE_EQ(*parse_cgroup_cpu_max("200000 50000"), 4.0);
  EXPECT_FALSE(parse_cgroup_cpu_max(""));
  EXPECT_FALSE(parse_cgroup_cpu_max("12x 100000"));
  EXPECT_FALSE(parse_cgroup_cpu_max("0 100000"));
}

TEST(Threads, CgroupLimitIsTheTightestOfTheGroupAndItsAncestors) {
  TempDir tmp("bilevel_test_cgroup");
  tmp.write("cpu.max", "max 100000\n");
  tmp.write("slurm/cpu.max", "300000 100000\n");  // a parent's limit applies to every child
  tmp.write("slurm/job_1/cpu.max", "max 100000\n");
  tmp.write("slurm/job_1/step_0/cpu.max", "250000 100000\n");
  tmp.write("other/cpu.max", "max 100000\n");
  EXPECT_DOUBLE_EQ(*cgroup_v2_cpu_limit(tmp.path(), "/slurm/job_1"), 3.0);
  EXPECT_DOUBLE_EQ(*cgroup_v2_cpu_limit(tmp.path(), "/slurm/job_1/step_0"), 2.5);
  EXPECT_FALSE(cgroup_v2_cpu_limit(tmp.path(), "/other"));
  EXPECT_FALSE(cgroup_v2_cpu_limit(tmp.path(), "/"));
  EXPECT_FALSE(cgroup_v2_cpu_limit(tmp.path() / "missing", "/a"));
}

TEST(Threads, AvailableCpusFollowTheAffinityMask) {
  const CpuBudget all = available_cpus();
  EXPECT_GE(all.cpus, 1);
  EXPECT_LE(all.cpus, all.affinity);
  // sched_setaffinity(0) applies to the calling thread only: pin a helper thread, ask from there.
  CpuBudget pinned;
  std::thread t([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first_allowed_cpu(), &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
    pinned = available_cpus();
  });
  t.join();
  EXPECT_EQ(pinned.affinity, 1);
  EXPECT_EQ(pinned.cpus, 1);
}

TEST(Threads, ZeroMeansOmpNumThreadsElseTheAvailableCpusAndOpenBlasKeepsOneThread) {
  EnvGuard omp("OMP_NUM_THREADS");
  EnvGuard blas_env("BILEVEL_BLAS_THREADS");
  ::unsetenv("BILEVEL_BLAS_THREADS");
  const int before = torch::get_num_threads();
  using GetThreads = int (*)();
  auto* blas_threads = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));

  ThreadSettings s = apply_cpu_threads(3);
  EXPECT_EQ(s.threads, 3);
  EXPECT_EQ(s.source, "train.threads");
  EXPECT_EQ(torch::get_num_threads(), 3);
  if (blas_threads) {
    EXPECT_TRUE(s.blas_pool);
    EXPECT_EQ(s.blas_threads, 1);
    EXPECT_EQ(blas_threads(), 1);  // one pool: the products are split on LibTorch's (split_gemm.h)
  }
  EXPECT_EQ(last_thread_settings().threads, 3);

  ::setenv("OMP_NUM_THREADS", "2", 1);
  s = apply_cpu_threads(0);
  EXPECT_EQ(s.threads, 2);
  EXPECT_EQ(s.source, "OMP_NUM_THREADS");

  ::unsetenv("OMP_NUM_THREADS");
  s = apply_cpu_threads(0);
  EXPECT_EQ(s.threads, available_cpus().cpus);
  EXPECT_TRUE(s.source == "cpu affinity" || s.source == "cgroup cpu quota") << s.source;
  EXPECT_EQ(torch::get_num_threads(), s.threads);
  if (blas_threads) EXPECT_EQ(blas_threads(), 1);

  // BILEVEL_BLAS_THREADS gives OpenBLAS its own pool again, for comparisons.
  ::setenv("BILEVEL_BLAS_THREADS", "2", 1);
  s = apply_cpu_threads(1);
  EXPECT_EQ(torch::get_num_threads(), 1);
  if (blas_threads) {
    EXPECT_EQ(s.blas_threads, 2);
    EXPECT_EQ(blas_threads(), 2);
  }
  ::unsetenv("BILEVEL_BLAS_THREADS");
  apply_cpu_threads(before);
}

TEST(Threads, EnvReportsThreadsFromTheAffinityMaskAndTheWaitPolicy) {
  CliResult r = run_pinned("env");
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "threads:                 1 (cpu affinity)")) << r.out;
  EXPECT_TRUE(contains(r.out, "cpu_affinity:            1")) << r.out;
  EXPECT_TRUE(contains(r.out, "torch_num_threads:       1")) << r.out;
  EXPECT_TRUE(contains(r.out, "omp_wait_policy:         unset (libgomp default")) << r.out;

  // A policy the user chose is reported as theirs.
  r = run_pinned("env", "OMP_WAIT_POLICY=ACTIVE");
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  EXPECT_TRUE(contains(r.out, "omp_wait_policy:         ACTIVE (from the environment)")) << r.out;
}

TEST(Threads, MetaYamlRecordsTheThreadsAndWaitPolicyOfTheRun) {
  TempDir tmp("bilevel_test_threads");
  const std::string cfg = tmp.write("cfg.yaml", R"(experiment:
  name: threads
data:
  name: synthetic
  validation: 20
  synthetic:
    train: 100
    test: 20
    image_size: 3
    classes: 4
model:
  kind: mlp
  hidden: [8]
train:
  epochs: 1
  batch_size: 20
  threads: 0
)");
  const CliResult r = run_pinned("train '" + cfg + "' output.root='" + (tmp / "out").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  const YAML::Node meta = YAML::LoadFile((fs::path(r.first_line()) / "meta.yaml").string());
  EXPECT_EQ(meta["environment"]["threads"].as<std::string>(), "1 (cpu affinity)");
  EXPECT_EQ(meta["environment"]["torch_num_threads"].as<std::string>(), "1");
  EXPECT_EQ(meta["environment"]["omp_wait_policy"].as<std::string>(), "unset (libgomp default, spin then sleep)");
}
