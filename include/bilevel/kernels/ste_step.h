// The straight-through estimator's element passes as data for kernels (quant/ste.cpp; CPU twins
// src/kernels/cpu/ste_twins.cpp and src/kernels/cpu/optim_loops.cpp, CUDA kernels src/kernels/cuda/optim.cu):
//   update   θ ← clip(θ, (lo − z)s, (hi − z)s);  w ← s·(code(θ·(1/s) + z) − z)       (after the optimizer's step)
//   fused    grad = g·1[lo ≤ θ·(1/s_before) + z ≤ hi]; θ ← clip(Adam(θ, grad)); w as above; g ← 0
// One scale and zero point per output channel (channel = i / inner) or one for all. No LibTorch header.
#pragma once

#include <cstdint>

#include "bilevel/kernels/adam_element.h"
#include "bilevel/kernels/quant_codes.h"
#include "bilevel/util/hd.h"

namespace bilevel::kernels {

// std::min(std::max(x, lo), hi), spelled out so that host and device evaluate the same comparisons (NaN stays NaN).
BILEVEL_HDI float clip_box(float x, float lo, float hi) {
  const float y = x < lo ? lo : x;
  return hi < y ? hi : y;
}

// One channel's constants of the update, computed once per channel by the CPU twin and per element by the kernel
// (the same float operations, so the same bits).
struct SteBox {
  float scale, inv_scale, zero, tlo, thi;
};
BILEVEL_HDI SteBox ste_box(float scale, float zero, float lo, float hi) {
  return SteBox{scale, 1.f / scale, zero, (lo - zero) * scale, (hi - zero) * scale};
}
// The clipped latent t and its weight s·(code(t/s + z) − z).
BILEVEL_HDI float ste_weight(CodeSpec spec, const SteBox& b, float t) {
  return b.scale * (spec_code(spec, t * b.inv_scale + b.zero) - b.zero);
}

struct SteUpdateArgs {
  float* theta;        // latents, clipped in place
  float* w;            // weights, written
  const float* scale;  // [channels]
  const float* zero;   // [channels], or null: zero points of 0
  int64_t n, inner;    // elements; elements per channel (n when one channel)
  float lo, hi;        // the clip range of the normalised latent θ/s + z
  CodeSpec spec;
};
BILEVEL_HDI void ste_update_element(const SteUpdateArgs& a, int64_t i) {
  const int64_t c = a.inner < a.n ? i / a.inner : 0;
  const SteBox b = ste_box(a.scale[c], zero_at(a.zero, c), a.lo, a.hi);
  const float t = clip_box(a.theta[i], b.tlo, b.thi);
  a.theta[i] = t;
  a.w[i] = ste_weight(a.spec, b, t);
}

struct SteAdamArgs {
  float* theta;               // latents, stepped in place
  float* w;                   // weights, written
  float* g;                   // ∂ℓ/∂w, read and left zero
  float* m;                   // Adam's moments, updated
  float* v;
  const float* scale_before;  // [channels]: the scale backward saw (before the optimizer stepped it)
  const float* scale;         // [channels]: the stepped scale (the clip box and the new weights)
  const float* zero;          // [channels], or null
  int64_t n, inner;
  float lo, hi;
  CodeSpec spec;
  AdamElement adam;
};
BILEVEL_HDI void ste_adam_element(const SteAdamArgs& a, int64_t i) {
  const int64_t c = a.inner < a.n ? i / a.inner : 0;
  const float z = zero_at(a.zero, c);
  const float u = a.theta[i] * (1.f / a.scale_before[c]) + z;
  const float grad = a.g[i] * (float(u >= a.lo) * float(u <= a.hi));
  const SteBox b = ste_box(a.scale[c], z, a.lo, a.hi);
  const float t = clip_box(adam_update(grad, a.m[i], a.v[i], a.theta[i], a.adam), b.tlo, b.thi);
  a.theta[i] = t;
  a.w[i] = ste_weight(a.spec, b, t);
  a.g[i] = 0.f;
}

}  // namespace bilevel::kernels
