// Element-wise mathematics of the quantizers and quantization solvers, as plain inline functions of scalars, so
// that a CPU loop, a LibTorch expression and a CUDA kernel compute the same function (BILEVEL_HD marks them
// __host__ __device__ under nvcc). Every quantizer works on the normalised value x = θ/s (s the step or scale) and
// returns an integer code q; the dequantised value is s·(q − z) for a zero point z (0 for symmetric grids).
// The equations are those of each quantizer's and solver's header (bilevel/quant/*.h).
#pragma once

#include <cmath>
#include <cstdint>

#include "bilevel/util/hd.h"

namespace bilevel::qe {

// TWN's threshold, in units of the scale mean|θ| (ternary_code's t for the deterministic ternary quantizer).
constexpr float kTernaryThreshold = 0.7f;

BILEVEL_HD inline float clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

// Round half away from zero (what std::round does; LibTorch's round is half-to-even, so the CPU/GPU paths use this).
BILEVEL_HD inline float round_half_away(float x) { return x >= 0.f ? std::floor(x + 0.5f) : -std::floor(-x + 0.5f); }

// Stochastic rounding: floor(x) + [u < x − floor(x)], u ∈ [0, 1). Unbiased: E = x.
BILEVEL_HD inline float round_stochastic(float x, float u) {
  const float f = std::floor(x);
  return f + (u < x - f ? 1.f : 0.f);
}

// Binary: sign with sign(0) = +1. Stochastic (BinaryConnect): +1 with probability clip((x + 1)/2, 0, 1).
BILEVEL_HD inline float binary_code(float x) { return x >= 0.f ? 1.f : -1.f; }
BILEVEL_HD inline float binary_code_stochastic(float x, float u) { return u < clampf(0.5f * (x + 1.f), 0.f, 1.f) ? 1.f : -1.f; }

// Ternary (TWN): 0 inside the threshold |x| <= t, else sign(x). Stochastic: round x clipped to [−1, 1] stochastically.
BILEVEL_HD inline float ternary_code(float x, float t) { return x > t ? 1.f : (x < -t ? -1.f : 0.f); }
BILEVEL_HD inline float ternary_code_stochastic(float x, float u) { return round_stochastic(clampf(x, -1.f, 1.f), u); }

// Uniform k-bit on the integer range [lo, hi] (symmetric: [−2^{k−1}, 2^{k−1} − 1]; asymmetric: [0, 2^k − 1] after
// adding the zero point): round(clip(x, lo, hi)).
BILEVEL_HD inline float uniform_code(float x, float lo, float hi) { return round_half_away(clampf(x, lo, hi)); }
BILEVEL_HD inline float uniform_code_stochastic(float x, float lo, float hi, float u) {
  return clampf(round_stochastic(clampf(x, lo, hi), u), lo, hi);
}

// ---- solvers ----

// STE (BinaryConnect): ∂ℓ/∂θ = ∂ℓ/∂w · 1[|θ| <= c].
BILEVEL_HD inline float ste_grad(float g, float theta, float clip) { return std::fabs(theta) <= clip ? g : 0.f; }

// AdaSTE's inner problem on the normalised latent u: w*(u) = argmin_{w ∈ [−1, 1]} ½(w − u)² + β(½w² − (1+α)|w|)
//   = clip((u + β(1+α)·sign u)/(1+β), −1, 1).
BILEVEL_HD inline float adaste_forward(float u, float beta, float alpha) {
  const float s = u >= 0.f ? 1.f : -1.f;
  return clampf((u + beta * (1.f + alpha) * s) / (1.f + beta), -1.f, 1.f);
}
// Its backward, the paper's adaptive estimator: ∂ℓ/∂u = σ(u, g)·g for g = ∂ℓ/∂w*, with the finite difference's
// perturbation chosen per weight from where the descent step −g would take u. Each slope σ is a secant of w*:
// "inward" (g·u > 0: the step moves u towards 0, where w* changes sign) takes the secant from u to just across 0,
// capped at ½; "outward" the slope of the piece u is on. With b = β(1+α) and c = 1 − βα (w* saturates at |u| ≥ c):
//   βα < 1, |u| < c, outward:  σ = 1/(1+β)                                the linear piece
//   βα < 1, |u| < c, inward:   σ = min(½, (|u| + 2b)/((1+β)|u|))          w* jumps by 2b/(1+β) at 0
//   βα < 1, |u| ≥ c, outward:  σ = 0                                       saturated, stays saturated
//   βα < 1, |u| ≥ c, inward:   σ = min(½, (1 + 2β + βα)/((1+β)|u|))       from ±1 to ∓b/(1+β): the "leaky" slope
//   βα ≥ 1 (w* = sign u):      σ = min(½, 1/|u|) inward, 0 outward
//   u = 0:                     σ = 1/(1+β) for βα < 1, ½ for βα ≥ 1
// σ depends on |u| and on the sign of g·u only, so the estimator is symmetric under (u, g) → (−u, −g). The released
// code (the authors' FenBPOpt.get_grad) has the same cases, with two differences: its inward mid-range slope for
// u > 0 reads (2b − u) where its u < 0 branch and the secant give (2b + |u|), and it decides the cases by
// thresholds of 10⁻³ on g and on u (10⁻⁶ on u while βα < 1) instead of their signs.
BILEVEL_HD inline float adaste_slope(float g, float u, float beta, float alpha) {
  const float a = std::fabs(u), ba = beta * alpha;
  const bool inward = g * u > 0.f;
  if (ba >= 1.f) {
    if (a == 0.f) return 0.5f;
    return inward ? fminf(0.5f, 1.f / a) : 0.f;
  }
  if (a == 0.f) return 1.f / (1.f + beta);
  if (a >= 1.f - ba) return inward ? fminf(0.5f, (1.f + 2.f * beta + ba) / ((1.f + beta) * a)) : 0.f;
  return inward ? fminf(0.5f, (a + 2.f * beta * (1.f + alpha)) / ((1.f + beta) * a)) : 1.f / (1.f + beta);
}
BILEVEL_HD inline float adaste_grad(float g, float u, float beta, float alpha) {
  return adaste_slope(g, u, beta, alpha) * g;
}

// Soft-thresholding towards the grid point q: prox_{λ|· − q|}(θ) = q + sign(θ − q)·max(|θ − q| − λ, 0).
BILEVEL_HD inline float prox_towards(float theta, float q, float lambda) {
  const float d = theta - q, m = std::fabs(d) - lambda;
  return m > 0.f ? q + (d > 0.f ? m : -m) : q;
}

// LSQ (Esser et al. 2020) on v/s: ∂v̂/∂v = 1 inside [−Q_N, Q_P], else 0; ∂v̂/∂s = round(v/s) − v/s inside,
// −Q_N or Q_P outside (before the gradient scale).
BILEVEL_HD inline float lsq_grad_v(float v_over_s, float qn, float qp) {
  return (v_over_s >= -qn && v_over_s <= qp) ? 1.f : 0.f;
}
BILEVEL_HD inline float lsq_grad_s(float v_over_s, float qn, float qp) {
  if (v_over_s <= -qn) return -qn;
  if (v_over_s >= qp) return qp;
  return round_half_away(v_over_s) - v_over_s;
}

// Flip rule (Bop-style, on the gradient's moving average m): flip w when m·sign(w) > τ, i.e. when the descent
// direction −m points away from w's sign by more than τ. Returns the new code.
BILEVEL_HD inline float flip_code(float code, float m, float tau) { return m * code > tau ? -code : code; }

// Σ a_i b_i over n elements with eight partial sums, so the compiler vectorises the reduction (host loops: the
// learned scale's gradient Σ ∂ℓ/∂w · w per row).
inline float dot8(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

}  // namespace bilevel::qe
