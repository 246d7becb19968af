// Internal: the CUDA halves of bilevel/kernels/fused_ops.h (src/kernels/cuda/cuda_ops.cpp), built only with
// BILEVEL_WITH_CUDA. The tensors have been checked by the caller.
#pragma once

#include <torch/types.h>

#include <functional>

#include "bilevel/kernels/config.h"
#include "bilevel/kernels/elementwise.h"

#if BILEVEL_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace bilevel::kernels::cuda {

void dyad_update(const torch::Tensor& u, const torch::Tensor& f, double alpha, ActParams rho, torch::Tensor& delta,
                 torch::Tensor& sbar);
double state_update(torch::Tensor& v, const torch::Tensor& s_old, ActParams h);

#if BILEVEL_WITH_CUDA
// Calls launch(stream) with LibTorch's current stream of `device`, under a device guard; throws
// std::runtime_error naming `kernel` when the launch reports an error.
void launch_on(torch::Device device, const char* kernel, const std::function<cudaError_t(cudaStream_t)>& launch);
#endif

}  // namespace bilevel::kernels::cuda
