// The packed-bit relaxation of bilevel/kernels/cpu/binary_relax.h (its header states the dynamics).
#include "bilevel/kernels/cpu/binary_relax.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "bilevel/kernels/cpu/int_gemm.h"
#include "clones.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace bilevel::cpu {

namespace {

// v[j] = drive[j] + Σ_o coef[o] W[o, j] for j < n (W row-major [m, n]; summed in the order of o).
BILEVEL_CLONES void feedback(float* v, const float* drive, const float* W, const float* coef, int64_t m, int64_t n) {
  constexpr int64_t kBlock = 64;  // a block of v stays in registers / L1 across the m rows
  for (int64_t j0 = 0; j0 < n; j0 += kBlock) {
    const int64_t len = std::min(kBlock, n - j0);
    float acc[kBlock];
    for (int64_t b = 0; b < len; ++b) acc[b] = drive[j0 + b];
    for (int64_t o = 0; o < m; ++o) {
      const float c = coef[o];
      const float* w = W + o * n + j0;
      for (int64_t b = 0; b < len; ++b) acc[b] += c * w[b];
    }
    for (int64_t b = 0; b < len; ++b) v[j0 + b] = acc[b];
  }
}

// Whether Q(h(v)) is the top level.
bool top_level(const BinaryRelaxProblem& p, float v) {
  apply_activation(p.act, p.lo, p.hi, &v, 1);
  uint64_t bit = 0;
  state_bits(&v, 1, 1, p.level, 1.0f / p.step, 0.0f, 1.0f, &bit, 1);
  return bit != 0;
}

// Floats in order as integers (−0 and +0 adjacent).
int64_t float_key(float x) {
  int32_t i;
  std::memcpy(&i, &x, 4);
  return i >= 0 ? int64_t(i) : -int64_t(i & 0x7fffffff) - 1;
}
float key_float(int64_t k) {
  const int32_t i = k >= 0 ? int32_t(k) : int32_t((-(k + 1)) | 0x80000000LL);
  float x;
  std::memcpy(&x, &i, 4);
  return x;
}

bool has_avx2() {
#if defined(__x86_64__)
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
#else
  return false;
#endif
}

// Bit conversions of one row, n values in ⌈n/64⌉ words (padding bits 0), eight lanes at a time with AVX2:
//   threshold_bits: bit j = [v[j] ≥ t];  level_bits: bit j = [s[j] == top], false if some s[j] is neither level;
//   unpack_levels: s[j] = bit j ? top : level.
#if defined(__x86_64__)
__attribute__((target("avx2"))) void threshold_bits_avx2(const float* v, int64_t n, float t, uint64_t* bits) {
  const __m256 tv = _mm256_set1_ps(t);
  for (int64_t w = 0; 64 * w < n; ++w) {
    uint64_t word = 0;
    const int64_t count = std::min<int64_t>(64, n - 64 * w);
    int64_t b = 0;
    for (; b + 8 <= count; b += 8)
      word |= uint64_t(uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(v + 64 * w + b), tv, _CMP_GE_OQ))))
              << b;
    for (; b < count; ++b) word |= uint64_t(v[64 * w + b] >= t) << b;
    bits[w] = word;
  }
}
__attribute__((target("avx2"))) bool level_bits_avx2(const float* s, int64_t n, float level, float top,
                                                     uint64_t* bits) {
  const __m256 lv = _mm256_set1_ps(level), tv = _mm256_set1_ps(top);
  bool ok = true;
  for (int64_t w = 0; 64 * w < n; ++w) {
    uint64_t word = 0;
    const int64_t count = std::min<int64_t>(64, n - 64 * w);
    int64_t b = 0;
    for (; b + 8 <= count; b += 8) {
      const __m256 x = _mm256_loadu_ps(s + 64 * w + b);
      const int on = _mm256_movemask_ps(_mm256_cmp_ps(x, tv, _CMP_EQ_OQ));
      ok &= (on | _mm256_movemask_ps(_mm256_cmp_ps(x, lv, _CMP_EQ_OQ))) == 0xff;
      word |= uint64_t(uint32_t(on)) << b;
    }
    for (; b < count; ++b) {
      const float x = s[64 * w + b];
      ok &= x == top || x == level;
      word |= uint64_t(x == top) << b;
    }
    bits[w] = word;
  }
  return ok;
}
__attribute__((target("avx2"))) void unpack_levels_avx2(const uint64_t* bits, int64_t n, float level, float top,
                                                        float* s) {
  const __m256 lv = _mm256_set1_ps(level), tv = _mm256_set1_ps(top);
  const __m256i lane = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    const int byte = int((bits[j / 64] >> (j % 64)) & 0xff);
    const __m256i m = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(byte), lane), lane);
    _mm256_storeu_ps(s + j, _mm256_blendv_ps(lv, tv, _mm256_castsi256_ps(m)));
  }
  for (; j < n; ++j) s[j] = (bits[j / 64] >> (j % 64)) & 1u ? top : level;
}
#endif

void threshold_bits(const float* v, int64_t n, float t, uint64_t* bits) {
#if defined(__x86_64__)
  if (has_avx2()) return threshold_bits_avx2(v, n, t, bits);
#endif
  for (int64_t w = 0; 64 * w < n; ++w) {
    uint64_t word = 0;
    for (int64_t b = 0; b < std::min<int64_t>(64, n - 64 * w); ++b) word |= uint64_t(v[64 * w + b] >= t) << b;
    bits[w] = word;
  }
}

// Packs a row of float states (each one of the two levels) into codes; std::invalid_argument for any other value.
void pack_levels(const float* s, int64_t n, float level, float step, uint64_t* bits, int64_t row) {
  const float top = level + step;
  bool ok = true;
#if defined(__x86_64__)
  if (has_avx2()) {
    ok = level_bits_avx2(s, n, level, top, bits);
  } else
#endif
  {
    for (int64_t w = 0; 64 * w < n; ++w) {
      uint64_t word = 0;
      for (int64_t b = 0; b < std::min<int64_t>(64, n - 64 * w); ++b) {
        const float x = s[64 * w + b];
        ok &= x == top || x == level;
        word |= uint64_t(x == top) << b;
      }
      bits[w] = word;
    }
  }
  if (ok) return;
  for (int64_t j = 0; j < n; ++j)
    if (!(s[j] == top || s[j] == level))
      throw std::invalid_argument("binary relaxation: hidden state (" + std::to_string(row) + ", " +
                                  std::to_string(j) + ") = " + std::to_string(s[j]) + " is neither level " +
                                  std::to_string(level) + " nor " + std::to_string(top));
}

void unpack_levels(const uint64_t* bits, int64_t n, float level, float step, float* s) {
  const float top = level + step;
#if defined(__x86_64__)
  if (has_avx2()) return unpack_levels_avx2(bits, n, level, top, s);
#endif
  for (int64_t j = 0; j < n; ++j) s[j] = (bits[j / 64] >> (j % 64)) & 1u ? top : level;
}

// The squared-error output's proximal point for total input u (kernels/cpu/binary_relax.h): ρ(z) with
// z + β(ρ(z) − y) = u, ρ(z) = h(a z + c).
float output_prox(const BinaryRelaxProblem& p, float u, float y) {
  const float beta = p.beta;
  if (p.act == Act::Identity || p.act == Act::Clamp) {
    float t = (u + beta * y) / (1.0f + beta);
    if (p.act == Act::Clamp) t = std::isinf(p.hi) ? std::max(t, p.lo) : std::min(std::max(t, p.lo), p.hi);
    return t;
  }
  const float eps = 8.0f * std::numeric_limits<float>::epsilon();
  float z = u, r = 0.0f;
  for (int it = 0; it < 30; ++it) {
    r = p.scale * z + p.shift;
    apply_activation(p.act, p.lo, p.hi, &r, 1);
    const float slope = p.act == Act::Sigmoid ? r * (1.0f - r) * p.scale : 1.0f - r * r;  // ρ'(z) from ρ(z)
    const float step = (z + beta * (r - y) - u) / (1.0f + beta * slope);
    z -= step;
    if (std::fabs(step) < eps * (1.0f + std::fabs(z))) break;
  }
  r = p.scale * z + p.shift;
  apply_activation(p.act, p.lo, p.hi, &r, 1);
  return r;
}

}  // namespace

float binary_state_threshold(const BinaryRelaxProblem& p) {
  const float big = std::numeric_limits<float>::max();
  if (top_level(p, -big)) return -std::numeric_limits<float>::infinity();
  if (!top_level(p, big)) return std::numeric_limits<float>::infinity();
  int64_t lo = float_key(-big), hi = float_key(big);  // top_level(lo) false, top_level(hi) true
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    (top_level(p, key_float(mid)) ? hi : lo) = mid;
  }
  return key_float(hi);
}

RelaxStats binary_relax_rows(const BinaryRelaxProblem& p, float* s1, float* s2, int64_t begin, int64_t end) {
  const int64_t n1 = p.hidden, n2 = p.outputs, words = binary_relax_words(n1);
  std::vector<uint64_t> cur(static_cast<size_t>(words)), nxt(static_cast<size_t>(words));
  std::vector<float> v1(static_cast<size_t>(n1)), coef(static_cast<size_t>(n2)), v2(static_cast<size_t>(n2)),
      out2(static_cast<size_t>(n2));
  std::vector<int32_t> dots(static_cast<size_t>(n2));
  const IntIsa isa = int_gemm_isa();
  const bool clamped = p.nudge == OutputNudge::Clamp, mse = p.nudge == OutputNudge::StateMse;
  const bool layerwise = p.schedule == BinarySchedule::OutputFirst;
  RelaxStats out;
  for (int64_t r = begin; r < end; ++r) {
    float* row1 = s1 + r * n1;
    float* row2 = s2 + r * n2;
    const float* drive = p.drive1 + r * n1;
    const float* y = p.onehot ? p.onehot + r * n2 : nullptr;
    pack_levels(row1, n1, p.level, p.step, cur.data(), r);
    float residual = 0.0f;
    bool settled = false;
    int64_t t = 1;
    for (; t <= p.max_steps; ++t) {
      // Hidden layer: v_1 = drive + Σ_o (a s_{2,o}) W_1[o, ·], then its codes as bits (into nxt).
      auto hidden = [&]() {
        for (int64_t o = 0; o < n2; ++o) coef[size_t(o)] = p.scale * row2[o];
        feedback(v1.data(), drive, p.weight, coef.data(), n2, n1);
        threshold_bits(v1.data(), n1, p.threshold, nxt.data());
      };
      // Output layer from the hidden bits `bits` (D_o = Σ_j q_{o,j}(2c_j − 1) by XNOR-popcount), into row2;
      // returns the largest change.
      auto output = [&](const uint64_t* bits) {
        float change = 0.0f;
        if (clamped) return change;
        xnor_popcount_rows(bits, p.weight_bits, dots.data(), 0, 1, n2, words, n1, isa);
        for (int64_t o = 0; o < n2; ++o) {
          const int32_t R = p.row_sum[o];
          const int32_t codes_dot = (dots[size_t(o)] + R) / 2;  // Σ_j q_{o,j} c_j (D_o + R_o is even)
          float v = p.vbias2[o] + p.row_scale[o] * (p.level * float(R) + p.step * float(codes_dot));
          if (mse && !layerwise) v += p.nudge_scale * (y[o] - row2[o]);
          v2[size_t(o)] = v;
        }
        if (mse && layerwise) {
          for (int64_t o = 0; o < n2; ++o) out2[size_t(o)] = output_prox(p, (v2[size_t(o)] - p.shift) / p.scale, y[o]);
        } else {
          std::copy(v2.begin(), v2.end(), out2.begin());
          apply_activation(p.act, p.lo, p.hi, out2.data(), n2);
        }
        for (int64_t o = 0; o < n2; ++o) {
          const float d = std::fabs(out2[size_t(o)] - row2[o]);
          change = (d != d || change != change) ? NAN : std::max(change, d);  // NaN stays NaN (never "settled")
          row2[o] = out2[size_t(o)];
        }
        return change;
      };
      float change;
      if (layerwise) {
        change = output(cur.data());
        hidden();
      } else {
        hidden();  // from the current output, before output() overwrites it
        change = output(cur.data());
      }
      bool flipped = false;
      for (int64_t w = 0; w < words; ++w) flipped |= cur[size_t(w)] != nxt[size_t(w)];
      if (flipped && !(change != change)) change = std::max(change, std::fabs(p.step));
      cur.swap(nxt);
      residual = change;
      if (change == 0.0f || (p.tol > 0.0f && change < p.tol)) {
        settled = true;
        break;
      }
    }
    const int64_t ran = std::min(t, p.max_steps);
    unpack_levels(cur.data(), n1, p.level, p.step, row1);
    if (p.row_steps) p.row_steps[r] = ran;
    out.residual = (residual != residual || out.residual != out.residual) ? NAN : std::max(out.residual, residual);
    out.steps = std::max(out.steps, ran);
    if (!settled) ++out.at_limit;
  }
  return out;
}

}  // namespace bilevel::cpu
