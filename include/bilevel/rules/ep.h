// Equilibrium propagation (Scellier & Bengio 2017, "Equilibrium propagation: bridging the gap between
// energy-based models and backpropagation"), one-sided (`ep`) and symmetric (`ep_symmetric`, Laborieux et al.
// 2021, "Scaling equilibrium propagation to deep ConvNets by drastically reducing its gradient estimator bias").
//
// Bilevel view (Zach 2021): θ minimises ℓ(s*(θ), y) with s*(θ) = argmin_s E(s; θ, x) (layered_energy.h).
// With s^β = argmin_s E(s) + β ℓ(s, y) (the nudged phase, relaxed from s^0 = s* for solver.nudged_steps sweeps):
//
//   ep:            g = ( ∂E/∂θ(s^β) − ∂E/∂θ(s^0) ) / β           = dℓ(s*(θ), y)/dθ + O(β)
//   ep_symmetric:  g = ( ∂E/∂θ(s^{+β}) − ∂E/∂θ(s^{−β}) ) / (2β)   = dℓ(s*(θ), y)/dθ + O(β²)
//
// with ∂E/∂W_l = −Σ_b s_{l+1} s_lᵀ (conv: the conv weight gradient through the max-pool switches), ∂E/∂b_l =
// −Σ_b s_{l+1}, averaged over the batch. The input layer's difference is one matmul: −(s_1^β − s_1^0)ᵀ x / β.
// Both nudged phases of ep_symmetric start from the free equilibrium and use |β|.
//
// cross_entropy: the read-out (W_r, b_r) is outside the energy; its gradient is the exact ∂ℓ/∂(W_r, b_r) at the
// free equilibrium (the β → 0 limit of EP's estimate for it).
//
// train.random_sign (ep only): β's sign flips per batch (Laborieux et al. 2021 §2.3: the sign of the O(β) bias
// flips with it, so it averages out). The sign is a hash of (seed, the batch's labels): a pure function of the
// data the rule receives, so resuming from a checkpoint reproduces it exactly with no rule state to save.
//
// Diagnostics: free_residual, free_steps, nudged_residual (max over the nudged phases), nudged_steps (summed
// over them: 2K for ep_symmetric); residuals as defined in bilevel/energy/inner_solver.h.
#pragma once

#include "bilevel/rules/energy_rule.h"

namespace bilevel {

class EquilibriumPropagation final : public EnergyRule {
 public:
  enum class Estimator { OneSided, Symmetric };
  EquilibriumPropagation(std::unique_ptr<Objective> objective, EnergyRuleOptions options, Estimator estimator);

  std::string name() const override { return estimator_ == Estimator::OneSided ? "ep" : "ep_symmetric"; }
  StepStats train_step(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) override;
  std::vector<std::string> diagnostic_columns() const override;
  // The β used for a batch with labels y (sign-resolved when train.random_sign).
  double batch_beta(const torch::Tensor& y) const;

 private:
  bool cancels_free_drift() const override { return estimator_ == Estimator::Symmetric; }
  Estimator estimator_;
  EnergyState nudged_, nudged_neg_;
};

}  // namespace bilevel
