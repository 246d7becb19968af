// LibTorch-facing entries of the quantization kernels: the built-in grids' codes and the quantization solvers'
// element-wise passes. Each entry checks its tensors (one device, float32, contiguous, equal shapes;
// std::invalid_argument naming the argument otherwise) and dispatches by device: CPU tensors to the CPU twins
// (bilevel/kernels/cpu/quant_twins.h, in chunks over LibTorch's thread pool), CUDA tensors to the CUDA kernels
// (src/kernels/cuda/quant.cu) on LibTorch's current stream of the tensors' device. Both compute the functions of
// bilevel/kernels/quant_codes.h and bilevel/kernels/quant_element.h, so a stochastic code is the same number on either.
// The _out forms write into tensors the caller allocated (θ's shape, dtype and device).
#pragma once

#include <torch/types.h>

#include <cstdint>

#include "bilevel/kernels/quant_codes.h"

namespace bilevel::kernels {

// Codes of θ on the grid `spec` with one scale and zero point per output channel (dimension 0) or one for all:
// scale and zero are float32 of θ's device with 1 or θ.size(0) elements (zero undefined: 0). key non-null:
// stochastic rounding from stream *key (bilevel/kernels/counter_rng.h), element i drawing the i-th number.
void quant_codes_out(const torch::Tensor& theta, const torch::Tensor& scale, const torch::Tensor& zero, CodeSpec spec,
                     const uint64_t* key, torch::Tensor& out);
torch::Tensor quant_codes(const torch::Tensor& theta, const torch::Tensor& scale, const torch::Tensor& zero,
                          CodeSpec spec, const uint64_t* key = nullptr);

// The activation quantizer's codes of x: uniform_code((x − offset)/step) on [lo, hi], or stochastic from *key.
void activation_codes_out(const torch::Tensor& x, double offset, double step, double lo, double hi,
                          const uint64_t* key, torch::Tensor& out);
// The same with the step a one-element float32 tensor on x's device (a learned step): read by the kernel, never
// on the host, so a CUDA step costs no synchronisation. The step must be > 0 (not checked: that would read it).
// Deterministic CPU codes are integer inference's (kernels/cpu/int_gemm.h, state_codes) in both forms.
void activation_codes_out(const torch::Tensor& x, double offset, const torch::Tensor& step, double lo, double hi,
                          const uint64_t* key, torch::Tensor& out);

// The STE solver's backward (quant/ste.cpp): out = g·1[lo <= θ/s + z <= hi], s and z per channel as for
// quant_codes.
void ste_grad_out(const torch::Tensor& g, const torch::Tensor& theta, const torch::Tensor& scale,
                  const torch::Tensor& zero, double lo, double hi, torch::Tensor& out);
// AdaSTE on the normalised latent u: w = w*(u), and out = σ(u, g)·g, its adaptive backward (quant_element.h).
void adaste_forward_out(const torch::Tensor& u, double beta, double alpha, torch::Tensor& w);
void adaste_grad_out(const torch::Tensor& g, const torch::Tensor& u, double beta, double alpha, torch::Tensor& out);
// LSQ at u = v/s on the range [−qn, qp]: gv = g·∂v̂/∂v, gs = g·∂v̂/∂s per element.
void lsq_grads_out(const torch::Tensor& g, const torch::Tensor& u, double qn, double qp, torch::Tensor& gv,
                   torch::Tensor& gs);
// ProxQuant's prox step in place: q ← q + sign(u − q)·max(|u − q| − λ, 0), for the normalised latent u and its
// nearest grid point q.
void prox_towards_(torch::Tensor& q, const torch::Tensor& u, double lambda);
// The flip rule in place: codes_i ← −codes_i where m_i·codes_i > τ.
void flip_codes_(torch::Tensor& codes, const torch::Tensor& m, double tau);

}  // namespace bilevel::kernels
