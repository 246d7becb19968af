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
  if (const auto* e = objectives().find(cfg.train.loss)) return e->make(cfg);
  cfg.fail("train.loss", "unknown loss '" + cfg.train.loss + "'");
}

std::unique_ptr<LearningRule> make_rule(const ExperimentConfig& cfg) {
  if (const auto* e = rules().find(cfg.rule.name)) return e->make(cfg);
  std::string names;
  for (const auto& n : rule_names()) names += (names.empty() ? "" : ", ") + n;
  cfg.fail("rule.name", "unknown learning rule '" + cfg.rule.name + "' (expected one of: " + names + ")");
}

}  // namespace bilevel
