// Config keys of quantization-aware training (quantization.*; see bilevel/quant/quantization.h). Conditions across
// keys (a solver's quantizers, bits per quantizer, which rules serve activation quantization) are checked by
// validate_quantization() in src/quant/quantization.cpp.
#include "bilevel/config/schema.h"

namespace bilevel {

void add_quant_keys(Schema& s) {
  using V = ValueType;
  s.key("quantization.enabled", V::Bool, "false",
      "Train with quantized weights / activations (false: the full-precision twin of the same config)");
  auto& wq = s.key("quantization.weights.quantizer", V::String, "binary",
      "Weight grid: binary (sign·scale, 1 bit), ternary ({-1,0,1}·scale, 2 bits), uniform (k bits), a registered "
      "quantizer, or none");
  wq.choices = {"none"};  // after the registered quantizers (SchemaExtension, src/registry.cpp)
  auto& wb = s.key("quantization.weights.bits", V::Int, "1", "Bits per weight: binary 1, ternary 2, uniform 2..8");
  wb.min = 1, wb.max = 8;
  s.key("quantization.weights.solver", V::String, "ste",
      "How the gradient passes through the weights' quantization: ste, adaste (binary), proxquant, mirror, "
      "lsq (uniform, learned step), flip (binary, no latent weights)");  // choices: the registered solvers
  s.key("quantization.weights.granularity", V::String, "per_tensor", "One scale per layer, or per output channel")
      .choices = {"per_tensor", "per_channel"};
  s.key("quantization.weights.symmetric", V::Bool, "true", "uniform: symmetric grid (else asymmetric with a zero point)");
  s.key("quantization.weights.rounding", V::String, "deterministic",
      "stochastic: unbiased stochastic rounding during training, drawn from (seed, epoch, batch, layer)")
      .choices = {"deterministic", "stochastic"};
  s.key("quantization.weights.learn_scale", V::Bool, "false",
      "Learn each layer's (or channel's) scale with the optimizer, ∂ℓ/∂s = Σ ∂ℓ/∂w · w/s (else fixed at its fit to "
      "the initial weights; lsq always learns its step)");
  s.key("quantization.weights.full_precision_layers", V::IntList, "[]",
      "Layers (1 = input side) whose weights stay in full precision").min = 1;
  s.key("quantization.activations.quantizer", V::String, "none",
      "Hidden-layer outputs: none, binary (ρ's two ends), uniform (k bits over ρ's range, or a learned step)")
      .choices = {"none", "binary", "uniform"};
  auto& ab = s.key("quantization.activations.bits", V::Int, "1", "Bits per activation: binary 1, uniform 2..8");
  ab.min = 1, ab.max = 8;
  s.key("quantization.activations.solver", V::String, "ste",
      "ste: fixed grid on ρ's range, straight-through backward; lsq: learned step per layer (backprop only)")
      .choices = {"ste", "lsq"};
  s.key("quantization.activations.rounding", V::String, "deterministic", "stochastic: stochastic rounding in training")
      .choices = {"deterministic", "stochastic"};
  s.key("quantization.activations.full_precision_layers", V::IntList, "[]",
      "Hidden layers (1 = first) whose outputs stay in full precision").min = 1;
}

}  // namespace bilevel
