// The learning rules' registry (bilevel/registry.h: rules()): names in YAML (rule.name) → factories, each rule with
// its own keys (rule.KEY). A factory validates its hyperparameters and throws ConfigError (through
// ExperimentConfig::fail) before anything runs. The built-in families register through the public add(), as a
// user's rule does.
#pragma once

#include "bilevel/registry.h"
#include "bilevel/rules/learning_rule.h"

namespace bilevel {

// Each family registers its rules (called on first use of rules(); see src/rules/registry.cpp).
void add_backprop_rules(Registry<LearningRule>& rules);
void add_energy_rules(Registry<LearningRule>& rules);  // ep, ep_symmetric, chl, bptt, implicit
void add_dual_rules(Registry<LearningRule>& rules);    // dual_prop

// The objective named by train.loss; a ConfigError naming train.loss when there is none.
std::unique_ptr<Objective> objective_for(const ExperimentConfig& cfg);

}  // namespace bilevel
