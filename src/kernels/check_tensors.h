// Internal: the argument checks every LibTorch-facing kernel entry (fused_ops.h, quant_ops.h) makes before it
// dispatches, with errors naming the entry and the argument.
#pragma once

#include <torch/types.h>

#include <initializer_list>

namespace bilevel::kernels {

// Elements per CPU task of an element-wise entry: large enough that a task outweighs the thread pool's overhead.
constexpr int64_t kCpuGrain = 1 << 15;

struct Arg {
  const char* name;
  const torch::Tensor* t;
};

// Every argument defined, on one device (the CPU, or a CUDA device in a build with the CUDA kernels), of one
// dtype (float32 or float64; float32 only when `float32_only`), of the first argument's shape, and contiguous.
// std::invalid_argument naming the entry and the argument otherwise (std::runtime_error for CUDA tensors in a
// build without CUDA kernels).
void check_tensors(const char* entry, std::initializer_list<Arg> args, bool float32_only = false);

// A per-channel grid of `theta` (scale, zero: float32, contiguous, on θ's device, 1 or θ.size(0) elements; zero
// may be undefined): std::invalid_argument naming the entry and the argument otherwise. Returns the zero points'
// pointer for the kernels' arguments: null when zero is undefined.
const float* check_grid(const char* entry, const torch::Tensor& theta, const torch::Tensor& scale,
                        const torch::Tensor& zero);

}  // namespace bilevel::kernels
