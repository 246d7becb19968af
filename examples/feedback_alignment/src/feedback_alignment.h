// Feedback alignment and direct feedback alignment: two learning rules from the literature, written outside the
// bilevel library against its installed package, registered with their own keys (bilevel/registry.h).
//
// On a multilayer perceptron with z_l = W_l s_{l-1} + b_l, s_l = ρ(z_l) (l < L) and the output error
// e = ∂ℓ/∂s_L · ρ_out'(z_L) averaged over the batch, both replace backprop's transported weights Wᵀ by fixed random
// matrices drawn once from (rule.feedback_seed, rule.feedback_scale):
//   backprop  δ_L = e,   δ_l = (δ_{l+1} W_{l+1}) ⊙ ρ'(z_l)
//   fa        δ_L = e,   δ_l = (δ_{l+1} B_{l+1}) ⊙ ρ'(z_l)        B_{l+1} shaped like W_{l+1}
//             (Lillicrap, Cownden, Tweed & Akerman 2016, "Random synaptic feedback weights support error
//             backpropagation for deep learning", Nat. Commun. 7:13276)
//   dfa       δ_L = e,   δ_l = (e D_l) ⊙ ρ'(z_l)                    D_l: [classes, width of layer l]
//             (Nøkland 2016, "Direct feedback alignment provides learning in deep neural networks", NeurIPS;
//             the rule optical hardware runs: Launay et al. 2020)
// and every layer's gradient is ∂W_l = δ_lᵀ s_{l-1}, ∂b_l = Σ_batch δ_l. With B_{l+1} = W_{l+1} (fa), or one hidden
// layer and D_1 = W_2 (dfa), both equal backprop exactly (the tests check it). Entries of B and D are uniform with
// variance feedback_scale² / fan_in(the layer they feed from), from a portable generator, so a resumed run
// regenerates the same matrices from the config alone.
#pragma once

#include <bilevel/rules/learning_rule.h>

#include <cstdint>
#include <vector>

namespace fa {

class FeedbackAlignment : public bilevel::LearningRule {
 public:
  enum class Kind { Fa, Dfa };
  FeedbackAlignment(std::unique_ptr<bilevel::Objective> objective, Kind kind, uint64_t seed, double scale);
  std::string name() const override { return kind_ == Kind::Fa ? "fa" : "dfa"; }
  bilevel::StepStats train_step(bilevel::LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) override;
  torch::Tensor predict(bilevel::LayeredNet& net, const torch::Tensor& x) override;
  std::vector<std::string> diagnostic_columns() const override { return {"feedback_alignment_deg"}; }

  // The feedback matrices (drawn on the first step): fa: B_l for l = 1..L−1 (B_l shaped like W_l), dfa: D_l for
  // the hidden layers l = 0..L−2. set_feedback replaces them (tests).
  const std::vector<torch::Tensor>& feedback(const bilevel::LayeredNet& net);
  void set_feedback(std::vector<torch::Tensor> f) { feedback_ = std::move(f); }

 private:
  Kind kind_;
  uint64_t seed_;
  double scale_;
  std::vector<torch::Tensor> feedback_;
};

// Registers "fa" and "dfa" in bilevel::rules() with their keys rule.feedback_seed and rule.feedback_scale.
// Call once, before bilevel::run_cli or loading a config.
void register_rules();

}  // namespace fa
