// Launchers of the CUDA kernels (src/kernels/cuda/*.cu): the element-wise ones and the persistent relaxation.
// Raw device pointers, element counts and a stream; no LibTorch header, so the .cu files compile with nvcc alone.
// Each launcher enqueues its work on `stream` and returns the launch's error (cudaGetLastError()), never throws.
// The LibTorch-facing entries that check tensors and call these live in src/kernels/cuda/cuda_ops.cpp
// (bilevel/kernels/fused_ops.h) and src/kernels/cuda/dense_relax_entry.cpp (energy/fused_relaxation.h).
// The math is that of bilevel/kernels/elementwise.h, shared with the CPU twins.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "bilevel/kernels/dense_relax_args.h"
#include "bilevel/kernels/elementwise.h"
#include "bilevel/kernels/quant_codes.h"
#include "bilevel/kernels/ste_step.h"

namespace bilevel::kernels::cuda {

// δ[i], s̄[i] = dyad(ρ, u[i], f[i], α) for i < n (all arrays on the device).
cudaError_t launch_dyad_update(const float* u, const float* f, float* delta, float* sbar, int64_t n, float alpha,
                               ActParams rho, cudaStream_t stream);
cudaError_t launch_dyad_update(const double* u, const double* f, double* delta, double* sbar, int64_t n,
                               double alpha, ActParams rho, cudaStream_t stream);

// v[i] ← h(v[i]) for i < n, and *residual (one device element) ← max_i |h(v[i]) − s_old[i]| (0 for n = 0,
// NaN when a change is NaN). The launcher zeroes *residual on `stream` first.
cudaError_t launch_state_update(float* v, const float* s_old, int64_t n, ActParams h, float* residual,
                                cudaStream_t stream);
cudaError_t launch_state_update(double* v, const double* s_old, int64_t n, ActParams h, double* residual,
                                cudaStream_t stream);

// Row-wise (one block per row of [rows, n] arrays): v[r, j] ← h(v[r, j]) and change[r] ← max_keep_nan(change[r],
// max_j |h(v[r, j]) − s_old[r, j]|); with s_older not null, change_older[r] likewise against s_older. The changes
// are read and written, never zeroed.
cudaError_t launch_state_update_rows(float* v, const float* s_old, int64_t rows, int64_t n, ActParams h,
                                     float* change, const float* s_older, float* change_older, cudaStream_t stream);
cudaError_t launch_state_update_rows(double* v, const double* s_old, int64_t rows, int64_t n, ActParams h,
                                     double* change, const double* s_older, double* change_older,
                                     cudaStream_t stream);

// The quantization kernels (src/kernels/cuda/quant.cu), float32, math of bilevel/kernels/quant_codes.h:
// a.out[i] = codes_element(a, i) for i < a.n (a's arrays on the device);
cudaError_t launch_quant_codes(const CodesArgs& a, cudaStream_t stream);
// a.out[i] = act_codes_element(a, i) for i < a.n;
cudaError_t launch_activation_codes(const ActCodesArgs& a, cudaStream_t stream);
// a.out = the STE solver's ∂ℓ/∂θ (ste_element); w = AdaSTE's w*(u); out = AdaSTE's backward; gv, gs = LSQ's
// per-element gradients; ProxQuant's prox step on q in place; the flip rule on `codes` in place
// (bilevel/kernels/cpu/quant_twins.h states each).
cudaError_t launch_ste_grad(const SteArgs& a, cudaStream_t stream);
cudaError_t launch_adaste_forward(const float* u, float beta, float alpha, float* w, int64_t n, cudaStream_t stream);
cudaError_t launch_adaste_grad(const float* g, const float* u, float beta, float alpha, float* out, int64_t n,
                               cudaStream_t stream);
cudaError_t launch_lsq_grads(const float* g, const float* u, float qn, float qp, float* gv, float* gs, int64_t n,
                             cudaStream_t stream);
cudaError_t launch_prox_towards(const float* u, float lambda, float* q, int64_t n, cudaStream_t stream);
cudaError_t launch_flip_codes(float* codes, const float* m, float tau, int64_t n, cudaStream_t stream);

// The optimizer's passes (src/kernels/cuda/optim.cu), float32: p ← Adam(p, g) for i < n (m, v updated); the STE
// solver's fused backward + Adam + clip + re-quantize (ste_adam_element) and its post-step (ste_update_element).
cudaError_t launch_adam(float* p, float* m, float* v, const float* g, int64_t n, const AdamElement& a,
                        cudaStream_t stream);
cudaError_t launch_ste_adam(const SteAdamArgs& a, cudaStream_t stream);
cudaError_t launch_ste_update(const SteUpdateArgs& a, cudaStream_t stream);

// The persistent relaxation kernel (src/kernels/cuda/dense_relax.cu): all max_steps sweeps of one phase for every
// example of `a` (all its arrays on the current device) in one launch, one thread block per example, with the
// CPU kernel's per-example early stop; writes a.state, a.row_steps and a.row_residual. Returns
// cudaErrorInvalidValue for S outside [1, kMaxRelaxStates] or more classes than shared memory holds.
cudaError_t launch_dense_relax(const DenseRelaxArgs& a, cudaStream_t stream);

}  // namespace bilevel::kernels::cuda
