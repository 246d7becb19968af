#include "bilevel/rules/registry.h"

#include "bilevel/util/error.h"
#include "bilevel/util/hash.h"

namespace bilevel {

const std::vector<RuleEntry>& rule_registry() {
  static const std::vector<RuleEntry> rules = [] {
    std::vector<RuleEntry> r;
    add_backprop_rules(r);
    add_energy_rules(r);
    add_dual_rules(r);
    return r;
  }();
  return rules;
}

uint64_t LearningRule::step_seed() const {
  return splitmix64(splitmix64(splitmix64(uint64_t(seed_)) ^ uint64_t(epoch_)) ^ uint64_t(batch_));
}

std::vector<std::string> rule_names() {
  std::vector<std::string> names;
  for (const auto& e : rule_registry()) names.push_back(e.name);
  return names;
}

std::unique_ptr<LearningRule> make_rule(const ExperimentConfig& cfg) {
  for (const auto& e : rule_registry())
    if (e.name == cfg.train.algorithm) return e.make(cfg);
  std::string names;
  for (const auto& n : rule_names()) names += (names.empty() ? "" : ", ") + n;
  cfg.fail("train.algorithm", "unknown algorithm '" + cfg.train.algorithm + "' (expected one of: " + names + ")");
}

}  // namespace bilevel
