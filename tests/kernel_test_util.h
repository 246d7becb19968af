// Helpers shared by the kernel tests (test_fused_kernels.cpp, test_quant_kernels.cpp): fresh random inputs,
// outputs poisoned with NaN and followed by guard cells, and the skip for builds or machines without CUDA.
#pragma once

#include <gtest/gtest.h>
#include <torch/types.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "bilevel/kernels/fused_ops.h"

namespace kernel_test {

using torch::Tensor;

constexpr double kGuard = -12345.0;
// Sizes that are not multiples of the CUDA block (256) or of a CPU task (2^15); 70001: three tasks, the last partial.
inline const std::vector<int64_t> kSizes = {1, 7, 255, 257, 1000, 70001};

inline uint64_t g_seed = 1000;  // every case draws fresh inputs

inline Tensor random_input(int64_t n, torch::ScalarType dtype, double spread, torch::Device dev = torch::kCPU) {
  torch::manual_seed(++g_seed);
  return (torch::randn({n}, torch::kFloat64) * spread).to(dtype).to(dev);
}

// A tensor of n elements inside a buffer of n + 16, poisoned with NaN, followed by guard cells.
struct Poisoned {
  Tensor buf, view;
  Poisoned(int64_t n, torch::ScalarType dtype, torch::Device dev = torch::kCPU) {
    buf = torch::full({n + 16}, std::numeric_limits<double>::quiet_NaN(), torch::dtype(dtype).device(dev));
    buf.narrow(0, n, 16).fill_(kGuard);
    view = buf.narrow(0, 0, n);
  }
  bool guards_intact() const {
    const int64_t n = view.numel();
    return buf.narrow(0, n, 16).eq(kGuard).all().item<bool>();
  }
};

}  // namespace kernel_test

// A macro, not a function: GTEST_SKIP() returns from the function it is written in.
#define REQUIRE_CUDA()                                                                                        \
  do {                                                                                                        \
    if (!bilevel::kernels::cuda_kernels_built())                                                              \
      GTEST_SKIP() << "this build has no CUDA kernels (BILEVEL_CUDA=OFF, no nvcc, or LibTorch without CUDA)"; \
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";                                      \
  } while (0)

