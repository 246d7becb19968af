// Internal: the CUDA halves of bilevel/kernels/fused_ops.h (src/kernels/cuda/cuda_ops.cpp) and of the fused
// relaxation (energy/fused_relaxation.h; src/kernels/cuda/dense_relax_entry.cpp), built only with
// BILEVEL_WITH_CUDA. The tensors have been checked by the caller.
#pragma once

#include <torch/types.h>

#include <functional>

#include "bilevel/kernels/config.h"
#include "bilevel/kernels/cpu/dense_relax.h"
#include "bilevel/kernels/elementwise.h"

#if BILEVEL_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace bilevel::kernels::cuda {

void dyad_update(const torch::Tensor& u, const torch::Tensor& f, double alpha, ActParams rho, torch::Tensor& delta,
                 torch::Tensor& sbar);
// The residual stays on the device (a 0-dimensional tensor; not read, so no synchronisation).
torch::Tensor state_update(torch::Tensor& v, const torch::Tensor& s_old, ActParams h);
void state_update_rows(torch::Tensor& v, const torch::Tensor& s_old, ActParams h, torch::Tensor& change,
                       const torch::Tensor& s_older, torch::Tensor* change_older);
// The whole relaxation of one phase (src/kernels/cuda/dense_relax_entry.cpp): p, state and scratch as for
// cpu::dense_relax_rows over all p.batch rows, but every pointer on the CUDA device `device`; one kernel launch on
// its current stream. Returns the maxima over examples of the sweeps run and of the last change (synchronises).
// Throws std::invalid_argument for more than kMaxRelaxStates states (bilevel/kernels/dense_relax_args.h) and
// std::runtime_error when the launch fails.
::bilevel::cpu::RelaxStats dense_relax(const ::bilevel::cpu::DenseRelaxProblem& p, float* const* state,
                                       float* const* scratch, torch::Device device);

#if BILEVEL_WITH_CUDA
// Calls launch(stream) with LibTorch's current stream of `device`, under a device guard; throws
// std::runtime_error naming `kernel` when the launch reports an error.
void launch_on(torch::Device device, const char* kernel, const std::function<cudaError_t(cudaStream_t)>& launch);
#endif

}  // namespace bilevel::kernels::cuda
