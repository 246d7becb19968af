#include "report.h"

#include <cstdio>
#include <ctime>
#include <fstream>

#include "../epoch_timer.h"
#include "bilevel/kernels/config.h"
#include "bilevel/util/first_line.h"

#if BILEVEL_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace bilevel::gpu_bench {

std::string num(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string fmt_time(double s) {
  if (s < 1e-3) return num("%.1f µs", s * 1e6);
  if (s < 1.0) return num("%.2f ms", s * 1e3);
  return num("%.2f s", s);
}

std::string fmt_rate(double flops_per_s) {
  return flops_per_s >= 1e12 ? num("%.2f TFLOP/s", flops_per_s / 1e12) : num("%.2f GFLOP/s", flops_per_s / 1e9);
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./,:+[]@%") ==
                        std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string message_of(const std::exception& e) { return first_line(e.what()); }

std::string verdict(bool judged, bool ok) { return judged ? (ok ? "pass" : "**FAIL**") : "—"; }

namespace {

// The first line of a command's output ("" when it fails or prints nothing).
std::string first_line_of(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>/dev/null").c_str(), "r");
  if (!p) return "";
  char buf[512];
  std::string out;
  if (fgets(buf, sizeof buf, p)) out = buf;
  pclose(p);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string l;
  while (std::getline(f, l))
    if (l.rfind("model name", 0) == 0 && l.find(':') != std::string::npos) return l.substr(l.find(':') + 2);
  return "unknown CPU";
}

}  // namespace

DeviceInfo device_info(const torch::Device& dev) {
  DeviceInfo d;
  if (!dev.is_cuda()) {
    d.name = cpu_model();
    d.driver = "n/a";
    return d;
  }
  // nvidia-smi's first GPU (the name, the driver, the memory); with the CUDA runtime, the device's own properties.
  const std::string smi = first_line_of("nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader");
  const auto parts = timing::split(smi, ',');
  d.name = parts.size() >= 1 ? parts[0] : "unknown GPU";
  d.driver = parts.size() >= 2 ? parts[1].substr(parts[1].find_first_not_of(' ')) : "unknown (nvidia-smi failed)";
#if BILEVEL_WITH_CUDA
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, dev.has_index() ? dev.index() : 0) == cudaSuccess) {
    d.name = std::string(p.name) + " (sm_" + std::to_string(p.major) + std::to_string(p.minor) + ", " +
             std::to_string(p.multiProcessorCount) + " SMs, " +
             num("%.0f", double(p.totalGlobalMem) / double(1ull << 30)) + " GiB)";
  }
  int drv = 0;
  if (cudaDriverGetVersion(&drv) == cudaSuccess)
    d.driver += " (CUDA driver API " + std::to_string(drv / 1000) + "." + std::to_string(drv % 1000 / 10) + ")";
#endif
  return d;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

}  // namespace bilevel::gpu_bench
