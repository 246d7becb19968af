// Backpropagation through time of the free phase (Almeida 1987 / Pineda 1987 in its recurrent-backprop form;
// the BPTT baseline of Ernoult et al. 2019, "Updates of equilibrium prop match gradients of backprop through
// time in an RNN with static input"). The free phase is unrolled for T = solver.free_steps sweeps of the same
// dynamics the solver runs (synchronous for solver.name: fixed_point, even-then-odd for layerwise), from zero
// states, with LibTorch's autograd recording through the parameters:
//
//   s^{t+1} = F(s^t; θ, x),   g = d ℓ(s^T, y) / dθ     (batch mean; exact gradient of the truncated unroll)
//
// As T → ∞ on a contracting F, g → dℓ(s*(θ), y)/dθ (the implicit-function-theorem gradient). solver.tol stops
// the unroll early when the residual (measured outside the graph) falls below it.
#pragma once

#include "bilevel/rules/energy_rule.h"

namespace bilevel {

class BackpropThroughTime final : public EnergyRule {
 public:
  BackpropThroughTime(std::unique_ptr<Objective> objective, EnergyRuleOptions options);
  std::string name() const override { return "bptt"; }
  StepStats train_step(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) override;
  std::vector<std::string> diagnostic_columns() const override;
};

}  // namespace bilevel
