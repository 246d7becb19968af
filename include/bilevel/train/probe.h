// Gradient alignment on a fixed probe batch: how close a rule's gradient estimate g is to a reference rule's
// gradient r (e.g. `implicit`, the exact gradient at the fixed point, or `backprop`), per layer and overall:
//   cosine(g, r) = ⟨g, r⟩ / (‖g‖ ‖r‖),   relative error = ‖g − r‖ / ‖r‖,   norm ratio = ‖g‖ / ‖r‖.
// Neither rule's step changes the parameters (only their .grad()). For quantized weights, g and r may instead be the
// latent-weight gradients ∂ℓ/∂θ that two solvers' backward passes make of the rules' ∂ℓ/∂w (train.probe_solver):
// an estimator's alignment with another, e.g. AdaSTE's with the straight-through direction.
#pragma once

#include <string>
#include <vector>

#include "bilevel/quant/quantization.h"
#include "bilevel/rules/learning_rule.h"

namespace bilevel {

struct LayerAlignment {
  double cosine = 0, relative_error = 0, norm_ratio = 0;
};

struct Alignment {
  LayerAlignment overall;
  std::vector<LayerAlignment> layers;
};

// The parameters' gradients after rule.train_step on (x, y), flattened per layer (weight then bias).
std::vector<torch::Tensor> layer_gradients(LearningRule& rule, LayeredNet& net, const torch::Tensor& x,
                                           const torch::Tensor& y);

Alignment compare_gradients(const std::vector<torch::Tensor>& estimate, const std::vector<torch::Tensor>& reference);

// metrics.csv column names for an alignment of `layers` layers.
std::vector<std::string> alignment_columns(size_t layers);

// layer_gradients' per-layer [∂ℓ/∂W, ∂ℓ/∂b] with each quantized layer's ∂ℓ/∂W replaced by the latent gradient
// ∂ℓ/∂θ that `solver`'s backward makes of it at `clock` (QuantizationImpl::latent_gradients); layers without a
// latent keep ∂ℓ/∂W.
std::vector<torch::Tensor> latent_layer_gradients(const LayeredNetImpl& net, const QuantizationImpl& quant,
                                                  const WeightSolver& solver, const std::vector<torch::Tensor>& layers,
                                                  const QuantClock& clock);
std::vector<double> alignment_values(const Alignment& a);

}  // namespace bilevel
