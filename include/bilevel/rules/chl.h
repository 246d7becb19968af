// Contrastive Hebbian learning (Movellan 1991, "Contrastive Hebbian learning in the continuous Hopfield model";
// Xie & Seung 2003 for its relation to backprop): a free phase s^0 = argmin_s E(s), then a clamped phase s^c with
// the output state fixed to the target, s_S = onehot(y), relaxed from s^0 for solver.nudged_steps sweeps. The
// gradient estimate (batch mean, descent direction) is
//
//   g = ∂E/∂θ(s^c) − ∂E/∂θ(s^0)     i.e.  ΔW_l ∝ −g = Σ_b (s^c_{l+1} s^cᵀ_l − s^0_{l+1} s^0ᵀ_l)
//
// ("Hebbian in the clamped phase, anti-Hebbian in the free phase"). It is EP with β → ∞ and no 1/β, so it is not
// an unbiased gradient of ℓ; train.beta is not used. Needs train.loss: mse (the output must be a state to clamp).
#pragma once

#include "bilevel/rules/energy_rule.h"

namespace bilevel {

class ContrastiveHebbian final : public EnergyRule {
 public:
  ContrastiveHebbian(std::unique_ptr<Objective> objective, EnergyRuleOptions options);
  std::string name() const override { return "chl"; }
  StepStats train_step(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) override;
  std::vector<std::string> diagnostic_columns() const override;

 private:
  EnergyState clamped_;
};

}  // namespace bilevel
