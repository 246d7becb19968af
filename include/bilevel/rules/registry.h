// Names in YAML (train.algorithm) → learning-rule factories. A factory validates its own hyperparameters and
// throws ConfigError (through ExperimentConfig::fail) before anything runs.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "bilevel/rules/learning_rule.h"

namespace bilevel {

struct RuleEntry {
  std::string name;
  std::string help;  // one line for `--help`
  std::function<std::unique_ptr<LearningRule>(const ExperimentConfig&)> make;
};

const std::vector<RuleEntry>& rule_registry();

// Each family adds its entries (called once by rule_registry(); see src/rules/registry.cpp).
void add_backprop_rules(std::vector<RuleEntry>& rules);
void add_energy_rules(std::vector<RuleEntry>& rules);  // ep, ep_symmetric, chl, bptt, implicit
void add_dual_rules(std::vector<RuleEntry>& rules);    // dual_prop

}  // namespace bilevel
