// Internal: the CUDA halves of bilevel/kernels/fused_ops.h (src/kernels/cuda/cuda_ops.cpp), built only with
// BILEVEL_WITH_CUDA. The tensors have been checked by the caller.
#pragma once

#include <torch/types.h>

#include "bilevel/kernels/elementwise.h"

namespace bilevel::kernels::cuda {

void dyad_update(const torch::Tensor& u, const torch::Tensor& f, double alpha, ActParams rho, torch::Tensor& delta,
                 torch::Tensor& sbar);
double state_update(torch::Tensor& v, const torch::Tensor& s_old, ActParams h);

}  // namespace bilevel::kernels::cuda
