// LibTorch-facing entries of the fused element-wise kernels. Each entry checks its tensors (one device, float32
// or float64, contiguous, equal shapes; std::invalid_argument naming the argument otherwise) and dispatches by
// device: CPU tensors go to the CPU twins (bilevel/kernels/cpu/elementwise_twins.h, in chunks over LibTorch's
// thread pool), CUDA tensors to the CUDA kernels (bilevel/kernels/cuda/launch.h) on LibTorch's current stream
// of the tensors' device. Both compute the functions of bilevel/kernels/elementwise.h.
// A build without the CUDA kernels (BILEVEL_CUDA=OFF, no nvcc, or a LibTorch without CUDA) throws
// std::runtime_error for CUDA tensors; cuda_kernels_built() says which build this is.
#pragma once

#include <torch/types.h>

#include <string>

#include "bilevel/kernels/elementwise.h"

namespace bilevel {
}

namespace bilevel::kernels {

// True when this build links the CUDA kernels (LibTorch with CUDA and BILEVEL_CUDA not OFF).
bool cuda_kernels_built();

// The kernel activation for a name of bilevel/nn/activation.h; std::invalid_argument for an unknown name.
ActParams act_of(const std::string& activation_name);

// Dual propagation's dyad (elementwise.h) for every element: writes δ and s̄ into `delta` and `sbar`, which
// must already have u's shape, dtype and device. α in [0, 1].
void dyad_update_out(const torch::Tensor& u, const torch::Tensor& f, double alpha, ActParams rho,
                     torch::Tensor& delta, torch::Tensor& sbar);
struct DyadTensors {
  torch::Tensor delta, sbar;
};
DyadTensors dyad_update(const torch::Tensor& u, const torch::Tensor& f, double alpha, ActParams rho);

// The fixed-point step's epilogue: v ← h(v) in place; returns max |h(v) − s_old| over all elements (0 when
// empty, NaN when a change is NaN). The same result as  finish_(v); (v − s_old).abs().max().
// The result is read on the host (on CUDA: a synchronisation with the stream).
double state_update_(torch::Tensor& v, const torch::Tensor& s_old, ActParams h);
// The same step with the residual left where it was computed: a 0-dimensional tensor of v's dtype on v's device,
// not read (no synchronisation), for callers that combine several residuals before one read (energy/sweep_residual.h).
torch::Tensor state_update_residual_(torch::Tensor& v, const torch::Tensor& s_old, ActParams h);

// The same epilogue per example, for the compact relaxation (energy/compact_relaxation.h): v and s_old are
// [rows, ...] (the trailing dimensions are one row), change is [rows] of their dtype and device. v ← h(v) in place
// and change[r] ← max(change[r], max over row r of |h(v) − s_old|); a NaN change makes change[r] NaN for good. No
// host synchronisation. On the CPU, float32 rows with the energy neurons' activations (identity, clip, sigmoid,
// tanh) take the vectorised code of the fused relaxation (bilevel/kernels/cpu/dense_relax.h, a few ulps from
// LibTorch's); other cases the CPU twin; CUDA tensors one kernel launch with one block per row.
// With s_older defined (v's shape) the same pass also folds max |h(v) − s_older| into change_older ([rows]): the
// compact relaxation's period-2 test (a row whose state equals the one two sweeps back alternates from then on).
void state_update_rows_(torch::Tensor& v, const torch::Tensor& s_old, ActParams h, torch::Tensor& change,
                        const torch::Tensor& s_older = {}, torch::Tensor* change_older = nullptr);

}  // namespace bilevel::kernels
