#include "bilevel/quant/integer_model.h"

#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>

#include "bilevel/kernels/cpu/int_gemm.h"
#include "bilevel/nn/activation.h"
#include "bilevel/kernels/quant_element.h"
#include "bilevel/util/error.h"

namespace bilevel {
namespace {

// A layer's input for a batch: integer codes (value e + d·c), ±1 bits (value m + h·(±1)), or floats.
struct Activations {
  enum class Kind { Codes, Bits, Float } kind = Kind::Float;
  std::vector<int16_t> codes;
  std::vector<uint64_t> bits;
  std::vector<float> values;
  float offset = 0, step = 1;  // Codes
  float mid = 0, half = 1;     // Bits
  int64_t per_example = 0;     // values per example
  int64_t words = 0;           // Bits: words per example

  float value(int64_t i) const {
    if (kind == Kind::Codes) return offset + step * float(codes[size_t(i)]);
    if (kind == Kind::Float) return values[size_t(i)];
    const int64_t n = i / per_example, k = i % per_example;
    const bool one = (bits[size_t(n * words + k / 64)] >> (k % 64)) & 1u;
    return mid + (one ? half : -half);
  }
};

int64_t product(const std::vector<int64_t>& v) {
  int64_t n = 1;
  for (auto x : v) n *= x;
  return n;
}

std::vector<float> as_float(const Activations& a, int64_t N) {
  if (a.kind == Activations::Kind::Float) return a.values;
  std::vector<float> v(size_t(N * a.per_example));
  for (int64_t i = 0; i < N * a.per_example; ++i) v[size_t(i)] = a.value(i);
  return v;
}

Activations to_codes(const Activations& a, int64_t N) {
  if (a.kind != Activations::Kind::Bits) return a;
  Activations c;
  c.kind = Activations::Kind::Codes;
  c.per_example = a.per_example;
  c.offset = a.mid - a.half, c.step = 2 * a.half;
  c.codes.resize(size_t(N * a.per_example));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < a.per_example; ++k)
      c.codes[size_t(n * a.per_example + k)] = int16_t((a.bits[size_t(n * a.words + k / 64)] >> (k % 64)) & 1u);
  return c;
}

// im2col of one example's [C, H, W] (zero padding) into [P, C·k·k] rows.
template <class T>
void im2col(const T* x, int64_t C, int64_t H, int64_t W, int64_t k, int64_t pad, T* cols) {
  const int64_t Ho = H + 2 * pad - k + 1, Wo = W + 2 * pad - k + 1, K = C * k * k;
  for (int64_t oy = 0; oy < Ho; ++oy)
    for (int64_t ox = 0; ox < Wo; ++ox) {
      T* row = cols + (oy * Wo + ox) * K;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t ky = 0; ky < k; ++ky)
          for (int64_t kx = 0; kx < k; ++kx) {
            const int64_t y = oy + ky - pad, xx = ox + kx - pad;
            *row++ = (y >= 0 && y < H && xx >= 0 && xx < W) ? x[(c * H + y) * W + xx] : T(0);
          }
    }
}

}  // namespace

IntegerModel::IntegerModel(ExportedModel model) : m_(std::move(model)) {
  for (const auto& L : m_.layers) {
    const auto& w = L.weight;
    Prepared p;
    const int64_t O = w.rows(), K = w.row_length();
    if (w.encoding == "float32") {
      p.values = w.values;
    } else {
      p.codes.resize(size_t(O * K));
      p.code_sum.assign(size_t(O), 0);
      for (int64_t o = 0; o < O; ++o)
        for (int64_t k = 0; k < K; ++k) {
          const int32_t q = w.code(o, k);
          p.codes[size_t(o * K + k)] = int16_t(q);
          p.code_sum[size_t(o)] += q;
        }
      p.values.resize(size_t(O * K));
      for (int64_t o = 0; o < O; ++o) {
        const float s = w.scale[w.scale.size() > 1 ? size_t(o) : 0];
        const float z = w.zero.empty() ? 0.f : w.zero[w.zero.size() > 1 ? size_t(o) : 0];
        for (int64_t k = 0; k < K; ++k) p.values[size_t(o * K + k)] = s * (float(p.codes[size_t(o * K + k)]) - z);
      }
      if (w.encoding == "binary") p.sign_sum = p.code_sum;
      const auto [lo, hi] = std::minmax_element(p.codes.begin(), p.codes.end());
      if (lo != p.codes.end() && *lo >= -128 && *hi <= 127) {
        p.codes8.assign(p.codes.begin(), p.codes.end());
        p.codes8_max_abs = std::max(-int(*lo), int(*hi));
      }
    }
    prep_.push_back(std::move(p));
  }
}

std::vector<std::string> IntegerModel::describe() const {
  std::vector<std::string> out;
  bool binary_in = false;
  for (size_t l = 0; l < m_.layers.size(); ++l) {
    const auto& L = m_.layers[l];
    std::string how;
    if (L.weight.encoding == "float32") how = "float product (full-precision weights)";
    else if (L.weight.encoding == "binary" && binary_in && L.kind == "linear") how = "XNOR-popcount (binary × binary)";
    else how = "int16 codes, int32 accumulation (" + L.weight.encoding + " weights)";
    out.push_back("layer " + std::to_string(l + 1) + " " + L.kind + ": " + how);
    binary_in = m_.activation.quantizes(l) && m_.activation.bits == 1;
  }
  return out;
}

std::vector<float> IntegerModel::forward(const float* images, int64_t N) const {
  Activations in;
  in.kind = Activations::Kind::Codes;
  in.per_example = product(m_.input_shape);
  in.offset = 0, in.step = m_.input_step;
  in.codes.resize(size_t(N * in.per_example));
  const float inv_step = 1.f / m_.input_step;
  bool ok = true;
  for (int64_t i = 0; i < N * in.per_example; ++i) {
    const float c = images[i] * inv_step;
    const int32_t r = int32_t(c + 0.5f);
    ok &= c > -0.5f && c < 32767.f && std::fabs(c - float(r)) < 1e-3f;
    in.codes[size_t(i)] = int16_t(r);
  }
  if (!ok)
    for (int64_t i = 0; i < N * in.per_example; ++i) {
      const float c = images[i] * inv_step;
      if (!(c > -0.5f && c < 32767.f && std::fabs(c - std::round(c)) < 1e-3f))
        throw UserError("the integer model takes 8-bit images (value k·" + std::to_string(m_.input_step) +
                        "); input " + std::to_string(i) + " is " + std::to_string(images[i]));
    }
  const Activation& rho = activation(m_.activation.rho);
  const size_t L = m_.layers.size();
  std::vector<float> z;
  for (size_t l = 0; l < L; ++l) {
    const ExportedLayer& layer = m_.layers[l];
    const PackedWeights& w = layer.weight;
    const Prepared& p = prep_[l];
    const int64_t O = w.rows(), K = w.row_length();
    auto scale = [&](int64_t o) { return w.scale.empty() ? 1.f : w.scale[w.scale.size() > 1 ? size_t(o) : 0]; };
    auto zero = [&](int64_t o) { return w.zero.empty() ? 0.f : w.zero[w.zero.size() > 1 ? size_t(o) : 0]; };
    const bool integer_weights = w.encoding != "float32";
    if (layer.kind == "linear") {
      z.assign(size_t(N * O), 0.f);
      if (integer_weights && w.encoding == "binary" && in.kind == Activations::Kind::Bits) {
        std::vector<int32_t> dot(size_t(N * O));
        cpu::xnor_popcount_gemm(in.bits.data(), w.words.data(), dot.data(), N, O, in.words, K);
        std::vector<float> so(static_cast<size_t>(O)), mo(static_cast<size_t>(O));
        for (int64_t o = 0; o < O; ++o) so[size_t(o)] = scale(o), mo[size_t(o)] = in.mid * float(p.sign_sum[size_t(o)]);
        for (int64_t n = 0; n < N; ++n)
          for (int64_t o = 0; o < O; ++o)
            z[size_t(n * O + o)] = so[size_t(o)] * (mo[size_t(o)] + in.half * float(dot[size_t(n * O + o)])) + layer.bias[size_t(o)];
      } else if (integer_weights && in.kind != Activations::Kind::Float) {
        const Activations c = to_codes(in, N);
        std::vector<int32_t> acc(size_t(N * O));
        const bool bytes = !p.codes8.empty() && cpu::u8s8_gemm_fast(p.codes8_max_abs) &&
                           std::all_of(c.codes.begin(), c.codes.end(), [](int16_t v) { return v >= 0 && v <= 255; });
        if (bytes) {
          std::vector<uint8_t> a8(c.codes.begin(), c.codes.end());
          cpu::u8s8_gemm(a8.data(), p.codes8.data(), acc.data(), N, O, K, p.codes8_max_abs);
        } else {
          cpu::int16_gemm(c.codes.data(), p.codes.data(), acc.data(), N, O, K);
        }
        // Per output: s_o, z_o and the offset term e·(Σ_k q_ok − K z_o), computed once.
        std::vector<float> so(static_cast<size_t>(O)), zo(static_cast<size_t>(O)), eo(static_cast<size_t>(O));
        for (int64_t o = 0; o < O; ++o)
          so[size_t(o)] = scale(o), zo[size_t(o)] = zero(o),
          eo[size_t(o)] = c.offset * (float(p.code_sum[size_t(o)]) - zero(o) * float(K));
        for (int64_t n = 0; n < N; ++n) {
          int64_t csum = 0;
          for (int64_t k = 0; k < K; ++k) csum += c.codes[size_t(n * K + k)];
          const int32_t* an = acc.data() + n * O;
          float* zn = z.data() + n * O;
          for (int64_t o = 0; o < O; ++o)
            zn[o] = so[size_t(o)] * (c.step * (float(an[o]) - zo[size_t(o)] * float(csum)) + eo[size_t(o)]) + layer.bias[size_t(o)];
        }
      } else {
        std::vector<float> x = as_float(in, N);
        torch::Tensor X = torch::from_blob(x.data(), {N, K});
        torch::Tensor Wt = torch::from_blob(const_cast<float*>(p.values.data()), {O, K});
        torch::Tensor B = torch::from_blob(const_cast<float*>(layer.bias.data()), {O});
        torch::Tensor Z = torch::addmm(B, X, Wt.t()).contiguous();
        std::copy(Z.data_ptr<float>(), Z.data_ptr<float>() + N * O, z.begin());
      }
    } else {  // conv: im2col, products, bias, then max-pool
      const int64_t C = layer.in_shape[0], H = layer.in_shape[1], W = layer.in_shape[2], k = w.shape[2];
      const int64_t Ho = H + 2 * layer.padding - k + 1, Wo = W + 2 * layer.padding - k + 1, P = Ho * Wo;
      std::vector<float> conv(size_t(N * O * P));
      const bool integer = integer_weights && in.kind != Activations::Kind::Float &&
                           (in.kind == Activations::Kind::Codes ? in.offset == 0.f : in.mid - in.half == 0.f);
      if (integer) {
        const Activations c = to_codes(in, N);
        std::vector<int16_t> cols(size_t(P * K));
        std::vector<int32_t> acc(size_t(P * O));
        for (int64_t n = 0; n < N; ++n) {
          im2col(c.codes.data() + n * C * H * W, C, H, W, k, layer.padding, cols.data());
          cpu::int16_gemm(cols.data(), p.codes.data(), acc.data(), P, O, K);
          for (int64_t q = 0; q < P; ++q) {
            int64_t csum = 0;
            for (int64_t j = 0; j < K; ++j) csum += cols[size_t(q * K + j)];
            for (int64_t o = 0; o < O; ++o)
              conv[size_t((n * O + o) * P + q)] =
                  float(scale(o) * c.step * (double(acc[size_t(q * O + o)]) - double(zero(o)) * double(csum))) +
                  layer.bias[size_t(o)];
          }
        }
      } else {
        std::vector<float> x = as_float(in, N);
        std::vector<float> cols(size_t(P * K));
        torch::Tensor Wt = torch::from_blob(const_cast<float*>(p.values.data()), {O, K});
        for (int64_t n = 0; n < N; ++n) {
          im2col(x.data() + n * C * H * W, C, H, W, k, layer.padding, cols.data());
          torch::Tensor Z = torch::mm(Wt, torch::from_blob(cols.data(), {P, K}).t()).contiguous();
          const float* zp = Z.data_ptr<float>();
          for (int64_t o = 0; o < O; ++o)
            for (int64_t q = 0; q < P; ++q) conv[size_t((n * O + o) * P + q)] = zp[o * P + q] + layer.bias[size_t(o)];
        }
      }
      const int64_t pool = layer.pool, Hp = Ho / pool, Wp = Wo / pool;
      z.assign(size_t(N * O * Hp * Wp), 0.f);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o)
          for (int64_t y = 0; y < Hp; ++y)
            for (int64_t x = 0; x < Wp; ++x) {
              float best = -INFINITY;
              for (int64_t dy = 0; dy < pool; ++dy)
                for (int64_t dx = 0; dx < pool; ++dx)
                  best = std::max(best, conv[size_t((n * O + o) * P + (y * pool + dy) * Wo + x * pool + dx)]);
              z[size_t(((n * O + o) * Hp + y) * Wp + x)] = best;
            }
    }
    const int64_t per = int64_t(z.size()) / N;
    const bool last = l + 1 == L;
    if (last && !m_.activate_output) break;
    torch::Tensor v = rho.f(torch::from_blob(z.data(), {N, per})).contiguous();
    const float* vp = v.data_ptr<float>();
    if (last) {
      std::copy(vp, vp + N * per, z.begin());
      break;
    }
    Activations next;
    next.per_example = per;
    const auto& a = m_.activation;
    if (!a.quantizes(l)) {
      next.kind = Activations::Kind::Float;
      next.values.assign(vp, vp + N * per);
    } else {
      const float step = a.steps[l], off = a.offset;
      const bool bits = a.bits == 1 && m_.layers[l + 1].weight.encoding == "binary" && m_.layers[l + 1].kind == "linear";
      if (bits) {
        // Bit k = [code == code_max]: one pass from the activations to the packed words.
        next.kind = Activations::Kind::Bits;
        next.words = (per + 63) / 64;
        next.bits.resize(size_t(N * next.words));
        next.mid = off + 0.5f * step * (a.code_min + a.code_max), next.half = 0.5f * step * (a.code_max - a.code_min);
        cpu::state_bits(vp, N, per, off, 1.f / step, a.code_min, a.code_max, next.bits.data(), next.words);
      } else {
        next.kind = Activations::Kind::Codes;
        next.offset = off, next.step = step;
        next.codes.resize(size_t(N * per));
        cpu::state_codes(vp, N * per, off, 1.f / step, a.code_min, a.code_max, next.codes.data());
      }
    }
    in = std::move(next);
  }
  return z;
}

}  // namespace bilevel
