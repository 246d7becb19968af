// bench_gpu's Markdown report: its lines (printed as they come, kept for --out), the number formats of its tables,
// and the facts of its header (the device, the driver, the date).
#pragma once

#include <torch/types.h>

#include <exception>
#include <iostream>
#include <sstream>
#include <string>

namespace bilevel::gpu_bench {

// Markdown to stdout as it is produced, and kept for --out.
struct Report {
  std::ostringstream text;
  void line(const std::string& s = "") {
    std::cout << s << "\n" << std::flush;
    text << s << "\n";
  }
};

std::string num(const char* f, double v);
// A time in the unit that suits it.
std::string fmt_time(double s);
// A rate of floating-point operations in the unit that suits it.
std::string fmt_rate(double flops_per_s);
// An argument as the shell reads it back (quoted where needed), for the report's command line.
std::string shell_quote(const std::string& s);
// An exception's message without LibTorch's backtrace (its first line).
std::string message_of(const std::exception& e);
// A row's verdict: pass or FAIL where it is judged (on a GPU), else a dash.
std::string verdict(bool judged, bool ok);

struct DeviceInfo {
  std::string name, driver;
};
// The device's name (the CPU model, or the GPU with its compute capability, SMs and memory) and its driver.
DeviceInfo device_info(const torch::Device& dev);
// Now, as "YYYY-MM-DD HH:MM:SS UTC".
std::string utc_now();

}  // namespace bilevel::gpu_bench
