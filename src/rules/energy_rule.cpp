#include "bilevel/rules/energy_rule.h"

#include "bilevel/energy/sweep_stats.h"
#include "bilevel/registry.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace bilevel {

EnergyRuleOptions EnergyRuleOptions::from_config(const ExperimentConfig& cfg) {
  EnergyRuleOptions o;
  // A group's keys are those of the selected component: a rule or solver without a key keeps the default here.
  o.solver = cfg.get<std::string>("solver.name");
  o.kernel = cfg.get_or<std::string>("solver.kernel", o.kernel);
  o.free_steps = cfg.get_or<int64_t>("solver.free_steps", o.free_steps);
  o.nudged_steps = cfg.get_or<int64_t>("solver.nudged_steps", o.nudged_steps);
  o.tol = cfg.get_or<double>("solver.tol", o.tol);
  o.feedforward_init = cfg.get_or<std::string>("solver.init", "zero") == "feedforward";
  if (o.feedforward_init && rules().has(cfg.rule.name, kRuleUnrollsFromZero))
    cfg.fail("solver.init", cfg.rule.name + " differentiates through the unrolled dynamics from zero states; "
                            "solver.init: feedforward is for the rules that relax to equilibrium (ep, ep_symmetric, "
                            "chl, implicit)");
  o.beta = cfg.get_or<double>("rule.beta", o.beta);
  o.random_sign = cfg.get_or<bool>("rule.random_sign", o.random_sign);
  o.seed = uint64_t(cfg.seed);
  o.implicit_method = cfg.get_or<std::string>("rule.linear_solver", o.implicit_method);
  o.implicit_steps = cfg.get_or<int64_t>("rule.linear_steps", o.implicit_steps);
  o.implicit_tol = cfg.get_or<double>("rule.linear_tol", o.implicit_tol);
  try {
    Neuron::from_activation(activation(cfg.model.activation));
  } catch (const std::invalid_argument& e) {
    cfg.fail("model.activation", std::string(e.what()) + " (rule.name: " + cfg.rule.name + ")");
  }
  o.solver_instance = inner_solvers().make_or_fail(o.solver, cfg, "solver.name");
  if (cfg.train.loss == "cross_entropy") {
    const bool has_hidden = !cfg.model.hidden.empty() || (cfg.model.kind == "conv" && !cfg.model.channels.empty());
    if (!has_hidden)
      cfg.fail("model.hidden",
               "with train.loss: cross_entropy the last layer is a softmax read-out, so " + cfg.rule.name +
                   " needs at least one hidden layer to hold a state");
  }
  return o;
}

EnergyRule::EnergyRule(std::unique_ptr<Objective> objective, EnergyRuleOptions options)
    : LearningRule(std::move(objective)), opt_(std::move(options)), solver_(opt_.solver_instance ? opt_.solver_instance : std::shared_ptr<InnerSolver>(make_solver(opt_.solver, opt_.kernel))) {}

LayeredEnergy EnergyRule::energy_of(LayeredNet& net) const {
  return LayeredEnergy(*net, Neuron::from_activation(net->rho()), *objective_);
}

SolveStats EnergyRule::free_phase(const LayeredEnergy& energy, const torch::Tensor& x, const torch::Tensor& y) {
  RECORD_FUNCTION("energy.free_phase", std::vector<c10::IValue>());  // a scope for profilers (bench_epoch --profile)
  energy.prepare(batch_, x, y);
  if (opt_.feedforward_init) energy.feedforward_state(batch_, free_);
  else energy.init_state(batch_, free_);
  return solver_->solve(energy, batch_, free_, Nudge::none(), opt_.free_steps, opt_.tol);
}

SolveStats EnergyRule::nudged_phase(const LayeredEnergy& energy, EnergyState& st, const Nudge& nudge) {
  RECORD_FUNCTION("energy.nudged_phase", std::vector<c10::IValue>());
  st.copy_from(free_);
  return solver_->solve(energy, batch_, st, nudge, opt_.nudged_steps, opt_.tol);
}

void EnergyRule::output_stats(const LayeredEnergy& energy, StepStats& stats) const {
  torch::NoGradGuard no_grad;
  torch::Tensor out = energy.output(batch_, free_);
  // Left on the device (StepStats::pending): the trainer reads both at once, after the step is queued.
  stats.pending = torch::stack({objective_->loss(out, batch_.labels).sum().to(torch::kFloat64),
                                out.argmax(1).eq(batch_.labels).sum().to(torch::kFloat64)});
}

std::vector<std::string> EnergyRule::phase_columns() {
  std::vector<std::string> c{"free_residual", "free_steps", "nudged_residual", "nudged_steps"};
  for (const char* phase : {"free", "nudged"})
    for (auto& n : sweep_columns(phase)) c.push_back(n);
  c.push_back("output_shift");
  c.push_back("macs_ratio");
  return c;
}

void EnergyRule::add_phase_diagnostics(const LayeredEnergy& energy, const SolveStats& free,
                                       const std::vector<const SolveStats*>& nudged, const EnergyState& nudged_state,
                                       double beta, StepStats& stats) const {
  RECORD_FUNCTION("energy.diagnostics", std::vector<c10::IValue>());
  torch::NoGradGuard no_grad;
  auto& d = stats.diagnostics;
  const int64_t B = batch_.size;
  d["free_residual"] = free.residual;
  d["free_steps"] = double(free.steps);
  double residual = 0.0, steps = 0.0;
  for (const SolveStats* s : nudged) residual = std::max(residual, s->residual), steps += double(s->steps);
  d["nudged_residual"] = residual;
  d["nudged_steps"] = steps;
  add_sweep_diagnostics("free", {&free}, B, opt_.free_steps, opt_.tol, d);
  add_sweep_diagnostics("nudged", nudged, B, opt_.nudged_steps, opt_.tol, d);
  const double ep = ep_step_macs(energy, d["free_sweeps"], d["nudged_sweeps"], int64_t(nudged.size()));
  d["macs_ratio"] = ep / backprop_step_macs(energy);
  const double b = std::abs(beta) > 0.0 ? std::abs(beta) : 1.0;
  const torch::Tensor shift = energy.output(batch_, nudged_state) - energy.output(batch_, free_);
  stats.pending_diagnostics.emplace_back("output_shift", shift.abs().mean() / b);  // read with the loss (resolve())
}

std::vector<std::string> EnergyRule::epoch_warnings(const std::vector<double>& diagnostics) const {
  std::vector<std::string> out;
  const auto names = diagnostic_columns();
  auto value = [&](const std::string& name) {
    for (size_t i = 0; i < names.size() && i < diagnostics.size(); ++i)
      if (names[i] == name) return diagnostics[i];
    return std::nan("");
  };
  const double limit = value("free_at_limit");
  if (limit > 0.5 && !cancels_free_drift())
    out.push_back(std::to_string(int(std::lround(100 * limit))) + "% of the examples ended the free phase on its step "
                  "limit (solver.free_steps: " + std::to_string(opt_.free_steps) + ") with their states still "
                  "moving, and this estimator takes what they move during the nudged phase, divided by beta, for "
                  "gradient; deeper or wider networks learn with rule.name: ep_symmetric (its two nudged phases "
                  "cancel that drift to first order) or with a free phase that settles (solver.name: layerwise, "
                  "solver.init: feedforward, more solver.free_steps; configs/fmnist_mlp_ep_deep.yaml)");
  const double shift = value("output_shift");
  if (shift < 1e-2)
    out.push_back("the nudged phase barely moves the output (mean |s^β − s^0| / |β| = " + std::to_string(shift) +
                  "): the states are saturated, so the rule gets almost no learning signal; lower the initial "
                  "weights (model.init_gain), the learning rate, or raise rule.beta");
  return out;
}

const EnergyState& EnergyRule::relax_free(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y,
                                          SolveStats* stats) {
  auto energy = energy_of(net);
  SolveStats s = free_phase(energy, x, y);
  if (stats) *stats = s;
  return free_;
}

torch::Tensor EnergyRule::predict(LayeredNet& net, const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  auto energy = energy_of(net);
  free_phase(energy, x, torch::Tensor());
  return energy.output(batch_, free_).clone();
}

}  // namespace bilevel
