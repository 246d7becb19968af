#include "bilevel/util/threads.h"

#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>
#include <vector>

namespace bilevel {

namespace fs = std::filesystem;

int blas_pool_threads() {
  const char* v = std::getenv("BILEVEL_BLAS_THREADS");
  const int n = v ? std::atoi(v) : 0;
  return n > 0 ? n : 1;
}

namespace {

// An OpenBLAS function, looked up at run time: LibTorch builds that use MKL (or a BLAS without its own pool) do
// not have it. In the global scope for a program linked against LibTorch; in a library loaded with RTLD_LOCAL
// (Python's extension modules: torch and this project's), by the loaded BLAS's own name.
void* openblas_function(const char* name) {
  if (void* f = dlsym(RTLD_DEFAULT, name)) return f;
  for (const char* lib : {"libblas.so.3", "libopenblas.so.0"}) {
    if (void* h = dlopen(lib, RTLD_LAZY | RTLD_NOLOAD)) {
      void* f = dlsym(h, name);
      dlclose(h);  // the library stays: it was loaded before (RTLD_NOLOAD only took a reference)
      if (f) return f;
    }
  }
  return nullptr;
}

// OpenBLAS's thread functions, looked up once (ScopedBlasThreads runs around every step of the Python estimator;
// the loader's lookups take its lock).
struct OpenBlasThreads {
  int (*get)() = nullptr;
  void (*set)(int) = nullptr;
};
const OpenBlasThreads& openblas_threads() {
  static const OpenBlasThreads f{reinterpret_cast<int (*)()>(openblas_function("openblas_get_num_threads")),
                                 reinterpret_cast<void (*)(int)>(openblas_function("openblas_set_num_threads"))};
  return f;
}

}  // namespace

int blas_threads() {
  const auto& f = openblas_threads();
  return f.get ? f.get() : 0;
}

bool set_blas_threads(int threads) {
  const auto& f = openblas_threads();
  if (f.set && threads > 0) f.set(threads);
  return f.set != nullptr;
}

bool set_cpu_threads(int threads) {
  torch::set_num_threads(threads);
  return set_blas_threads(blas_pool_threads());
}

ScopedBlasThreads::ScopedBlasThreads() : previous_(blas_threads()) {
  if (previous_ > 0 && previous_ != blas_pool_threads()) set_blas_threads(blas_pool_threads());
}

ScopedBlasThreads::~ScopedBlasThreads() {
  if (previous_ > 0 && previous_ != blas_pool_threads()) set_blas_threads(previous_);
}

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  if (!in) return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void keep_min(std::optional<double>& acc, std::optional<double> v) {
  if (v && (!acc || *v < *acc)) acc = v;
}

// Directory of cgroup `group` under a mount whose root (mountinfo field 4) is `root`.
fs::path group_dir(const fs::path& mount, const std::string& root, const std::string& group) {
  std::string rel = group;
  if (root != "/" && rel.rfind(root, 0) == 0) rel = rel.substr(root.size());
  while (!rel.empty() && rel.front() == '/') rel.erase(0, 1);
  return rel.empty() ? mount : mount / rel;
}

struct Mount {
  std::string root, point, fstype, super_options;
};

std::vector<Mount> cgroup_mounts() {
  std::vector<Mount> out;
  std::istringstream in(read_text("/proc/self/mountinfo"));
  std::string line;
  while (std::getline(in, line)) {
    const auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream pre(line.substr(0, dash)), post(line.substr(dash + 3));
    std::string id, parent, dev;
    Mount m;
    pre >> id >> parent >> dev >> m.root >> m.point;
    std::string source;
    post >> m.fstype >> source >> m.super_options;
    if (m.fstype == "cgroup2" || m.fstype == "cgroup") out.push_back(m);
  }
  return out;
}

bool has_option(const std::string& options, const std::string& name) {
  std::istringstream in(options);
  std::string o;
  while (std::getline(in, o, ','))
    if (o == name) return true;
  return false;
}

// cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us of the group and its ancestors.
std::optional<double> cgroup_v1_cpu_limit(const fs::path& dir, const fs::path& mount) {
  std::optional<double> best;
  for (fs::path d = dir;; d = d.parent_path()) {
    const std::string q = read_text(d / "cpu.cfs_quota_us"), p = read_text(d / "cpu.cfs_period_us");
    if (!q.empty() && !p.empty()) {
      const double quota = std::atof(q.c_str()), period = std::atof(p.c_str());
      if (quota > 0 && period > 0) keep_min(best, quota / period);
    }
    if (d == mount || !d.has_parent_path() || d.parent_path() == d) break;
  }
  return best;
}

std::mutex g_settings_mutex;
ThreadSettings g_settings;

}  // namespace

std::optional<double> parse_cgroup_cpu_max(const std::string& text) {
  std::istringstream in(text);
  std::string quota, period;
  if (!(in >> quota >> period) || quota == "max") return std::nullopt;
  char* end = nullptr;
  const double q = std::strtod(quota.c_str(), &end);
  if (end == quota.c_str() || *end) return std::nullopt;
  const double p = std::strtod(period.c_str(), &end);
  if (end == period.c_str() || *end || q <= 0 || p <= 0) return std::nullopt;
  return q / p;
}

std::optional<double> cgroup_v2_cpu_limit(const fs::path& mount, const std::string& group) {
  std::optional<double> best;
  fs::path dir = group_dir(mount, "/", group);
  for (;;) {
    keep_min(best, parse_cgroup_cpu_max(read_text(dir / "cpu.max")));
    if (dir == mount || !dir.has_parent_path() || dir.parent_path() == dir) break;
    dir = dir.parent_path();
  }
  return best;
}

CpuBudget available_cpus() {
  CpuBudget b;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0)
    b.affinity = std::max(1, CPU_COUNT(&set));
  else
    b.affinity = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));

  // /proc/self/cgroup: "0::/path" (v2) and "N:controllers:/path" (v1).
  std::string v2_group;
  std::string v1_cpu_group;
  bool have_v2 = false, have_v1 = false;
  {
    std::istringstream in(read_text("/proc/self/cgroup"));
    std::string line;
    while (std::getline(in, line)) {
      const auto a = line.find(':'), c = line.find(':', a + 1);
      if (a == std::string::npos || c == std::string::npos) continue;
      const std::string hid = line.substr(0, a), ctrl = line.substr(a + 1, c - a - 1), path = line.substr(c + 1);
      if (hid == "0" && ctrl.empty()) {
        v2_group = path;
        have_v2 = true;
      } else if (has_option(ctrl, "cpu")) {
        v1_cpu_group = path;
        have_v1 = true;
      }
    }
  }
  for (const Mount& m : cgroup_mounts()) {
    if (m.fstype == "cgroup2" && have_v2) {
      keep_min(b.quota, cgroup_v2_cpu_limit(m.point, group_dir("/", m.root, v2_group).string()));
    } else if (m.fstype == "cgroup" && have_v1 && has_option(m.super_options, "cpu")) {
      keep_min(b.quota, cgroup_v1_cpu_limit(group_dir(m.point, m.root, v1_cpu_group), m.point));
    }
  }
  b.cpus = b.affinity;
  if (b.quota) b.cpus = std::min(b.cpus, std::max(1, static_cast<int>(std::ceil(*b.quota - 1e-9))));
  return b;
}

ThreadSettings apply_cpu_threads(int requested) {
  ThreadSettings s;
  s.requested = requested;
  if (requested > 0) {
    s.threads = requested;
    s.source = "train.threads";
  } else if (const char* omp = std::getenv("OMP_NUM_THREADS"); omp && std::atoi(omp) > 0) {
    s.threads = std::atoi(omp);
    s.source = "OMP_NUM_THREADS";
  } else {
    const CpuBudget b = available_cpus();
    s.threads = b.cpus;
    s.source = b.quota && b.cpus < b.affinity ? "cgroup cpu quota" : "cpu affinity";
  }
  s.blas_pool = set_cpu_threads(s.threads);
  s.blas_threads = s.blas_pool ? blas_pool_threads() : 0;
  std::lock_guard<std::mutex> lock(g_settings_mutex);
  g_settings = s;
  return s;
}

ThreadSettings last_thread_settings() {
  std::lock_guard<std::mutex> lock(g_settings_mutex);
  return g_settings;
}

std::string omp_wait_policy_description() {
  const char* p = std::getenv("OMP_WAIT_POLICY");
  if (!p) return "unset (libgomp default, spin then sleep)";
  return std::string(p) + " (from the environment)";
}

}  // namespace bilevel
