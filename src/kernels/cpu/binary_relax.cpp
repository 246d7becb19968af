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

namespace bilevel::cpu {

namespace {

// v[j] += Σ_o coef[o] W[o, j] for j < n (W row-major [m, n]).
BILEVEL_CLONES void add_rows(float* v, const float* W, const float* coef, int64_t m, int64_t n) {
  for (int64_t o = 0; o < m; ++o) {
    const float c = coef[o];
    const float* w = W + o * n;
    for (int64_t j = 0; j < n; ++j) v[j] += c * w[j];
  }
}

// Packs a row of float states (each one of the two levels) into codes: bit j = [s_j == level + step].
void pack_levels(const float* s, int64_t n, float level, float step, uint64_t* bits, int64_t words, int64_t row) {
  const float top = level + step;
  std::fill(bits, bits + words, uint64_t{0});
  for (int64_t j = 0; j < n; ++j) {
    if (s[j] == top) {
      bits[j / 64] |= uint64_t{1} << (j % 64);
    } else if (!(s[j] == level)) {
      throw std::invalid_argument("binary relaxation: hidden state (" + std::to_string(row) + ", " +
                                  std::to_string(j) + ") = " + std::to_string(s[j]) + " is neither level " +
                                  std::to_string(level) + " nor " + std::to_string(top));
    }
  }
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

RelaxStats binary_relax_rows(const BinaryRelaxProblem& p, float* s1, float* s2, int64_t begin, int64_t end) {
  const int64_t n1 = p.hidden, n2 = p.outputs, words = binary_relax_words(n1);
  std::vector<uint64_t> cur(static_cast<size_t>(words)), nxt(static_cast<size_t>(words));
  std::vector<float> v1(static_cast<size_t>(n1)), coef(static_cast<size_t>(n2)), v2(static_cast<size_t>(n2)),
      out2(static_cast<size_t>(n2));
  std::vector<int32_t> dots(static_cast<size_t>(n2));
  const float inv_step = 1.0f / p.step;
  const bool clamped = p.nudge == OutputNudge::Clamp, mse = p.nudge == OutputNudge::StateMse;
  const bool layerwise = p.schedule == BinarySchedule::OutputFirst;
  RelaxStats out;
  for (int64_t r = begin; r < end; ++r) {
    float* row1 = s1 + r * n1;
    float* row2 = s2 + r * n2;
    const float* drive = p.drive1 + r * n1;
    const float* y = p.onehot ? p.onehot + r * n2 : nullptr;
    pack_levels(row1, n1, p.level, p.step, cur.data(), words, r);
    float residual = 0.0f;
    bool settled = false;
    int64_t t = 1;
    for (; t <= p.max_steps; ++t) {
      // Hidden layer: v_1 = drive + Σ_o (a s_{2,o}) W_1[o, ·], then its codes as bits (into nxt).
      auto hidden = [&]() {
        std::memcpy(v1.data(), drive, sizeof(float) * size_t(n1));
        for (int64_t o = 0; o < n2; ++o) coef[size_t(o)] = p.scale * row2[o];
        add_rows(v1.data(), p.weight, coef.data(), n2, n1);
        apply_activation(p.act, p.lo, p.hi, v1.data(), n1);
        state_bits(v1.data(), 1, n1, p.level, inv_step, 0.0f, 1.0f, nxt.data(), words);
      };
      // Output layer from the hidden bits `bits` (D_o = Σ_j q_{o,j}(2c_j − 1) by XNOR-popcount), into row2;
      // returns the largest change.
      auto output = [&](const uint64_t* bits) {
        float change = 0.0f;
        if (clamped) return change;
        xnor_popcount_gemm(bits, p.weight_bits, dots.data(), 1, n2, words, n1);
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
    for (int64_t j = 0; j < n1; ++j)
      row1[j] = (cur[size_t(j / 64)] >> (j % 64)) & 1u ? p.level + p.step : p.level;
    if (p.row_steps) p.row_steps[r] = ran;
    out.residual = (residual != residual || out.residual != out.residual) ? NAN : std::max(out.residual, residual);
    out.steps = std::max(out.steps, ran);
    if (!settled) ++out.at_limit;
  }
  return out;
}

}  // namespace bilevel::cpu
