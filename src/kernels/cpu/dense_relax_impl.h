// The body of bilevel/kernels/cpu/dense_relax.h, compiled once per instruction set: dense_relax_avx2.cpp
// (-mavx2 -mfma, 8 lanes) and dense_relax_generic.cpp (1 lane). Included inside the namespace that names the
// instruction set; not a public header.
//
// The element-wise math is written once over a "lane" type V: float (1 lane) or, with AVX2, __m256 (8 lanes).
// Loops run 8 lanes while they can and the scalar lane for the tail, so both see the same formulas.
// The standard and intrinsic headers come from dense_relax_includes.h, included before the namespace opens.
#if defined(__AVX2__) && defined(__FMA__)
#define BILEVEL_LANES8 1
#endif

namespace lanes {

// ---- 1 lane
inline float set1(float x, float) { return x; }
inline float load(const float* p, float) { return *p; }
inline void store(float* p, float v) { *p = v; }
inline float add(float a, float b) { return a + b; }
inline float sub(float a, float b) { return a - b; }
inline float mul(float a, float b) { return a * b; }
inline float div(float a, float b) { return a / b; }
inline float reciprocal(float a) { return 1.0f / a; }
#ifdef __FMA__
inline float fma(float a, float b, float c) { return std::fma(a, b, c); }
#else
inline float fma(float a, float b, float c) { return a * b + c; }
#endif
inline float abs(float a) { return std::fabs(a); }
// max/min(bound, v): NaN in v passes through (as vmaxps/vminps with v second).
inline float max_nan(float bound, float v) { return v != v ? v : (bound > v ? bound : v); }
inline float min_nan(float bound, float v) { return v != v ? v : (bound < v ? bound : v); }
// 2^n from t = n + 1.5·2^23 (n integral in [−126, 127], held in t's low mantissa bits).
// Unsigned arithmetic: the shift drops t's exponent bits on purpose (a signed shift would overflow, UB in C++17).
inline float pow2_from_shifted(float t) {
  uint32_t bits;
  std::memcpy(&bits, &t, 4);
  bits = (bits + 127u) << 23;
  float r;
  std::memcpy(&r, &bits, 4);
  return r;
}
inline bool lt(float a, float b) { return a < b; }
inline float select(bool m, float a, float b) { return m ? a : b; }
inline float copysign(float mag, float sign) { return std::copysign(mag, sign); }
inline float hmax(float a) { return a; }

#ifdef BILEVEL_LANES8
// ---- 8 lanes
inline __m256 set1(float x, __m256) { return _mm256_set1_ps(x); }
inline __m256 load(const float* p, __m256) { return _mm256_loadu_ps(p); }
inline void store(float* p, __m256 v) { _mm256_storeu_ps(p, v); }
inline __m256 add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
inline __m256 sub(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }
inline __m256 mul(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
inline __m256 div(__m256 a, __m256 b) { return _mm256_div_ps(a, b); }
// 1/a from the 12-bit estimate and one Newton step (relative error about 2^-22); the divider is slower.
inline __m256 reciprocal(__m256 a) {
  __m256 r = _mm256_rcp_ps(a);
  return _mm256_mul_ps(r, _mm256_fnmadd_ps(a, r, _mm256_set1_ps(2.0f)));
}
inline __m256 fma(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
inline __m256 abs(__m256 a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
inline __m256 max_nan(__m256 bound, __m256 v) { return _mm256_max_ps(bound, v); }
inline __m256 min_nan(__m256 bound, __m256 v) { return _mm256_min_ps(bound, v); }
inline __m256 pow2_from_shifted(__m256 t) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127)), 23));
}
inline __m256 lt(__m256 a, __m256 b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
inline __m256 select(__m256 m, __m256 a, __m256 b) { return _mm256_blendv_ps(b, a, m); }
inline __m256 copysign(__m256 mag, __m256 sign) {
  const __m256 sbit = _mm256_set1_ps(-0.0f);
  return _mm256_or_ps(_mm256_andnot_ps(sbit, mag), _mm256_and_ps(sbit, sign));
}
inline float hmax(__m256 a) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
inline float hsum(__m256 a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
#endif

// e^{−v} for v in [−88, 87.33] (callers clamp). n = round(−v/ln 2) comes from one FMA against 1.5·2^23 (the
// rounded integer lands in the low mantissa bits, which also give 2^n); r = v + n ln 2 (Cody–Waite, two FMAs);
// e^{−v} = 2^n e^{−r}, e^{−r} by its Taylor polynomial to degree 7 in −r (|r| ≤ ln2/2, remainder < 6e-9).
template <class V>
inline V exp_neg_bounded(V v) {
  const V shifter = set1(12582912.0f, v);  // 1.5·2^23
  V t = fma(v, set1(-1.44269504f, v), shifter);
  V n = sub(t, shifter);
  V r = fma(n, set1(0.693359375f, v), v);
  r = fma(n, set1(-2.12194440e-4f, v), r);
  V p = set1(-1.0f / 5040.0f, v);
  p = fma(p, r, set1(1.0f / 720.0f, v));
  p = fma(p, r, set1(-1.0f / 120.0f, v));
  p = fma(p, r, set1(1.0f / 24.0f, v));
  p = fma(p, r, set1(-1.0f / 6.0f, v));
  p = fma(p, r, set1(0.5f, v));
  p = fma(p, r, set1(-1.0f, v));
  p = fma(p, r, set1(1.0f, v));
  return mul(p, pow2_from_shifted(t));
}

// 1/(1 + e^{−v}). e^{−v} is taken with v clamped to [−88, 87.33]: below, 1 + e^{−v} rounds to 1 anyway; above,
// σ(v) < 6e-39 and is returned as such or as 0. No cancellation anywhere, so the relative error stays a few ulps.
template <class V>
inline V sigmoid(V v) {
  V w = min_nan(set1(87.33654f, v), max_nan(set1(-88.0f, v), v));
  return reciprocal(add(set1(1.0f, v), exp_neg_bounded(w)));
}

template <class V>
inline V tanh(V v) {
  V a = abs(v);
  // e^{−2|v|}; beyond 2|v| = 87.33 it is below FLT_MIN and 1 ± e rounds to 1 anyway.
  V e = exp_neg_bounded(min_nan(set1(87.33654f, v), add(a, a)));
  V big = div(sub(set1(1.0f, v), e), add(set1(1.0f, v), e));
  // Near 0, 1 − e loses bits: tanh a = a − a³/3 + 2a⁵/15 − 17a⁷/315 + O(a⁹) (error < 1e-11 for a < 1/16).
  V a2 = mul(a, a);
  V q = fma(a2, set1(-17.0f / 315.0f, v), set1(2.0f / 15.0f, v));
  q = fma(q, a2, set1(-1.0f / 3.0f, v));
  V small = fma(mul(q, a2), a, a);
  return copysign(select(lt(a, set1(0.0625f, v)), small, big), v);
}

}  // namespace lanes

namespace {

using bilevel::cpu::Act;
using bilevel::cpu::DenseRelaxProblem;
using bilevel::cpu::OutputNudge;
using bilevel::cpu::RelaxStats;

template <Act A, class V>
inline V activate(V v, V lo, V hi) {
  if constexpr (A == Act::Identity) return v;
  if constexpr (A == Act::Clamp) return lanes::min_nan(hi, lanes::max_nan(lo, v));
  if constexpr (A == Act::Sigmoid) return lanes::sigmoid(v);
  if constexpr (A == Act::Tanh) return lanes::tanh(v);
  return v;
}

// out[i] = bias[i] + a Σ_j W[i, j] x[j], i < n_out (W row-major [n_out, n_in]).
inline void affine_rows(const float* W, const float* x, const float* bias, float a, int64_t n_out, int64_t n_in,
                        float* out) {
  int64_t i = 0;
#ifdef BILEVEL_LANES8
  // Four outputs at a time share each load of x.
  for (; i + 4 <= n_out; i += 4) {
    const float* w0 = W + i * n_in;
    const float *w1 = w0 + n_in, *w2 = w1 + n_in, *w3 = w2 + n_in;
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    int64_t j = 0;
    for (; j + 8 <= n_in; j += 8) {
      __m256 xv = _mm256_loadu_ps(x + j);
      c0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + j), xv, c0);
      c1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + j), xv, c1);
      c2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + j), xv, c2);
      c3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + j), xv, c3);
    }
    float d0 = lanes::hsum(c0), d1 = lanes::hsum(c1), d2 = lanes::hsum(c2), d3 = lanes::hsum(c3);
    for (; j < n_in; ++j) d0 += w0[j] * x[j], d1 += w1[j] * x[j], d2 += w2[j] * x[j], d3 += w3[j] * x[j];
    out[i] = bias[i] + a * d0, out[i + 1] = bias[i + 1] + a * d1;
    out[i + 2] = bias[i + 2] + a * d2, out[i + 3] = bias[i + 3] + a * d3;
  }
  for (; i < n_out; ++i) {
    // One output: four partial sums, so the FMAs do not wait on each other.
    const float* w = W + i * n_in;
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    int64_t j = 0;
    for (; j + 32 <= n_in; j += 32) {
      c0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), _mm256_loadu_ps(x + j), c0);
      c1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 8), _mm256_loadu_ps(x + j + 8), c1);
      c2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 16), _mm256_loadu_ps(x + j + 16), c2);
      c3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j + 24), _mm256_loadu_ps(x + j + 24), c3);
    }
    for (; j + 8 <= n_in; j += 8) c0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + j), _mm256_loadu_ps(x + j), c0);
    float d = lanes::hsum(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)));
    for (; j < n_in; ++j) d += w[j] * x[j];
    out[i] = bias[i] + a * d;
  }
#endif
  for (; i < n_out; ++i) {
    const float* w = W + i * n_in;
    float d = 0.0f;
    for (int64_t j = 0; j < n_in; ++j) d += w[j] * x[j];
    out[i] = bias[i] + a * d;
  }
}

// The sweep for layer k in two passes over lanes [i, i + width(V)), so that consecutive chunks are independent
// chains the core can overlap. Pass 1 writes v = base + Σ_j coef[j] M[j, ·] + Σ_c rcoef[c] R[c, ·]
// (+ mse_scale (target − cur)) to nxt; pass 2 replaces it by h(v) and returns |h(v) − cur|.
template <class V>
inline void accumulate_lanes(int64_t i, const float* base, const float* M, const float* coef, int64_t m, int64_t ld,
                             const float* R, const float* rcoef, int64_t C, const float* mse_target,
                             float mse_scale, const float* cur, float* nxt, V zero) {
  V acc = lanes::load(base + i, zero);
  for (int64_t j = 0; j < m; ++j) acc = lanes::fma(lanes::set1(coef[j], zero), lanes::load(M + j * ld + i, zero), acc);
  for (int64_t c = 0; c < C; ++c)
    acc = lanes::fma(lanes::set1(rcoef[c], zero), lanes::load(R + c * ld + i, zero), acc);
  if (mse_target)
    acc = lanes::fma(lanes::set1(mse_scale, zero),
                     lanes::sub(lanes::load(mse_target + i, zero), lanes::load(cur + i, zero)), acc);
  lanes::store(nxt + i, acc);
}

#ifdef BILEVEL_LANES8
// accumulate_lanes on four consecutive chunks (32 lanes) at once: four independent FMA chains share each
// broadcast coefficient.
inline void accumulate_lanes32(int64_t i, const float* base, const float* M, const float* coef, int64_t m,
                               int64_t ld, const float* R, const float* rcoef, int64_t C, const float* mse_target,
                               float mse_scale, const float* cur, float* nxt) {
  __m256 a0 = _mm256_loadu_ps(base + i), a1 = _mm256_loadu_ps(base + i + 8);
  __m256 a2 = _mm256_loadu_ps(base + i + 16), a3 = _mm256_loadu_ps(base + i + 24);
  auto add_rows = [&](const float* X, const float* cf, int64_t rows) {
    for (int64_t j = 0; j < rows; ++j) {
      const __m256 c = _mm256_set1_ps(cf[j]);
      const float* w = X + j * ld + i;
      a0 = _mm256_fmadd_ps(c, _mm256_loadu_ps(w), a0);
      a1 = _mm256_fmadd_ps(c, _mm256_loadu_ps(w + 8), a1);
      a2 = _mm256_fmadd_ps(c, _mm256_loadu_ps(w + 16), a2);
      a3 = _mm256_fmadd_ps(c, _mm256_loadu_ps(w + 24), a3);
    }
  };
  add_rows(M, coef, m);
  add_rows(R, rcoef, C);
  if (mse_target) {
    const __m256 c = _mm256_set1_ps(mse_scale);
    a0 = _mm256_fmadd_ps(c, _mm256_sub_ps(_mm256_loadu_ps(mse_target + i), _mm256_loadu_ps(cur + i)), a0);
    a1 = _mm256_fmadd_ps(c, _mm256_sub_ps(_mm256_loadu_ps(mse_target + i + 8), _mm256_loadu_ps(cur + i + 8)), a1);
    a2 = _mm256_fmadd_ps(c, _mm256_sub_ps(_mm256_loadu_ps(mse_target + i + 16), _mm256_loadu_ps(cur + i + 16)), a2);
    a3 = _mm256_fmadd_ps(c, _mm256_sub_ps(_mm256_loadu_ps(mse_target + i + 24), _mm256_loadu_ps(cur + i + 24)), a3);
  }
  _mm256_storeu_ps(nxt + i, a0), _mm256_storeu_ps(nxt + i + 8, a1);
  _mm256_storeu_ps(nxt + i + 16, a2), _mm256_storeu_ps(nxt + i + 24, a3);
}
#endif

template <Act A, class V>
inline V activate_lanes(int64_t i, const float* cur, float* nxt, V lo, V hi) {
  V s = activate<A>(lanes::load(nxt + i, lo), lo, hi);
  lanes::store(nxt + i, s);
  return lanes::abs(lanes::sub(s, lanes::load(cur + i, lo)));
}

template <Act A>
RelaxStats relax_rows(const DenseRelaxProblem& p, float* const* state, float* const* scratch, int64_t begin,
                      int64_t end) {
  const int64_t S = int64_t(p.width.size());
  int64_t widest = 0;
  for (auto n : p.width) widest = std::max(widest, n);
  std::vector<float> base(static_cast<size_t>(widest)), coef(static_cast<size_t>(widest));
  std::vector<float> rcoef(static_cast<size_t>(std::max<int64_t>(p.classes, 1)));
  std::vector<float*> cur(S);
  std::vector<float*> nxt(S);
  RelaxStats out;
  const float a = p.scale;
  const float lo_s = p.lo, hi_s = p.hi;
  for (int64_t r = begin; r < end; ++r) {
    for (int64_t k = 0; k < S; ++k) cur[k] = state[k] + r * p.width[k], nxt[k] = scratch[k] + r * p.width[k];
    const float* onehot = p.onehot ? p.onehot + r * p.classes : nullptr;
    float residual = 0.0f;
    bool settled = false;
    int64_t t = 1;
    for (; t <= p.max_steps; ++t) {
      // The change is measured at every sweep: a sweep that changes no state of the row has reached an exact
      // fixed point of the float32 dynamics, and every further sweep would return the same bits, so the row
      // stops there with the result of running all max_steps sweeps.
      float change = 0.0f;
      for (int64_t k = 1; k <= S; ++k) {
        const int64_t n = p.width[k - 1];
        if (k == S && p.nudge == OutputNudge::Clamp) continue;
        // base: the drive from below.
        const float* b;
        if (k == 1) {
          b = p.drive1 + r * n;
        } else {
          affine_rows(p.weight[k - 2], cur[k - 2], p.vbias[k - 1], a, n, p.width[k - 2], base.data());
          b = base.data();
        }
        // Feedback from above: a W_kᵀ s_{k+1} as Σ_j (a s_{k+1,j}) W_k[j, ·].
        const float* M = nullptr;
        int64_t m = 0;
        if (k < S) {
          M = p.weight[k - 1], m = p.width[k];
          for (int64_t j = 0; j < m; ++j) coef[j] = a * cur[k][j];
        }
        const float* R = nullptr;
        int64_t C = 0;
        const float* mse_target = nullptr;
        if (k == S && p.nudge == OutputNudge::StateMse) mse_target = onehot;
        if (k == S && p.nudge == OutputNudge::ReadoutCrossEntropy) {
          // −aβ W_rᵀ (softmax(W_r s_S + b_r) − onehot)
          C = p.classes, R = p.readout;
          affine_rows(p.readout, cur[S - 1], p.readout_bias, 1.0f, C, n, rcoef.data());
          float mx = -std::numeric_limits<float>::infinity();
          for (int64_t c = 0; c < C; ++c) mx = std::max(mx, rcoef[c]);
          float z = 0.0f;
          for (int64_t c = 0; c < C; ++c) z += (rcoef[c] = std::exp(rcoef[c] - mx));
          for (int64_t c = 0; c < C; ++c) rcoef[c] = -p.nudge_scale * (rcoef[c] / z - onehot[c]);
        }
        float* out = nxt[k - 1];
        const float* old = cur[k - 1];
        int64_t i = 0;
#ifdef BILEVEL_LANES8
        const __m256 zero8 = _mm256_setzero_ps();
        for (; i + 32 <= n; i += 32)
          accumulate_lanes32(i, b, M, coef.data(), m, n, R, rcoef.data(), C, mse_target, p.nudge_scale, old, out);
        for (; i + 8 <= n; i += 8)
          accumulate_lanes(i, b, M, coef.data(), m, n, R, rcoef.data(), C, mse_target, p.nudge_scale, old, out, zero8);
#endif
        for (; i < n; ++i)
          accumulate_lanes(i, b, M, coef.data(), m, n, R, rcoef.data(), C, mse_target, p.nudge_scale, old, out, 0.0f);
        i = 0;
        float ch = 0.0f;
#ifdef BILEVEL_LANES8
        const __m256 lo8 = _mm256_set1_ps(lo_s), hi8 = _mm256_set1_ps(hi_s);
        __m256 ch8 = _mm256_setzero_ps();
        for (; i + 8 <= n; i += 8) ch8 = _mm256_max_ps(ch8, activate_lanes<A>(i, old, out, lo8, hi8));
        ch = lanes::hmax(ch8);
#endif
        for (; i < n; ++i) ch = std::max(ch, activate_lanes<A>(i, old, out, lo_s, hi_s));
        change = std::max(change, ch);
      }
      for (int64_t k = 0; k < S; ++k) {
        if (k == S - 1 && p.nudge == OutputNudge::Clamp) continue;
        std::swap(cur[k], nxt[k]);
      }
      residual = change;
      if (change == 0.0f || (p.tol > 0.0f && change < p.tol)) {
        settled = true;
        break;
      }
    }
    // Rows whose last sweep landed in the scratch buffers are copied home.
    for (int64_t k = 0; k < S; ++k) {
      float* home = state[k] + r * p.width[k];
      if (cur[k] != home) std::memcpy(home, cur[k], size_t(p.width[k]) * sizeof(float));
    }
    out.residual = std::max(out.residual, residual);
    out.steps = std::max(out.steps, std::min(t, p.max_steps));
    if (!settled) ++out.at_limit;
    if (p.row_steps) p.row_steps[r] = std::min(t, p.max_steps);
  }
  return out;
}

}  // namespace

RelaxStats dense_relax_rows(const DenseRelaxProblem& p, float* const* state, float* const* scratch, int64_t begin,
                            int64_t end) {
  switch (p.act) {
    case Act::Identity: return relax_rows<Act::Identity>(p, state, scratch, begin, end);
    case Act::Clamp: return relax_rows<Act::Clamp>(p, state, scratch, begin, end);
    case Act::Sigmoid: return relax_rows<Act::Sigmoid>(p, state, scratch, begin, end);
    case Act::Tanh: return relax_rows<Act::Tanh>(p, state, scratch, begin, end);
  }
  return {};
}

void apply_activation(Act act, float lo, float hi, float* v, int64_t n) {
  auto run = [&](auto tag) {
    constexpr Act A = decltype(tag)::value;
    int64_t i = 0;
#ifdef BILEVEL_LANES8
    const __m256 lo8 = _mm256_set1_ps(lo), hi8 = _mm256_set1_ps(hi);
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, activate<A>(_mm256_loadu_ps(v + i), lo8, hi8));
#endif
    for (; i < n; ++i) v[i] = activate<A>(v[i], lo, hi);
  };
  switch (act) {
    case Act::Identity: return;
    case Act::Clamp: return run(std::integral_constant<Act, Act::Clamp>{});
    case Act::Sigmoid: return run(std::integral_constant<Act, Act::Sigmoid>{});
    case Act::Tanh: return run(std::integral_constant<Act, Act::Tanh>{});
  }
}

// Folds a row's maximum (with its NaN flag) into a running per-row maximum that keeps NaN.
inline void fold_change(float ch, bool nan, float& into) {
  if (nan) ch = std::numeric_limits<float>::quiet_NaN();
  if (into == into && !(ch <= into)) into = ch;
}

void finish_rows(Act act, float lo, float hi, float* v, const float* old, int64_t rows, int64_t n, float* change,
                 const float* older, float* change_older) {
  auto run = [&](auto tag) {
    constexpr Act A = decltype(tag)::value;
    for (int64_t r = 0; r < rows; ++r) {
      float* vr = v + r * n;
      const float* orow = old + r * n;
      const float* o2 = older ? older + r * n : nullptr;
      float ch = 0.0f, ch2 = 0.0f;
      bool nan = false, nan2 = false;
      int64_t i = 0;
#ifdef BILEVEL_LANES8
      const __m256 lo8 = _mm256_set1_ps(lo), hi8 = _mm256_set1_ps(hi);
      __m256 ch8 = _mm256_setzero_ps(), nan8 = _mm256_setzero_ps();
      __m256 c28 = _mm256_setzero_ps(), n28 = _mm256_setzero_ps();
      for (; i + 8 <= n; i += 8) {
        const __m256 d = activate_lanes<A>(i, orow, vr, lo8, hi8);
        ch8 = _mm256_max_ps(ch8, d);
        nan8 = _mm256_or_ps(nan8, _mm256_cmp_ps(d, d, _CMP_UNORD_Q));
        if (o2) {
          const __m256 d2 = lanes::abs(_mm256_sub_ps(_mm256_loadu_ps(vr + i), _mm256_loadu_ps(o2 + i)));
          c28 = _mm256_max_ps(c28, d2);
          n28 = _mm256_or_ps(n28, _mm256_cmp_ps(d2, d2, _CMP_UNORD_Q));
        }
      }
      ch = lanes::hmax(ch8);
      nan = _mm256_movemask_ps(nan8) != 0;
      ch2 = lanes::hmax(c28);
      nan2 = _mm256_movemask_ps(n28) != 0;
#endif
      for (; i < n; ++i) {
        const float d = activate_lanes<A>(i, orow, vr, lo, hi);
        if (d != d) nan = true;
        ch = std::max(ch, d);
        if (o2) {
          const float d2 = std::fabs(vr[i] - o2[i]);
          if (d2 != d2) nan2 = true;
          ch2 = std::max(ch2, d2);
        }
      }
      fold_change(ch, nan, change[r]);
      if (o2) fold_change(ch2, nan2, change_older[r]);
    }
  };
  switch (act) {
    case Act::Identity: return run(std::integral_constant<Act, Act::Identity>{});
    case Act::Clamp: return run(std::integral_constant<Act, Act::Clamp>{});
    case Act::Sigmoid: return run(std::integral_constant<Act, Act::Sigmoid>{});
    case Act::Tanh: return run(std::integral_constant<Act, Act::Tanh>{});
  }
}

#undef BILEVEL_LANES8
