// Registry entries of the energy-based family: ep, ep_symmetric, chl, bptt, implicit. Each factory reads the
// shared EnergyRuleOptions and validates the cross-key conditions of its rule through cfg.fail.
#include <cmath>

#include "bilevel/rules/bptt.h"
#include "bilevel/rules/chl.h"
#include "bilevel/rules/ep.h"
#include "bilevel/rules/implicit.h"
#include "bilevel/rules/registry.h"

namespace bilevel {
namespace {

std::unique_ptr<Objective> objective_for(const ExperimentConfig& cfg) {
  try {
    return make_objective(cfg.train.loss);
  } catch (const std::invalid_argument& e) {
    cfg.fail("train.loss", e.what());
  }
}

void require_nonzero_beta(const ExperimentConfig& cfg) {
  const double beta = cfg.get<double>("train.beta");
  if (beta == 0.0 || !std::isfinite(beta))
    cfg.fail("train.beta", cfg.train.algorithm +
                               " estimates the gradient as a finite difference over the nudging strength, so β must "
                               "be a nonzero number (e.g. 0.1)");
}

}  // namespace

void add_energy_rules(std::vector<RuleEntry>& rules) {
  rules.push_back({"ep", "equilibrium propagation, one-sided β (Scellier & Bengio 2017)",
                   [](const ExperimentConfig& cfg) -> std::unique_ptr<LearningRule> {
                     auto opt = EnergyRuleOptions::from_config(cfg);
                     require_nonzero_beta(cfg);
                     return std::make_unique<EquilibriumPropagation>(objective_for(cfg), opt,
                                                                     EquilibriumPropagation::Estimator::OneSided);
                   }});
  rules.push_back({"ep_symmetric", "equilibrium propagation, symmetric ±β estimate (Laborieux et al. 2021)",
                   [](const ExperimentConfig& cfg) -> std::unique_ptr<LearningRule> {
                     auto opt = EnergyRuleOptions::from_config(cfg);
                     require_nonzero_beta(cfg);
                     if (opt.random_sign)
                       cfg.fail("train.random_sign", "applies to ep only; ep_symmetric always uses both signs");
                     return std::make_unique<EquilibriumPropagation>(objective_for(cfg), opt,
                                                                     EquilibriumPropagation::Estimator::Symmetric);
                   }});
  rules.push_back({"chl", "contrastive Hebbian learning: clamped minus free phase (Movellan 1991)",
                   [](const ExperimentConfig& cfg) -> std::unique_ptr<LearningRule> {
                     auto opt = EnergyRuleOptions::from_config(cfg);
                     if (cfg.train.loss != "mse")
                       cfg.fail("train.loss", "chl clamps the output state to the one-hot target, so it needs mse "
                                              "(with cross_entropy the output is a read-out, not a state)");
                     return std::make_unique<ContrastiveHebbian>(objective_for(cfg), opt);
                   }});
  rules.push_back({"bptt", "backprop through the unrolled free phase of the energy model (autograd)",
                   [](const ExperimentConfig& cfg) -> std::unique_ptr<LearningRule> {
                     auto opt = EnergyRuleOptions::from_config(cfg);
                     return std::make_unique<BackpropThroughTime>(objective_for(cfg), opt);
                   }});
  rules.push_back({"implicit", "implicit differentiation at the free fixed point (recurrent backprop)",
                   [](const ExperimentConfig& cfg) -> std::unique_ptr<LearningRule> {
                     auto opt = EnergyRuleOptions::from_config(cfg);
                     return std::make_unique<ImplicitDifferentiation>(objective_for(cfg), opt);
                   }});
}

}  // namespace bilevel
