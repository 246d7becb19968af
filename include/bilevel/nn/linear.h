// A fully connected layer's affine map y = x Wᵀ + b, differentiable, with its three products (forward, input
// gradient, weight gradient) split over LibTorch's threads by kernels::cpu::split_addmm.
//
// torch::addmm would run them on the BLAS's own thread pool, which bilevel keeps at one thread
// (bilevel/kernels/cpu/split_gemm.h says why); this is what lets backprop and the feedforward passes of the other
// rules use more than one core. Same values as torch::addmm up to the BLAS's summation order. Double backward
// (create_graph) is supported: with grad mode on, the backward uses autograd's own operators.
#pragma once

#include <torch/types.h>

namespace bilevel {

// x [B, in] (any shape whose trailing dimensions flatten to in), W [out, in], b [out] → [B, out].
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b);

}  // namespace bilevel
