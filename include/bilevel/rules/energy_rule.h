// The common part of the energy-based learning rules (ep, ep_symmetric, chl, bptt, implicit): their
// hyperparameters, the free phase on a re-used workspace, inference at the free equilibrium, and statistics.
//
// Free phase: states start at zero and relax under the configured InnerSolver for solver.free_steps sweeps
// (early stop at solver.tol). predict(net, x) returns the output at that free equilibrium (s_S for mse, the
// read-out logits for cross_entropy). loss_sum and correct in StepStats are measured there too.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "bilevel/energy/inner_solver.h"
#include "bilevel/energy/layered_energy.h"
#include "bilevel/rules/learning_rule.h"

namespace bilevel {

// Hyperparameters of the EP family (config keys: the rules' and solvers' registrations, src/rules/ep_family_registry.cpp
// and src/energy/inner_solver.cpp).
struct EnergyRuleOptions {
  std::string solver = "fixed_point";  // solver.name
  std::string kernel = "auto";         // solver.kernel
  int64_t free_steps = 30;             // solver.free_steps (T)
  int64_t nudged_steps = 10;           // solver.nudged_steps (K)
  double tol = 0.0;                    // solver.tol (0 = no early stop)
  bool feedforward_init = false;       // solver.init: feedforward (the free phase starts from a forward pass)
  double beta = 0.1;                   // rule.beta (ep, ep_symmetric)
  bool random_sign = false;            // rule.random_sign (ep)
  uint64_t seed = 0;                   // seed (random sign)
  std::string implicit_method = "minres";  // rule.linear_solver (implicit)
  int64_t implicit_steps = 100;        // rule.linear_steps (implicit)
  double implicit_tol = 1e-8;          // rule.linear_tol (implicit)
  // The solver built by its registered factory (from_config); when null, make_solver(solver, kernel).
  std::shared_ptr<InnerSolver> solver_instance;

  // Reads the keys and validates what the schema cannot (an activation that defines no energy, a
  // cross_entropy network without a hidden layer); throws ConfigError through cfg.fail.
  static EnergyRuleOptions from_config(const ExperimentConfig& cfg);
};

class EnergyRule : public LearningRule {
 public:
  torch::Tensor predict(LayeredNet& net, const torch::Tensor& x) override;
  const EnergyRuleOptions& options() const { return opt_; }
  // Warns when most examples end the free phase on the step limit (free_at_limit > ½) under an estimator that
  // takes the free states' remaining drift for gradient (one-sided EP, CHL; not symmetric EP, whose two nudged
  // phases cancel it to first order), and when the nudge does not move the output (output_shift < 0.01:
  // saturated states give no learning signal).
  std::vector<std::string> epoch_warnings(const std::vector<double>& diagnostics) const override;
  const InnerSolver& solver() const { return *solver_; }

  // The free phase for a batch, exposed for tests and analysis: relaxes the rule's free state and returns it.
  const EnergyState& relax_free(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y,
                                SolveStats* stats = nullptr);

 protected:
  EnergyRule(std::unique_ptr<Objective> objective, EnergyRuleOptions options);
  // Whether the estimate cancels, to first order, what the free phase left unsettled (symmetric EP).
  virtual bool cancels_free_drift() const { return false; }

  // The energy view of `net` (cheap; built per call because the trainer may pass any net).
  LayeredEnergy energy_of(LayeredNet& net) const;
  // prepare(batch_) + zero init + solve into free_.
  SolveStats free_phase(const LayeredEnergy& energy, const torch::Tensor& x, const torch::Tensor& y);
  // Relaxes `st` from the free equilibrium under `nudge` for solver.nudged_steps sweeps.
  SolveStats nudged_phase(const LayeredEnergy& energy, EnergyState& st, const Nudge& nudge);
  // loss_sum and correct at the free equilibrium.
  void output_stats(const LayeredEnergy& energy, StepStats& stats) const;
  // The diagnostic columns of a rule with a free and nudged phases (ep, ep_symmetric, chl): free/nudged residual
  // and steps, the relaxation's cost (energy/sweep_stats.h: each phase's sweeps per example, at-limit fraction and
  // histogram), output_shift (the mean over examples and units of |s_S^β − s_S^0| / |β|, of the read-out logits
  // under cross_entropy: how far the nudge moves the output) and macs_ratio (the step's multiply-adds over
  // backprop's with the measured sweeps).
  static std::vector<std::string> phase_columns();
  // Fills those columns for a step: the free solve, the nudged solves (their residual the largest, their steps
  // summed), and the nudged state the output shift is taken at with its β (1 for a clamped output).
  void add_phase_diagnostics(const LayeredEnergy& energy, const SolveStats& free,
                             const std::vector<const SolveStats*>& nudged, const EnergyState& nudged_state,
                             double beta, StepStats& stats) const;

  EnergyRuleOptions opt_;
  std::shared_ptr<InnerSolver> solver_;
  EnergyBatch batch_;
  EnergyState free_;
};

}  // namespace bilevel
