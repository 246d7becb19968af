// One knob for every CPU thread pool a training step touches, sized to the CPUs this process may use.
//
// A LibTorch process has two CPU pools: LibTorch's intra-op pool (OpenMP: element-wise loops, oneDNN's
// convolutions, our kernels) and the BLAS's own (Debian's OpenBLAS, pthread build: every matrix product). With both
// at N threads they fight on a small machine: between two products OpenBLAS's idle workers spin in sched_yield for
// ~2^28 cycles on the very cores the OpenMP workers need next, and libgomp's idle workers spin on the cores
// OpenBLAS needs (measured on a 2-core VM: a quarter of all cycles in the scheduler, and `ep` no faster on two
// threads than on one). So bilevel runs one pool: LibTorch's, with N threads, and OpenBLAS with one thread; the
// products that matter get their parallelism from LibTorch's pool instead (bilevel/kernels/cpu/split_gemm.h,
// bilevel/nn/linear.h). With no second pool to fight, libgomp's default wait policy (spin a little, then sleep)
// is the fastest one, so none is imposed.
//
// BILEVEL_BLAS_THREADS=N gives OpenBLAS its own N threads again (for comparisons: benchmarks/threads.sh).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace bilevel {

// Sets LibTorch's intra-op threads to `threads` and, when the process has OpenBLAS loaded, OpenBLAS's to
// blas_pool_threads(). Returns whether a BLAS pool was found and set.
bool set_cpu_threads(int threads);

// The threads OpenBLAS gets: 1, or BILEVEL_BLAS_THREADS when that is set to a positive integer.
int blas_pool_threads();

// OpenBLAS's threads now (0 when the process has no OpenBLAS), and setting them (false: no OpenBLAS).
int blas_threads();
bool set_blas_threads(int threads);

// The one-pool arrangement for a scope, in a program that keeps its own BLAS threading outside it (the Python
// module: a PyTorch session's products keep OpenBLAS's threads, bilevel's step runs with blas_pool_threads()).
class ScopedBlasThreads {
 public:
  ScopedBlasThreads();
  ~ScopedBlasThreads();
  ScopedBlasThreads(const ScopedBlasThreads&) = delete;
  ScopedBlasThreads& operator=(const ScopedBlasThreads&) = delete;

 private:
  int previous_;
};

// ---- how many CPUs this process may use ----

// The CPU limit in a cgroup v2 `cpu.max` file's text ("QUOTA PERIOD", or "max PERIOD" for none), as a
// fraction of CPUs (QUOTA/PERIOD); nullopt for "max" or text that is not in that format.
std::optional<double> parse_cgroup_cpu_max(const std::string& text);

// The tightest cpu.max limit of cgroup `group` (e.g. "/slurm/uid_1/job_2") and of each of its ancestors, under
// the cgroup v2 mount `mount`; nullopt when none of them sets one (or the files do not exist).
std::optional<double> cgroup_v2_cpu_limit(const std::filesystem::path& mount, const std::string& group);

struct CpuBudget {
  int affinity = 1;              // CPUs in this thread's sched_getaffinity mask (taskset, Slurm's cpuset)
  std::optional<double> quota;   // cgroup CPU bandwidth limit in CPUs (cgroup v2 cpu.max, or v1 cfs quota)
  int cpus = 1;                  // min(affinity, ceil(quota)), at least 1
};

// What this process may run on now: its affinity mask and the CPU quota of its cgroup (read from
// /proc/self/cgroup and /proc/self/mountinfo).
CpuBudget available_cpus();

// ---- the threads a run uses ----

struct ThreadSettings {
  int requested = 0;     // train.threads as configured (0 = automatic)
  int threads = 0;       // what LibTorch and the BLAS pool were set to
  std::string source;    // why: "train.threads", "OMP_NUM_THREADS", "cpu affinity", "cgroup cpu quota"
  bool blas_pool = false;  // whether an OpenBLAS pool was found and set too
  int blas_threads = 0;    // what it was set to (blas_pool_threads())
};

// train.threads = 0 means: OMP_NUM_THREADS when set (> 0), else available_cpus().cpus. Any other value is used
// as is. Sets both pools (set_cpu_threads) and remembers the decision for last_thread_settings().
ThreadSettings apply_cpu_threads(int requested);

// The latest apply_cpu_threads() decision in this process (threads = 0 when it never ran).
ThreadSettings last_thread_settings();

// ---- OpenMP wait policy ----

// The policy libgomp was loaded with, for `bilevel env` and meta.yaml: "<value> (from the environment)" or
// "unset (libgomp default, spin then sleep)".
std::string omp_wait_policy_description();

}  // namespace bilevel
