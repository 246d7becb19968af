#include "bilevel/energy/energy_rule.h"

#include <stdexcept>

namespace bilevel {

EnergyRuleOptions EnergyRuleOptions::from_config(const ExperimentConfig& cfg) {
  EnergyRuleOptions o;
  o.solver = cfg.get<std::string>("solver.name");
  o.kernel = cfg.get<std::string>("solver.kernel");
  o.free_steps = cfg.get<int64_t>("solver.free_steps");
  o.nudged_steps = cfg.get<int64_t>("solver.nudged_steps");
  o.tol = cfg.get<double>("solver.tol");
  o.beta = cfg.get<double>("train.beta");
  o.random_sign = cfg.get<bool>("train.random_sign");
  o.seed = uint64_t(cfg.seed);
  o.implicit_method = cfg.get<std::string>("solver.implicit_method");
  o.implicit_steps = cfg.get<int64_t>("solver.implicit_steps");
  o.implicit_tol = cfg.get<double>("solver.implicit_tol");
  try {
    Neuron::from_activation(activation(cfg.model.activation));
  } catch (const std::invalid_argument& e) {
    cfg.fail("model.activation", std::string(e.what()) + " (train.algorithm: " + cfg.train.algorithm + ")");
  }
  try {
    make_solver(o.solver);
  } catch (const std::invalid_argument& e) {
    cfg.fail("solver.name", e.what());
  }
  if (cfg.train.loss == "cross_entropy") {
    const bool has_hidden = !cfg.model.hidden.empty() || (cfg.model.kind == "conv" && !cfg.model.channels.empty());
    if (!has_hidden)
      cfg.fail("model.hidden",
               "with train.loss: cross_entropy the last layer is a softmax read-out, so " + cfg.train.algorithm +
                   " needs at least one hidden layer to hold a state");
  }
  return o;
}

EnergyRule::EnergyRule(std::unique_ptr<Objective> objective, EnergyRuleOptions options)
    : LearningRule(std::move(objective)), opt_(std::move(options)), solver_(make_solver(opt_.solver, opt_.kernel)) {}

LayeredEnergy EnergyRule::energy_of(LayeredNet& net) const {
  return LayeredEnergy(*net, Neuron::from_activation(net->rho()), *objective_);
}

SolveStats EnergyRule::free_phase(const LayeredEnergy& energy, const torch::Tensor& x, const torch::Tensor& y) {
  energy.prepare(batch_, x, y);
  energy.init_state(batch_, free_);
  return solver_->solve(energy, batch_, free_, Nudge::none(), opt_.free_steps, opt_.tol);
}

SolveStats EnergyRule::nudged_phase(const LayeredEnergy& energy, EnergyState& st, const Nudge& nudge) {
  st.copy_from(free_);
  return solver_->solve(energy, batch_, st, nudge, opt_.nudged_steps, opt_.tol);
}

void EnergyRule::output_stats(const LayeredEnergy& energy, StepStats& stats) const {
  torch::NoGradGuard no_grad;
  torch::Tensor out = energy.output(batch_, free_);
  stats.loss_sum = objective_->loss(out, batch_.labels).sum().item<double>();
  stats.correct = out.argmax(1).eq(batch_.labels).sum().item<int64_t>();
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
