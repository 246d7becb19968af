// Uniform k-bit quantizer, symmetric (q ∈ [−2^{k−1}, 2^{k−1} − 1], s = 2·mean|θ|/√Q_P) or asymmetric (q ∈ [0, 2^k − 1],
// min/max fit with a zero point); see bilevel/quant/quantizer.h.
#include <cmath>

#include "bilevel/kernels/quant_element.h"
#include "bilevel/quant/quantizers.h"

namespace bilevel {

class UniformQuantizer final : public Quantizer {
 public:
  using Quantizer::Quantizer;
  std::string name() const override { return "uniform"; }
  int storage_bits() const override { return opt_.bits; }
  float code_min() const override { return opt_.symmetric ? -std::ldexp(1.f, opt_.bits - 1) : 0.f; }
  float code_max() const override {
    return opt_.symmetric ? std::ldexp(1.f, opt_.bits - 1) - 1.f : std::ldexp(1.f, opt_.bits) - 1.f;
  }
  GridParams fit(const torch::Tensor& theta) const override {
    if (opt_.symmetric) return {mean_abs(theta) * (2.0 / std::sqrt(double(code_max()))), torch::Tensor()};
    torch::Tensor t = theta.detach();
    torch::Tensor flat = opt_.per_channel ? t.reshape({t.size(0), -1}) : t.reshape({1, -1});
    torch::Tensor lo = std::get<0>(flat.min(1)).clamp_max(0), hi = std::get<0>(flat.max(1)).clamp_min(0);
    torch::Tensor s = ((hi - lo) / code_max()).clamp_min(1e-8);
    return {s, torch::round(-lo / s)};
  }

  float code(float x) const override { return qe::uniform_code(x, code_min(), code_max()); }
  float code_stochastic(float x, float u) const override {
    return qe::uniform_code_stochastic(x, code_min(), code_max(), u);
  }
};

std::unique_ptr<Quantizer> make_uniform_quantizer(const QuantizerOptions& o) { return std::make_unique<UniformQuantizer>(o); }

}  // namespace bilevel
