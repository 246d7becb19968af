// LibTorch-facing entries of the optimizer's fused passes (optim/fused_adam.h): Adam in one pass over a tensor,
// and the STE solver's backward + Adam + clip + re-quantize in one pass (quant/weight_solver.h,
// fused_adam_step). float32, contiguous, one device and one shape (std::invalid_argument naming the argument
// otherwise); CPU tensors go to the CPU loops (bilevel/kernels/cpu/optim_loops.h), CUDA tensors to the kernels of
// src/kernels/cuda/optim.cu (the same bits up to denormals, which the CPU loops flush to zero).
#pragma once

#include <torch/types.h>

#include "bilevel/kernels/adam_element.h"
#include "bilevel/kernels/quant_codes.h"

namespace bilevel::kernels {

// p ← Adam(p, g) element-wise; m and v (the moments) updated in place.
void adam_step_(torch::Tensor& p, torch::Tensor& m, torch::Tensor& v, const torch::Tensor& g, const AdamElement& a);

// The STE solver's fused step (bilevel/kernels/ste_step.h, ste_adam_element) on a built-in grid: θ, w, m, v
// updated and g (∂ℓ/∂w) left zero. scale_before, scale and zero per channel (dimension 0) or one for all.
void ste_adam_step_(torch::Tensor& theta, torch::Tensor& w, torch::Tensor& g, torch::Tensor& m, torch::Tensor& v,
                    const torch::Tensor& scale_before, const torch::Tensor& scale, const torch::Tensor& zero,
                    double lo, double hi, CodeSpec spec, const AdamElement& a);

}  // namespace bilevel::kernels
