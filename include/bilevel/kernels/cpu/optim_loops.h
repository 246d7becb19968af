// The optimizer's element loops on the CPU, one pass each: Adam over a tensor, and the straight-through estimator's
// fused backward + Adam + clip + re-quantize over one channel's latents (bilevel/quant/weight_solver.h,
// fused_adam_step). Built for AVX-512, AVX2 and baseline x86-64, the clone picked at load time by the CPU, all
// computing the same bits (no FMA contraction; IEEE √ and ÷); denormals are flushed to zero inside
// (bilevel/util/denormals.h). No LibTorch header.
#pragma once

#include <cstdint>

#include "bilevel/kernels/adam_element.h"
#include "bilevel/kernels/quant_codes.h"  // CodeKind

namespace bilevel::kernels::cpu {

// p ← Adam(p, g) element-wise over n elements (m, v: the moments, updated).
void adam_pass(float* p, float* m, float* v, const float* g, int64_t n, const AdamElement& a);


// One channel's constants: u = θ/s + z is the latent in grid units.
struct SteChannel {
  float inv_scale_before = 1;  // 1/s of backward (the scale before the optimizer stepped it)
  float scale = 1;             // s after the step: the clip box and the new weights
  float zero = 0;              // z
  float lo = -1, hi = 1;       // the mask's and clip's range of u
  float code_lo = -1, code_hi = 1;  // Uniform: the code range
};

// For each of n elements: grad = g·1[lo ≤ θ·inv_before + z ≤ hi]; θ ← clip(Adam(θ, grad), (lo − z)s, (hi − z)s);
// w ← s·(code(θ/s + z) − z); g ← 0.
void ste_adam_pass(float* theta, float* w, float* g, float* m, float* v, int64_t n, const SteChannel& c, CodeKind k,
                   const AdamElement& a);

}  // namespace bilevel::kernels::cpu
