// The energy-based family's rules and their keys: ep, ep_symmetric, chl, bptt, implicit. Each factory reads the
// shared EnergyRuleOptions and validates the cross-key conditions of its rule through cfg.fail.
#include <cmath>

#include "bilevel/rules/bptt.h"
#include "bilevel/rules/chl.h"
#include "bilevel/rules/ep.h"
#include "bilevel/rules/implicit.h"
#include "bilevel/rules/registry.h"

namespace bilevel {
namespace {

void require_nonzero_beta(const ExperimentConfig& cfg) {
  const double beta = cfg.get<double>("rule.beta");
  if (beta == 0.0 || !std::isfinite(beta))
    cfg.fail("rule.beta", cfg.rule.name +
                              " estimates the gradient as a finite difference over the nudging strength, so β must "
                              "be a nonzero number (e.g. 0.1)");
}

KeySpec beta_key(const std::string& help) { return component_key("beta", ValueType::Float, "0.1", help); }

}  // namespace

void add_energy_rules(Registry<LearningRule>& rules) {
  using V = ValueType;
  rules.add({"ep", "equilibrium propagation, one-sided β (Scellier & Bengio 2017)",
             {beta_key("nudging strength β of the nudged phase (its sign is used unless rule.random_sign; nonzero)"),
              component_key("random_sign", V::Bool, "false",
                            "draw β's sign per batch from a hash of (seed, the batch's labels), so resuming "
                            "reproduces it")}},
            [](const ExperimentConfig& cfg) -> std::unique_ptr<LearningRule> {
              auto opt = EnergyRuleOptions::from_config(cfg);
              require_nonzero_beta(cfg);
              return std::make_unique<EquilibriumPropagation>(objective_for(cfg), opt,
                                                              EquilibriumPropagation::Estimator::OneSided);
            },
            {kRuleQuantizedStates});
  rules.add({"ep_symmetric", "equilibrium propagation, symmetric ±β estimate (Laborieux et al. 2021)",
             {beta_key("nudging strength; the estimate uses ±|β| (nonzero)")}},
            [](const ExperimentConfig& cfg) -> std::unique_ptr<LearningRule> {
              auto opt = EnergyRuleOptions::from_config(cfg);
              require_nonzero_beta(cfg);
              return std::make_unique<EquilibriumPropagation>(objective_for(cfg), opt,
                                                              EquilibriumPropagation::Estimator::Symmetric);
            },
            {kRuleQuantizedStates});
  rules.add({"chl", "contrastive Hebbian learning: clamped minus free phase (Movellan 1991)", {}},
            [](const ExperimentConfig& cfg) -> std::unique_ptr<LearningRule> {
              auto opt = EnergyRuleOptions::from_config(cfg);
              if (cfg.train.loss != "mse")
                cfg.fail("train.loss", "chl clamps the output state to the one-hot target, so it needs mse "
                                       "(with cross_entropy the output is a read-out, not a state)");
              return std::make_unique<ContrastiveHebbian>(objective_for(cfg), opt);
            },
            {kRuleQuantizedStates});
  rules.add({"bptt", "backprop through the unrolled free phase of the energy model (autograd)", {}},
            [](const ExperimentConfig& cfg) -> std::unique_ptr<LearningRule> {
              auto opt = EnergyRuleOptions::from_config(cfg);
              return std::make_unique<BackpropThroughTime>(objective_for(cfg), opt);
            },
            {kRuleUnrollsFromZero});
  auto method = component_key("linear_solver", V::String, "minres",
                              "how to solve (I − ∂F/∂s)ᵀ v = ∂ℓ/∂s at the fixed point (cg needs it positive definite)");
  method.choices = {"minres", "cg", "fixed_point"};
  auto steps = component_key("linear_steps", V::Int, "100", "maximum iterations of the linear solve");
  steps.min = 1;
  auto tol = component_key("linear_tol", V::Float, "1e-8", "relative tolerance of the linear solve");
  tol.min = 0;
  rules.add({"implicit", "implicit differentiation at the free fixed point (recurrent backprop)", {method, steps, tol}},
            [](const ExperimentConfig& cfg) -> std::unique_ptr<LearningRule> {
              auto opt = EnergyRuleOptions::from_config(cfg);
              return std::make_unique<ImplicitDifferentiation>(objective_for(cfg), opt);
            });
}

}  // namespace bilevel
