// Backpropagation (Rumelhart, Hinton & Williams 1986) through the feedforward pass of a LayeredNet: the baseline
// every other rule is compared against. In the bilevel view the inner problem is solved exactly by one forward
// pass, s_l = ρ(z_l), and the outer gradient is the chain rule: dℓ/dW_l = δ_l s_{l−1}ᵀ with
// δ_L = ∂ℓ/∂z_L and δ_l = ρ'(z_l) ⊙ W_{l+1}ᵀ δ_{l+1}. LibTorch's autograd computes it.
#pragma once

#include "bilevel/rules/learning_rule.h"

namespace bilevel {

class Backprop final : public LearningRule {
 public:
  explicit Backprop(std::unique_ptr<Objective> objective) : LearningRule(std::move(objective)) {}
  std::string name() const override { return "backprop"; }
  StepStats train_step(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) override;
  torch::Tensor predict(LayeredNet& net, const torch::Tensor& x) override;
};

}  // namespace bilevel
