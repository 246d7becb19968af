// One run of bench_gpu: its settings (the options, the device, the sizes that follow from them) and what its sections
// add up (the report, the verdicts, the exit status). Each section is one member function, in its own file:
// kernel_section.cpp (1. fused kernels), step_sections.cpp (2. step times against backprop; EP at every depth),
// large_section.cpp (3. a large network's share of the matrix-product throughput).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "clock.h"
#include "options.h"
#include "report.h"

namespace bilevel::gpu_bench {

// The GPU targets (docs/gpu.md): what a fused kernel must gain, and how far a rule's step may exceed backprop's.
constexpr double kFusedMinSpeedup = 2.0;
constexpr double kEpMaxRatio = 2.0;
constexpr double kDualPropMaxRatio = 1.1;

struct GpuBench {
  // The sizes: the classic 784-512-10 setting at full batch count on a GPU; fewer batches on the CPU; few with
  // --quick. opt.device is cuda or cpu (no longer empty).
  explicit GpuBench(Options o);

  const Options opt;
  const bool on_gpu;
  const torch::Device dev;
  const int64_t reps, batches, large_hidden, large_batch, large_batches;
  const int64_t rows, cols;  // the element-wise kernels' inputs
  const std::vector<int64_t> relax_batches;
  const Clock clock;

  Report rep;
  int status = 0;              // 1: a fused result disagrees with its unfused sequence, or a section failed
  int misses = 0, judged = 0;  // targets missed and checked (on a GPU)

  void progress(const std::string& s) const { std::fprintf(stderr, "bench_gpu: %s\n", s.c_str()); }
  // A section's config overrides, then train.device and the user's overrides (the user's last: they win).
  std::vector<std::string> with_extra(std::vector<std::string> o) const;

  void kernel_section();
  void epoch_section();
  void depth_section();
  void large_section();
};

}  // namespace bilevel::gpu_bench
