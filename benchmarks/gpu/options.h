// bench_gpu's command line: the options, their usage text and their parser.
#pragma once

#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace bilevel::gpu_bench {

// What --help prints.
extern const char* const kUsage;

struct Options {
  std::string device;  // "" = auto
  bool quick = false, strict = false;
  int64_t reps = 0, batches = 0, large_hidden = 0, large_batch = 0, large_batches = 0;  // 0 = the default
  std::set<std::string> sections{"kernels", "epoch", "depth", "large"};
  std::string config = "configs/fmnist_mlp_ep.yaml", out;
  std::vector<std::string> overrides;
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Throws UsageError for an unknown argument, a missing value or a value out of range.
Options parse(int argc, char** argv);

}  // namespace bilevel::gpu_bench
