// LibTorch-facing entries of the straight-through estimator's passes (quant/ste.cpp) and of the learned scale's
// gradient every quantization solver uses. Each entry checks its tensors (one device, float32, contiguous,
// matching shapes; std::invalid_argument naming the entry and the argument otherwise) and dispatches by device:
// CPU tensors to the CPU twins (bilevel/kernels/cpu/ste_twins.h, over LibTorch's thread pool), CUDA tensors to
// the CUDA kernels (src/kernels/cuda/optim.cu, quant.cu) on LibTorch's current stream. scale and zero are
// per output channel (dimension 0) or one for all, as in bilevel/kernels/quant_ops.h; zero may be undefined.
#pragma once

#include <torch/types.h>

#include "bilevel/kernels/quant_codes.h"

namespace bilevel::kernels {

// The STE solver's backward: out = g·1[lo ≤ θ/s + z ≤ hi]; returns ∂ℓ/∂s = Σ_channel g·w/s ([channels]) when
// `scale_grad`, an undefined tensor otherwise; when `clear_g`, g is left zero (it is ∂ℓ/∂w's buffer). On the CPU
// one pass per row does all three; on CUDA the mask kernel, LibTorch's reductions and g.zero_().
torch::Tensor ste_backward(torch::Tensor& g, const torch::Tensor& theta, const torch::Tensor& w,
                           const torch::Tensor& scale, const torch::Tensor& zero, double lo, double hi,
                           bool scale_grad, bool clear_g, torch::Tensor& out);

// The STE solver's post-step on a built-in grid: θ ← clip(θ, (lo − z)s, (hi − z)s), w ← s·(code(θ/s + z) − z),
// both in place (bilevel/kernels/ste_step.h).
void ste_update_(torch::Tensor& theta, torch::Tensor& w, const torch::Tensor& scale, const torch::Tensor& zero,
                 double lo, double hi, CodeSpec spec);

// ∂ℓ/∂s of w = s·code per channel: Σ_channel g·w/s, [channels] on the scale's device. float32 CPU tensors: one
// pass per row (8-lane dot products); anything else: LibTorch's operators.
torch::Tensor channel_scale_grad(const torch::Tensor& g, const torch::Tensor& w, const torch::Tensor& scale);

}  // namespace bilevel::kernels
