#include "bilevel/rules/chl.h"

namespace bilevel {

ContrastiveHebbian::ContrastiveHebbian(std::unique_ptr<Objective> objective, EnergyRuleOptions options)
    : EnergyRule(std::move(objective), std::move(options)) {}

std::vector<std::string> ContrastiveHebbian::diagnostic_columns() const {
  std::vector<std::string> c{"free_residual", "free_steps", "nudged_residual", "nudged_steps"};
  for (auto& n : cost_columns(true)) c.push_back(n);
  return c;
}

StepStats ContrastiveHebbian::train_step(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) {
  torch::NoGradGuard no_grad;
  auto energy = energy_of(net);
  StepStats stats;
  const SolveStats fs = free_phase(energy, x, y);
  output_stats(energy, stats);
  const SolveStats cs = nudged_phase(energy, clamped_, Nudge::clamp());
  energy.add_phi_grad_diff(batch_, clamped_, free_, -1.0 / double(batch_.size));
  add_cost_diagnostics(energy, fs, {&cs}, stats);
  add_output_shift(energy, clamped_, 1.0, stats);
  stats.diagnostics["free_residual"] = fs.residual;
  stats.diagnostics["free_steps"] = double(fs.steps);
  stats.diagnostics["nudged_residual"] = cs.residual;
  stats.diagnostics["nudged_steps"] = double(cs.steps);
  return stats;
}

}  // namespace bilevel
