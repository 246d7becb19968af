// The built-in quantizers' codes as data, for kernels: a CodeSpec names the grid (binary, ternary, uniform on
// [lo, hi]) and spec_code / spec_code_stochastic apply the element math of bilevel/kernels/quant_element.h. Shared by the
// CPU twins (src/kernels/cpu/quant_twins.cpp) and the CUDA kernels (src/kernels/cuda/quant.cu); no LibTorch header.
#pragma once

#include <cstdint>

#include "bilevel/kernels/counter_rng.h"
#include "bilevel/kernels/quant_element.h"
#include "bilevel/util/hd.h"

namespace bilevel::kernels {

enum class CodeKind : int32_t { Binary = 0, Ternary = 1, Uniform = 2 };

// A built-in grid: for Uniform the integer range [lo, hi] (binary and ternary ignore them).
struct CodeSpec {
  CodeKind kind = CodeKind::Binary;
  float lo = -1.f, hi = 1.f;
};

// q for the normalised value x = θ/s + z.
BILEVEL_HDI float spec_code(CodeSpec c, float x) {
  switch (c.kind) {
    case CodeKind::Binary: return qe::binary_code(x);
    case CodeKind::Ternary: return qe::ternary_code(x, qe::kTernaryThreshold);
    default: return qe::uniform_code(x, c.lo, c.hi);
  }
}
// q with stochastic rounding from u ∈ [0, 1).
BILEVEL_HDI float spec_code_stochastic(CodeSpec c, float x, float u) {
  switch (c.kind) {
    case CodeKind::Binary: return qe::binary_code_stochastic(x, u);
    case CodeKind::Ternary: return qe::ternary_code_stochastic(x, u);
    default: return qe::uniform_code_stochastic(x, c.lo, c.hi, u);
  }
}

// A channel's zero point, 0 when the grid has none (zero = null).
BILEVEL_HDI float zero_at(const float* zero, int64_t c) { return zero ? zero[c] : 0.f; }

// Element i of the codes of θ with one scale and zero point per channel (channel = i / inner): deterministic
// q(θ_i · (1/s_c) + z_c), or stochastic q(θ_i / s_c + z_c, u_i) with u_i the i-th number of stream `key`
// (bilevel/kernels/counter_rng.h), so that every element can be drawn by any thread.
struct CodesArgs {
  const float* theta;
  const float* scale;  // [channels]
  const float* zero;   // [channels], or null: zero points of 0
  float* out;
  int64_t n, inner;    // elements; elements per channel (n when one channel)
  CodeSpec spec;
  bool stochastic;
  uint64_t key;
};
BILEVEL_HDI float codes_element(const CodesArgs& a, int64_t i) {
  const int64_t c = a.inner < a.n ? i / a.inner : 0;
  if (a.stochastic) return spec_code_stochastic(a.spec, a.theta[i] / a.scale[c] + zero_at(a.zero, c), counter_uniform(a.key, uint64_t(i)));
  return spec_code(a.spec, a.theta[i] * (1.f / a.scale[c]) + zero_at(a.zero, c));
}

// The activation quantizer's codes (quant/activation_quantizer.h): uniform on [lo, hi] of (x − offset)/step,
// deterministic (as integer inference computes them) or stochastic from stream `key`.
// With `step` not null the step is read from that one element (a learned step, on the kernel's device, so that no
// host read is needed) instead of inv_step: the same 1/step either way.
struct ActCodesArgs {
  const float* x;
  float* out;
  int64_t n;
  float offset, inv_step, lo, hi;
  bool stochastic;
  uint64_t key;
  const float* step = nullptr;
};
BILEVEL_HDI float act_inv_step(const ActCodesArgs& a) { return a.step ? 1.f / *a.step : a.inv_step; }
BILEVEL_HDI float act_codes_element(const ActCodesArgs& a, int64_t i) {
  const float v = (a.x[i] - a.offset) * act_inv_step(a);
  return a.stochastic ? qe::uniform_code_stochastic(v, a.lo, a.hi, counter_uniform(a.key, uint64_t(i)))
                      : qe::uniform_code(v, a.lo, a.hi);
}

// The STE solver's backward (quant/ste.cpp): ∂ℓ/∂θ_i = g_i · 1[lo <= θ_i · (1/s_c) + z_c <= hi], the saturation
// range [lo, hi] on the normalised latent (binary and ternary: [−1, 1]; uniform: the code range).
struct SteArgs {
  const float* g;
  const float* theta;
  const float* scale;  // [channels]
  const float* zero;   // [channels], or null: zero points of 0
  float* out;
  int64_t n, inner;
  float lo, hi;
};
BILEVEL_HDI float ste_mask(float u, float lo, float hi) { return float(u >= lo) * float(u <= hi); }
BILEVEL_HDI float ste_element(const SteArgs& a, int64_t i) {
  const int64_t c = a.inner < a.n ? i / a.inner : 0;
  return a.g[i] * ste_mask(a.theta[i] * (1.f / a.scale[c]) + zero_at(a.zero, c), a.lo, a.hi);
}

}  // namespace bilevel::kernels
