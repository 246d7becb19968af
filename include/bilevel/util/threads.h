// One knob for every CPU thread pool a training step touches, sized to the CPUs this process may use.
//
// LibTorch's intra-op pool (OpenMP) is set by torch::set_num_threads, but the BLAS it calls may keep its own
// pool: Debian's OpenBLAS (pthread build) starts one thread per core whatever LibTorch is told, so "one thread"
// used to mean one LibTorch thread plus a second OpenBLAS thread spinning in sched_yield on small GEMMs.
//
// The two pools also fight when both are >1 thread: LibTorch's element-wise loops and the fused relaxation kernel
// run on OpenMP threads, its GEMMs on OpenBLAS's threads, and between two parallel regions libgomp's idle workers
// busy-wait (OMP_WAIT_POLICY unset: ~300k spins; ACTIVE: forever) on the very cores OpenBLAS's threads need
// next, and the other way round. libgomp reads OMP_WAIT_POLICY once, when it is loaded (before main), so it
// cannot be changed from inside the process: reexec_with_passive_wait_policy() starts the program again, once,
// with OMP_WAIT_POLICY=PASSIVE (idle OpenMP workers sleep at once) when the user has not chosen a policy.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace bilevel {

// Sets LibTorch's intra-op threads and, when the process has OpenBLAS loaded, OpenBLAS's threads to `threads`.
// Returns whether a BLAS pool was found and set.
bool set_cpu_threads(int threads);

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
};

// train.threads = 0 means: OMP_NUM_THREADS when set (> 0), else available_cpus().cpus. Any other value is used
// as is. Sets both pools (set_cpu_threads) and remembers the decision for last_thread_settings().
ThreadSettings apply_cpu_threads(int requested);

// The latest apply_cpu_threads() decision in this process (threads = 0 when it never ran).
ThreadSettings last_thread_settings();

// ---- OpenMP wait policy ----

// Call first thing in main(). When OMP_WAIT_POLICY is unset and this process has not already been re-executed,
// sets OMP_WAIT_POLICY=PASSIVE and BILEVEL_OMP_REEXEC=1 and execv()s /proc/self/exe with the same arguments (the
// process id, and hence signals and waiting parents, are unchanged). Returns only when nothing was done or the
// exec failed (the run then continues with libgomp's default policy). BILEVEL_NO_REEXEC=1 turns it off.
void reexec_with_passive_wait_policy(char** argv);

// The policy libgomp was loaded with, for `bilevel env` and meta.yaml: "PASSIVE (set by bilevel)",
// "<value> (from the environment)" or "unset (libgomp default: spin, then sleep)".
std::string omp_wait_policy_description();

}  // namespace bilevel
