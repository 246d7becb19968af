// Dual propagation (DP): every neuron is a dyad with two compartments s⁺, s⁻ that are nudged in opposite
// directions in ONE inference phase; their weighted mean carries the activity, their difference the error.
//
//   R. Høier, D. Staudt, C. Zach, "Dual propagation: accelerating contrastive Hebbian learning with dyadic
//     neurons", ICML 2023 (PMLR 202; arXiv:2302.01228) — the method, α = ½.
//   R. Høier, C. Zach, "Two tales of single-phase contrastive Hebbian learning", ICML 2024 (PMLR 235;
//     arXiv:2402.08573) — the Lagrangian ("adjoint state") derivation, called DP⊤ there, whose inference stays
//     stable for asymmetric nudging α ∈ {0, 1}, where the 2023 formulation is not.
//
// What is implemented is the 2024 paper's DP⊤ form (the authors' code calls it "dualprop-lagr-ff"). With
// ᾱ = 1 − α, s̄_k = α s⁺_k + ᾱ s⁻_k, δ_k = s⁺_k − s⁻_k, s̄_0 = x, and A_l, b_l layer l's linear map and bias
// (matmul, or maxpool(conv2d) — see bilevel/nn/layered_net.h), for a network with L layers:
//
//   hidden layers k = 1..L−1:  u_k = A_{k−1}(s̄_{k−1}) + b_{k−1},   f_k = A_kᵀ δ_{k+1}
//                              s⁺_k = ρ(u_k + ᾱ f_k),   s⁻_k = ρ(u_k − α f_k)
//   output layer:              u_L as above,  a = ρ_out(u_L),  f_L = −β ∇ℓ(a, y)
//                              s⁺_L = ρ_out(u_L + ᾱ f_L),   s⁻_L = ρ_out(u_L − α f_L)
//   weights:                   the gradient of  J = −(1/β) Σ_{l=0..L−1} ⟨δ_{l+1}, A_l(s̄_l) + b_l⟩  (batch mean):
//                              ∂J/∂W_l = −(1/β) ∂/∂W_l ⟨δ_{l+1}, A_l(s̄_l)⟩ (= −(1/β) δ_{l+1} s̄_lᵀ for a matmul),
//                              ∂J/∂b_l = −(1/β) δ_{l+1}.
//
// The hidden-layer rule is the 2024 paper's DP⊤ (Høier & Zach 2024). The 2023 formulation (in the authors'
// code: s⁺ = ρ(u + α f), s⁻ = ρ(u − ᾱ f), s⁺_L = a − αβ∇ℓ, s⁻_L = a + ᾱβ∇ℓ) swaps α and ᾱ in the feedback
// terms; the two coincide at α = ½, and only DP⊤ keeps α ∈ {0, 1} stable, so DP⊤ is what is implemented. Output layer: with logits (cross_entropy, ρ_out = identity) it is exactly the
// papers' s⁺_L = a − ᾱβ∇ℓ(a), s⁻_L = a + αβ∇ℓ(a), a = u_L. With state outputs (mse, the network applies ρ to its
// last layer, LayeredNet::activate_output()) the papers' "a − ᾱβ∇ℓ(a)" taken in state space would drop the factor
// ρ'(u_L) that backprop has; here the output dyad is treated like every other dyad, with the linearised loss
// −β∇ℓ(a) as its feedback, so δ_L → −β ρ'(u_L) ⊙ ∇ℓ(a) as β → 0 and the estimate matches backprop's gradient.
// For ρ_out = identity, δ_L = f_L is formed directly (exactly equal to s⁺_L − s⁻_L, without its cancellation).
//
// As β → 0: δ_k = −β ∂ℓ/∂u_k + O(β²) (O(β³) for α = ½), so −(1/β) δ_{l+1} s̄_lᵀ → backprop's ∂ℓ/∂W_l. Sign:
// ∂J/∂θ is the descent direction's negative, i.e. it is written into grad() like any loss gradient.
//
// Inference (train.dp_inference):
//   closed_form  One feedforward pass (s⁺ = s⁻ = s, keeping u_k = z_k and the max-pool switches), then ONE
//                top-down sweep k = L..1 of the rule above with u_k = z_k (below layer k nothing has moved yet),
//                the weight gradient of layer l taken as soon as δ_{l+1} and s̄_l are known. One forward and
//                one backward sweep per batch, no relaxation loop, no autograd. This is the papers' layer-wise
//                closed-form inference initialised by a forward pass (2023 paper).
//   iterative    N = train.dp_iterations bottom-up passes k = 1..L of the same layer rule, each recomputing
//                u_k from the current s̄_{k−1} and the feedback from the previous pass' δ_{k+1} (the authors'
//                "fwK" schedule), starting from the feedforward pass; the output's ∇ℓ is taken at the current
//                a = ρ_out(u_L) (the authors' code keeps the feedforward output there; same in the closed form). The nudge descends one layer per pass.
//                For α ∈ {0, 1} the un-nudged compartment IS the feedforward state (s̄ never moves), so the
//                closed form is the exact fixed point and N ≥ L passes reproduce it bit for bit. For α = ½ the
//                passes converge to the coupled fixed point of the equations, where s̄ has moved by O(β²)
//                (ρ'' ≠ 0, or units whose |u| < |f|/2 for piecewise-linear ρ), so the closed form agrees with it
//                to relative O(β²) — both are consistent gradient estimators.
//
// Conv + max-pool: A_l uses the max-pool switches of the feedforward pass (closed form) or of the latest
// application of A_l (iterative), for A_l, its adjoint A_lᵀ and ∂/∂W_l alike — the papers' treatment of pooling
// (the switches of the forward pass). The layer maps are nn/layer_maps.h's (forward_into, feedback_add,
// param_grad_add), built from the network alone. Nothing here differentiates through autograd.
//
// predict() is the feedforward pass (s⁺ = s⁻ = s without a target). StepStats come from the feedforward pass.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "bilevel/rules/learning_rule.h"

namespace bilevel {

struct DualPropOptions {
  enum class Inference { ClosedForm, Iterative };
  double alpha = 0.5;  // weight of s⁺ in s̄; 0 and 1 are the asymmetric cases, ½ the original method
  double beta = 0.1;   // nudging strength, > 0
  Inference inference = Inference::ClosedForm;
  int64_t iterations = 1;  // passes of the iterative inference

  // Reads train.alpha, train.beta, train.dp_inference, train.dp_iterations; throws ConfigError naming the key
  // for an invalid value (β ≤ 0 or not finite, α outside [0, 1]).
  static DualPropOptions from_config(const ExperimentConfig& cfg);
};

// The dyadic states after inference, for analysis and tests. Index k − 1 holds layer k's state (k = 1..L).
// Where ρ (or, at the output, ρ_out) is the identity, s⁺ and s⁻ are not formed: δ = f and s̄ = u exactly.
struct DualStates {
  std::vector<torch::Tensor> delta;  // δ_k = s⁺_k − s⁻_k
  std::vector<torch::Tensor> sbar;   // s̄_k = α s⁺_k + ᾱ s⁻_k
  torch::Tensor output;              // the feedforward output s_L (logits or states)
};

class DualPropagation final : public LearningRule {
 public:
  DualPropagation(std::unique_ptr<Objective> objective, DualPropOptions options);
  std::string name() const override { return "dual_prop"; }
  StepStats train_step(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) override;
  torch::Tensor predict(LayeredNet& net, const torch::Tensor& x) override;
  const DualPropOptions& options() const { return opt_; }

  // Runs the configured inference for (x, y) and returns the states, without touching any gradient.
  DualStates infer(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y);

 private:
  // Inference; when accumulate_grads, also adds the batch-mean ∂J/∂θ into the parameters' grad().
  DualStates run(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y, bool accumulate_grads);
  DualPropOptions opt_;
};

}  // namespace bilevel
