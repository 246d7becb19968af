// Binary quantizer: q = sign(θ) ∈ {−1, +1}, s = mean|θ| (see bilevel/quant/quantizer.h).
#include "bilevel/kernels/quant_element.h"
#include "bilevel/quant/quantizers.h"

namespace bilevel {

class BinaryQuantizer final : public Quantizer {
 public:
  using Quantizer::Quantizer;
  std::string name() const override { return "binary"; }
  int storage_bits() const override { return 1; }
  float code_min() const override { return -1.f; }
  float code_max() const override { return 1.f; }
  GridParams fit(const torch::Tensor& theta) const override { return {mean_abs(theta), torch::Tensor()}; }

  float code(float x) const override { return qe::binary_code(x); }
  float code_stochastic(float x, float u) const override { return qe::binary_code_stochastic(x, u); }
};

std::unique_ptr<Quantizer> make_binary_quantizer(const QuantizerOptions& o) { return std::make_unique<BinaryQuantizer>(o); }

}  // namespace bilevel
