// CPU twins of the quantization kernels (src/kernels/cuda/quant.cu): the same functions of
// bilevel/kernels/quant_codes.h and bilevel/kernels/quant_element.h over raw float arrays, one thread, elements
// [begin, end) (the element index also numbers the stochastic stream). bilevel/kernels/quant_ops.h splits
// tensors into chunks across LibTorch's thread pool and dispatches between these and the CUDA kernels by device.
#pragma once

#include <cstdint>

#include "bilevel/kernels/quant_codes.h"

namespace bilevel::kernels::cpu {

// out[i] = codes_element(a, i).
void quant_codes(const CodesArgs& a, int64_t begin, int64_t end);
// a.out[i] = act_codes_element(a, i).
void activation_codes(const ActCodesArgs& a, int64_t begin, int64_t end);
// a.out[i] = ste_element(a, i)  (the STE solver's backward).
void ste_grad(const SteArgs& a, int64_t begin, int64_t end);
// w[i] = AdaSTE's w*(u_i);  out[i] = its adaptive backward σ(u_i, g_i)·g_i (kernels/quant_element.h).
void adaste_forward(const float* u, float beta, float alpha, float* w, int64_t begin, int64_t end);
void adaste_grad(const float* g, const float* u, float beta, float alpha, float* out, int64_t begin, int64_t end);
// LSQ: gv[i] = g[i]·∂v̂/∂v, gs[i] = g[i]·∂v̂/∂s at u_i = v_i/s (before the per-channel sum and gradient scale).
void lsq_grads(const float* g, const float* u, float qn, float qp, float* gv, float* gs, int64_t begin, int64_t end);
// ProxQuant's prox step in place: q_i ← prox_{λ|· − q_i|}(u_i) (the soft threshold towards the grid point q_i).
void prox_towards(const float* u, float lambda, float* q, int64_t begin, int64_t end);
// The flip rule on codes in place: q_i ← −q_i where m_i·q_i > τ.
void flip_codes(float* codes, const float* m, float tau, int64_t begin, int64_t end);

}  // namespace bilevel::kernels::cpu
