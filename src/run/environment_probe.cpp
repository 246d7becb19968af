// The environment probe: what this binary was built with and runs on (bilevel/run/environment.h).
#include "bilevel/run/environment.h"

#include <dlfcn.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <Eigen/Core>
#include <spdlog/fmt/fmt.h>
#include <spdlog/version.h>
#include <torch/cuda.h>
#include <torch/types.h>
#include <torch/utils.h>
#include <torch/version.h>

#include "bilevel/run/build_info.h"
#include "bilevel/util/error.h"
#include "bilevel/util/text.h"
#include "bilevel/util/threads.h"

namespace bilevel {

using text::lower;
using text::trim;

namespace {

bool contains(const std::string& haystack, const char* needle) { return haystack.find(needle) != std::string::npos; }

std::string real_path(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf)) return buf;
  return path;
}

std::string base_name(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// First capture group of `re` in `text`, or "".
std::string capture(const std::string& text, const std::regex& re) {
  std::smatch m;
  if (std::regex_search(text, m, re) && m.size() > 1) return m[1].str();
  return "";
}

// "12040" -> "12.4" (CUDART_VERSION is major*1000 + minor*10).
std::string cuda_version_string(long v) {
  return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10);
}

// cuDNN 8 encodes major*1000 + minor*100 + patch, cuDNN 9 major*10000 + minor*100 + patch.
std::string cudnn_version_string(long v) {
  const long major_scale = v >= 10000 ? 10000 : 1000;
  const long major = v / major_scale, minor = (v % major_scale) / 100, patch = v % 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

std::string read_first_match(const char* file, const std::regex& re) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    std::string v = capture(line, re);
    if (!v.empty()) return trim(v);
  }
  return "";
}

std::string compiler_macro_version() {
#if defined(__clang__)
  return std::to_string(__clang_major__) + "." + std::to_string(__clang_minor__) + "." +
         std::to_string(__clang_patchlevel__);
#elif defined(__GNUC__)
  return std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." + std::to_string(__GNUC_PATCHLEVEL__);
#else
  return "";
#endif
}

std::string headers_torch_version() {
#if defined(TORCH_VERSION)
  return TORCH_VERSION;
#else
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
#endif
}

// ---- BLAS ----

struct BlasInfo {
  std::string vendor;   // OpenBLAS, MKL, BLIS, ATLAS, FlexiBLAS, reference, unknown
  std::string library;  // real path of the object that provides sgemm_, or ""
  std::string version;
  std::string variant;  // OpenBLAS threading: pthread / openmp / serial
  std::string config;   // openblas_get_config()
  int threads = -1;
  std::vector<std::string> loaded;  // every BLAS/LAPACK-looking object in the address space
};

std::string vendor_from_path(const std::string& path) {
  const std::string p = lower(path);
  if (contains(p, "openblas")) return "OpenBLAS";
  if (contains(p, "mkl")) return "MKL";
  if (contains(p, "blis")) return "BLIS";
  if (contains(p, "atlas")) return "ATLAS";
  if (contains(p, "flexiblas")) return "FlexiBLAS";
  if (contains(p, "nvpl")) return "NVPL";
  // Debian's alternatives put the Netlib build at .../blas/libblas.so.3; elsewhere a bare libblas is Netlib too.
  if (contains(p, "/blas/libblas") || base_name(p).rfind("libblas", 0) == 0) return "reference";
  return "";
}

bool looks_like_blas(const std::string& path) {
  const std::string b = lower(base_name(path));
  if (b.find(".so") == std::string::npos) return false;
  for (const char* token : {"blas", "lapack", "mkl_", "blis", "atlas"})
    if (contains(b, token)) return true;
  return false;
}

BlasInfo detect_blas(const std::string& torch_blas_info) {
  // Touch BLAS so a lazily loaded implementation is mapped before we look.
  {
    auto a = torch::ones({8, 8});
    auto c = torch::mm(a, a);
    (void)c;
  }
  BlasInfo info;

  // Which object resolves sgemm_ for the process: the same lookup LibTorch's own reference goes through.
  if (void* sym = ::dlsym(RTLD_DEFAULT, "sgemm_")) {
    Dl_info dl{};
    if (::dladdr(sym, &dl) && dl.dli_fname) info.library = real_path(dl.dli_fname);
  }

  std::ifstream maps("/proc/self/maps");
  std::string line;
  std::set<std::string> seen;
  while (std::getline(maps, line)) {
    const auto slash = line.find('/');
    if (slash == std::string::npos) continue;
    const std::string path = line.substr(slash);
    if (!looks_like_blas(path)) continue;
    const std::string real = real_path(path);
    if (seen.insert(real).second) info.loaded.push_back(real);
  }

  if (!info.library.empty()) info.vendor = vendor_from_path(info.library);
  if (info.vendor.empty()) {
    // sgemm_ lives somewhere without a telling name (e.g. linked into libtorch_cpu): use the other loaded objects.
    for (const auto& p : info.loaded) {
      const std::string v = vendor_from_path(p);
      if (!v.empty() && v != "reference") {
        info.vendor = v;
        break;
      }
    }
  }
  if (info.vendor.empty()) {
    const std::string b = lower(torch_blas_info);
    if (contains(b, "mkl")) info.vendor = "MKL";
    else if (contains(b, "openblas")) info.vendor = "OpenBLAS";
    else info.vendor = "unknown";
  }

  if (info.vendor == "OpenBLAS") {
    // OpenBLAS describes itself; these symbols are part of its public API.
    using ConfigFn = char* (*)();
    using IntFn = int (*)();
    if (auto cfg = reinterpret_cast<ConfigFn>(::dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
      info.config = trim(cfg());
      info.version = capture(info.config, std::regex(R"(OpenBLAS\s+([0-9]+(\.[0-9]+)+))"));
    }
    if (auto par = reinterpret_cast<IntFn>(::dlsym(RTLD_DEFAULT, "openblas_get_parallel"))) {
      const int p = par();
      info.variant = p == 0 ? "serial" : p == 1 ? "pthread" : p == 2 ? "openmp" : "";
    }
    if (auto nt = reinterpret_cast<IntFn>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"))) info.threads = nt();
    for (const auto& p : info.loaded) {
      const std::string lp = lower(p);
      if (!contains(lp, "openblas")) continue;
      if (info.version.empty()) info.version = capture(base_name(p), std::regex(R"(([0-9]+\.[0-9]+\.[0-9]+))"));
      if (info.variant.empty()) {
        if (contains(lp, "openmp")) info.variant = "openmp";
        else if (contains(lp, "pthread") || contains(base_name(lp), "libopenblasp")) info.variant = "pthread";
        else if (contains(lp, "serial")) info.variant = "serial";
      }
    }
  } else if (info.vendor == "MKL") {
    const std::string v = at::get_mkl_version();
    info.config = v;
    info.version = capture(v, std::regex(R"(Version\s+([0-9]+(\.[0-9]+)*))"));
  }
  return info;
}

// ---- CUDA driver, looked up only when the process already loaded it ----

struct GpuInfo {
  std::string driver;
  std::vector<std::string> names;
};

GpuInfo query_gpus(int count) {
  GpuInfo g;
  void* cuda = ::dlopen("libcuda.so.1", RTLD_LAZY | RTLD_NOLOAD);
  if (!cuda) return g;
  // Driver API entry points with stable C signatures since CUDA 2; CUdevice is an int ordinal.
  using VersionFn = int (*)(int*);
  using NameFn = int (*)(char*, int, int);
  if (auto ver = reinterpret_cast<VersionFn>(::dlsym(cuda, "cuDriverGetVersion"))) {
    int v = 0;
    if (ver(&v) == 0 && v > 0) g.driver = cuda_version_string(v);
  }
  if (auto name = reinterpret_cast<NameFn>(::dlsym(cuda, "cuDeviceGetName"))) {
    for (int i = 0; i < count; ++i) {
      char buf[256] = {0};
      if (name(buf, sizeof(buf) - 1, i) == 0) g.names.push_back(buf);
    }
  }
  ::dlclose(cuda);
  return g;
}

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

}  // namespace
// ---- EnvReport ----

std::string EnvReport::get(const std::string& name) const {
  for (const auto& e : entries)
    if (e.name == name) return e.value;
  return "";
}

bool EnvReport::has(const std::string& name) const {
  return std::any_of(entries.begin(), entries.end(), [&](const EnvEntry& e) { return e.name == name; });
}

EnvReport collect_environment() {
  EnvReport r;
  auto add = [&](const std::string& name, const std::string& value) { r.entries.push_back({name, value}); };
  const BuildInfo& b = build_info();

  add("bilevel_version", b.version);
  add("git_commit", b.git_commit);
  add("git_dirty", b.git_dirty ? "true" : "false");
  add("build_type", b.build_type);
  add("compiler", b.compiler);
  add("compiler_version", compiler_macro_version());
#ifdef __VERSION__
  add("compiler_version_string", __VERSION__);
#endif
  add("cmake", b.cmake_version);

  // LibTorch: the headers we compiled against, the library we run with, and (Debian) the source release.
  const std::string config = at::show_config();
  const std::string headers = headers_torch_version();
  const std::string library = capture(config, std::regex(R"((?:^|[\s,])TORCH_VERSION=([^,\s]+))"));
  // Debian's 1.13.1 package reports 1.13.0 everywhere, but its build flags name the source directory.
  const std::string package = capture(config, std::regex(R"(/pytorch-([0-9]+\.[0-9]+(\.[0-9]+)?[^\s=/]*))"));
  std::string release = package.empty() ? (library.empty() ? headers : library) : package;
  release = release.substr(0, release.find_first_of("+~"));
  add("libtorch", release);
  if (!package.empty()) add("libtorch_package", "pytorch-" + package);
  add("libtorch_headers", headers);
  if (!library.empty()) add("libtorch_library", library);
  const std::string blas_info = capture(config, std::regex(R"((?:^|[\s,])BLAS_INFO=([^,\s]*))"));
  const std::string lapack_info = capture(config, std::regex(R"((?:^|[\s,])LAPACK_INFO=([^,\s]*))"));
  if (!blas_info.empty()) add("torch_blas_info", blas_info);
  if (!lapack_info.empty()) add("torch_lapack_info", lapack_info);
  const std::string capability = capture(config, std::regex(R"(CPU capability usage:\s*([^\n]+))"));
  if (!capability.empty()) add("torch_cpu_capability", trim(capability));
  add("torch_num_threads", std::to_string(at::get_num_threads()));
  add("torch_interop_threads", std::to_string(at::get_num_interop_threads()));
  {
    // The thread decision of this process (train.threads, or `bilevel env`'s own default) and what it rests on.
    const ThreadSettings ts = last_thread_settings();
    if (ts.threads > 0) add("threads", std::to_string(ts.threads) + " (" + ts.source + ")");
    const CpuBudget cpus = available_cpus();
    add("cpus_available", std::to_string(cpus.cpus));
    add("cpu_affinity", std::to_string(cpus.affinity));
    add("cpu_quota", cpus.quota ? fmt::format("{:g}", *cpus.quota) : "none");
    add("omp_wait_policy", omp_wait_policy_description());
  }

  // CUDA: the toolkit CMake found, the runtime LibTorch was built with, and what this machine offers.
  add("cuda_toolkit", b.cuda_toolkit_version.empty() ? "none" : b.cuda_toolkit_version);
  std::string cudart = "none";
  std::string cudnn = "none";
  try {
    if (at::Context::hasCUDART()) cudart = cuda_version_string(at::Context::versionCUDART());
    if (at::Context::hasCuDNN()) cudnn = cudnn_version_string(at::Context::versionCuDNN());
  } catch (const std::exception&) {
    // CPU-only LibTorch: the stub hooks throw instead of answering.
  }
  add("cuda_runtime", cudart);
  add("cudnn", cudnn);
  const bool cuda = torch::cuda::is_available();
  add("cuda_available", cuda ? "true" : "false");
  if (cuda) {
    const int count = static_cast<int>(torch::cuda::device_count());
    add("cuda_devices", std::to_string(count));
    const GpuInfo gpus = query_gpus(count);
    if (!gpus.driver.empty()) add("cuda_driver", gpus.driver);
    if (!gpus.names.empty()) add("gpu", join(gpus.names, ", "));
  }

  const BlasInfo blas = detect_blas(blas_info);
  std::string blas_line = blas.vendor;
  if (!blas.version.empty()) blas_line += " " + blas.version;
  if (!blas.variant.empty()) blas_line += " (" + blas.variant + ")";
  add("blas", blas_line);
  add("blas_library", blas.library.empty() ? "unknown" : blas.library);
  if (!blas.version.empty()) add("blas_version", blas.version);
  if (blas.threads > 0) add("blas_threads", std::to_string(blas.threads));
  if (!blas.config.empty()) add("blas_config", blas.config);
  if (!blas.loaded.empty()) add("blas_loaded", join(blas.loaded, ", "));
  if (blas.vendor == "reference") {
    r.warnings.push_back("LibTorch is using the reference BLAS (" + blas.library +
                         "): expect ~15x slower training; install libopenblas0-pthread "
                         "(or select it: update-alternatives --config libblas.so.3-x86_64-linux-gnu)");
  }

  add("eigen", std::to_string(EIGEN_WORLD_VERSION) + "." + std::to_string(EIGEN_MAJOR_VERSION) + "." +
                   std::to_string(EIGEN_MINOR_VERSION));
  add("yaml_cpp", b.yaml_cpp_version);
  add("spdlog", std::to_string(SPDLOG_VER_MAJOR) + "." + std::to_string(SPDLOG_VER_MINOR) + "." +
                    std::to_string(SPDLOG_VER_PATCH));
#ifdef FMT_VERSION
  add("fmt", std::to_string(FMT_VERSION / 10000) + "." + std::to_string(FMT_VERSION / 100 % 100) + "." +
                 std::to_string(FMT_VERSION % 100));
#endif
  add("zlib", zlibVersion());
  // GoogleTest is not linked into the library: this is the version CMake found for the tests.
  add("gtest", b.gtest_version.empty() ? "unknown" : b.gtest_version);

  utsname u{};
  if (::uname(&u) == 0) add("os", std::string(u.sysname) + " " + u.release + " " + u.machine);
  const std::string distro = read_first_match("/etc/os-release", std::regex(R"(^PRETTY_NAME="?([^"]*)\"?)"));
  if (!distro.empty()) add("os_release", distro);
  char host[256] = {0};
  if (::gethostname(host, sizeof(host) - 1) == 0) add("hostname", host);
  std::string cpu = read_first_match("/proc/cpuinfo", std::regex(R"(^model name\s*:\s*(.+))"));
  if (cpu.empty())  // ARM and MIPS name the CPU differently
    cpu = read_first_match("/proc/cpuinfo", std::regex(R"(^(?:Processor|cpu model|Hardware)\s*:\s*(.+))"));
  add("cpu_model", cpu.empty() ? "unknown" : cpu);
  add("cpu_count", std::to_string(std::thread::hardware_concurrency()));
  std::vector<std::string> thread_env;
  for (const char* var : {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"})
    if (const char* v = std::getenv(var)) thread_env.push_back(std::string(var) + "=" + v);
  if (!thread_env.empty()) add("thread_env", join(thread_env, " "));
  return r;
}

}  // namespace bilevel
