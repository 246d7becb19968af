#include "bilevel/rules/registry.h"

#include "bilevel/util/error.h"
#include "bilevel/util/hash.h"

namespace bilevel {

Registry<LearningRule>& rules() {
  static Registry<LearningRule> registry("learning rule", [](Registry<LearningRule>& r) {
    add_backprop_rules(r);
    add_energy_rules(r);
    add_dual_rules(r);
  });
  return registry;
}

uint64_t LearningRule::step_seed() const {
  return splitmix64(splitmix64(splitmix64(uint64_t(seed_)) ^ uint64_t(epoch_)) ^ uint64_t(batch_));
}

std::vector<std::string> rule_names() { return rules().names(); }

std::unique_ptr<Objective> objective_for(const ExperimentConfig& cfg) {
  return objectives().make_or_fail(cfg.train.loss, cfg, "train.loss");
}

std::unique_ptr<LearningRule> make_rule(const ExperimentConfig& cfg) {
  return rules().make_or_fail(cfg.rule.name, cfg, "rule.name");
}

}  // namespace bilevel
