#include "bilevel/rules/chl.h"

namespace bilevel {

ContrastiveHebbian::ContrastiveHebbian(std::unique_ptr<Objective> objective, EnergyRuleOptions options)
    : EnergyRule(std::move(objective), std::move(options)) {}

std::vector<std::string> ContrastiveHebbian::diagnostic_columns() const {
  return phase_columns();
}

StepStats ContrastiveHebbian::train_step(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) {
  torch::NoGradGuard no_grad;
  auto energy = energy_of(net);
  StepStats stats;
  const SolveStats fs = free_phase(energy, x, y);
  output_stats(energy, stats);
  const SolveStats cs = nudged_phase(energy, clamped_, Nudge::clamp());
  energy.add_phi_grad_diff(batch_, clamped_, free_, -1.0 / double(batch_.size));
  add_phase_diagnostics(energy, fs, {&cs}, clamped_, 1.0, stats);
  return stats;
}

}  // namespace bilevel
