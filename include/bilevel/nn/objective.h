// Outer losses ℓ(s_L, y) on the network's output s_L, with their gradients ∂ℓ/∂s_L in closed form.
//   mse:            ℓ = ½ ‖s_L − onehot(y)‖²                       ∂ℓ/∂s_L = s_L − onehot(y)
//   cross_entropy:  ℓ = −log softmax(s_L)_y   (s_L are logits)      ∂ℓ/∂s_L = softmax(s_L) − onehot(y)
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>

namespace bilevel {

class Objective {
 public:
  virtual ~Objective() = default;
  virtual std::string name() const = 0;
  // Per-example loss, [B].
  virtual torch::Tensor loss(const torch::Tensor& output, const torch::Tensor& labels) const = 0;
  // ∂ℓ/∂output per example (not averaged), [B, classes].
  virtual torch::Tensor grad(const torch::Tensor& output, const torch::Tensor& labels) const = 0;
  // Whether the network's output layer carries ρ (states) or not (logits).
  virtual bool activate_output() const = 0;
};

// "mse" or "cross_entropy"; throws std::invalid_argument otherwise.
std::unique_ptr<Objective> make_objective(const std::string& name);

}  // namespace bilevel
