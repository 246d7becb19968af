// The rows of bench_gpu's kernel section: each public fused entry (kernels/fused_ops.h, kernels/quant_ops.h,
// energy/fused_relaxation.h) and the unfused sequence of LibTorch operators written here from the entry's equation,
// on the same random inputs.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace bilevel::gpu_bench {

// max |a − b| over all elements, in float64; +inf when shapes differ, NaN when either holds a NaN.
double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b);

// One row: the fused entry, the unfused LibTorch sequence of the same function, and a check that runs both on the
// same fresh inputs and returns the largest difference of their results.
struct KernelCase {
  std::string name, shape, unfused_ops;
  std::function<void()> fused, unfused;
  std::function<double()> check;
  double tol = 0.0;
};

// Every row: the element-wise entries on [rows, cols] float32 inputs (kernel_cases.cpp), then the fused relaxation
// of a 784-relax_hidden-10 network at each batch size in relax_batches (relax_cases.cpp).
std::vector<KernelCase> kernel_cases(torch::Device dev, int64_t rows, int64_t cols, const std::vector<int64_t>& relax_batches,
                                     int64_t relax_hidden);
// The fused relaxation's rows: a free phase of T = 30 sweeps at every batch size, a nudged phase of K = 10 at the
// first one; none where fused_relaxation does not take the problem.
void add_relaxation_cases(std::vector<KernelCase>& cases, torch::Device dev, const std::vector<int64_t>& batches,
                          int64_t hidden);

}  // namespace bilevel::gpu_bench
