// Ternary quantizer (TWN): q = sign(θ)·[|θ| > 0.7·s] ∈ {−1, 0, +1}, s = mean|θ| (see bilevel/quant/quantizer.h).
#include "bilevel/kernels/quant_element.h"
#include "bilevel/quant/quantizers.h"

namespace bilevel {

class TernaryQuantizer final : public Quantizer {
 public:
  using Quantizer::Quantizer;
  std::string name() const override { return "ternary"; }
  int storage_bits() const override { return 2; }
  float code_min() const override { return -1.f; }
  float code_max() const override { return 1.f; }
  GridParams fit(const torch::Tensor& theta) const override { return {mean_abs(theta), torch::Tensor()}; }

  float code(float x) const override { return qe::ternary_code(x, kTernaryThreshold); }
  float code_stochastic(float x, float u) const override { return qe::ternary_code_stochastic(x, u); }
};

std::unique_ptr<Quantizer> make_ternary_quantizer(const QuantizerOptions& o) { return std::make_unique<TernaryQuantizer>(o); }

}  // namespace bilevel
