// CPU twins of the straight-through estimator's passes (bilevel/kernels/ste_step.h; the CUDA kernels are in
// src/kernels/cuda/optim.cu): one thread over a range, the channel's constants hoisted out of the inner loop (the
// same float operations as the per-element functions, so the same bits). The fused Adam pass's twin is
// cpu::ste_adam_pass (bilevel/kernels/cpu/optim_loops.h). bilevel/kernels/ste_ops.h splits tensors over
// LibTorch's thread pool and dispatches between these and the kernels by device.
#pragma once

#include <cstdint>

#include "bilevel/kernels/ste_step.h"

namespace bilevel::kernels::cpu {

// ste_update_element for elements [begin, end).
void ste_update(const SteUpdateArgs& a, int64_t begin, int64_t end);

// The STE backward of rows [row_begin, row_end) of a weight tensor whose rows are output channels (`inner`
// elements each): out = g·1[lo ≤ θ·(1/s_c) + z_c ≤ hi]; when row_sums is not null, row_sums[r] = (Σ_row g·w)·(1/s_c)
// (the learned scale's gradient before the sum over a channel's rows); when `clear`, g ← 0 after it is read.
struct SteBackwardArgs {
  const float* theta;
  const float* w;
  float* g;
  const float* scale;  // [channels]
  const float* zero;   // [channels], or null
  float* out;
  float* row_sums;     // [rows], or null
  int64_t rows, inner, channels;
  float lo, hi;
  bool clear;
};
void ste_backward_rows(const SteBackwardArgs& a, int64_t row_begin, int64_t row_end);

// Σ over each row of g·w, divided by the row's channel scale: row[r] = dot(g_r, w_r) / s_c (WeightSolver::scale_grad).
void scaled_row_dots(const float* g, const float* w, const float* scale, int64_t channels, int64_t inner, float* row,
                     int64_t row_begin, int64_t row_end);

}  // namespace bilevel::kernels::cpu
