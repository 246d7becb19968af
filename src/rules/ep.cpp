#include "bilevel/rules/ep.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <cmath>

#include "bilevel/util/hash.h"

namespace bilevel {
EquilibriumPropagation::EquilibriumPropagation(std::unique_ptr<Objective> objective, EnergyRuleOptions options,
                                               Estimator estimator)
    : EnergyRule(std::move(objective), std::move(options)), estimator_(estimator) {}

std::vector<std::string> EquilibriumPropagation::diagnostic_columns() const {
  return phase_columns();
}

double EquilibriumPropagation::batch_beta(const torch::Tensor& y) const {
  if (estimator_ == Estimator::Symmetric) return std::abs(opt_.beta);
  if (!opt_.random_sign) return opt_.beta;
  torch::Tensor labels = y.to(torch::kCPU, torch::kLong).contiguous();
  const int64_t* p = labels.data_ptr<int64_t>();
  uint64_t h = splitmix64(opt_.seed ^ 0x6570u);  // "ep"
  for (int64_t i = 0; i < labels.numel(); ++i) h = splitmix64(h ^ uint64_t(p[i]));
  return (h >> 63) ? -std::abs(opt_.beta) : std::abs(opt_.beta);
}

StepStats EquilibriumPropagation::train_step(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) {
  torch::NoGradGuard no_grad;
  auto energy = energy_of(net);
  StepStats stats;
  const SolveStats fs = free_phase(energy, x, y);
  output_stats(energy, stats);
  const double beta = batch_beta(y);
  const double B = double(batch_.size);
  const SolveStats ns = nudged_phase(energy, nudged_, Nudge::loss(beta));
  SolveStats ns2;
  if (estimator_ == Estimator::Symmetric) ns2 = nudged_phase(energy, nudged_neg_, Nudge::loss(-beta));
  {
    RECORD_FUNCTION("energy.weight_gradients", std::vector<c10::IValue>());  // a scope for bench_epoch --profile
    if (estimator_ == Estimator::OneSided) {
      // g = (∂E/∂θ(s^β) − ∂E/∂θ(s^0)) / β = −(∂Φ/∂θ(s^β) − ∂Φ/∂θ(s^0)) / β, batch mean.
      energy.add_phi_grad_diff(batch_, nudged_, free_, -1.0 / (beta * B));
    } else {
      energy.add_phi_grad_diff(batch_, nudged_, nudged_neg_, -1.0 / (2.0 * beta * B));
    }
    energy.add_readout_grad(batch_, free_, 1.0 / B);
  }
  std::vector<const SolveStats*> nudged_solves{&ns};
  if (estimator_ == Estimator::Symmetric) nudged_solves.push_back(&ns2);
  add_phase_diagnostics(energy, fs, nudged_solves, nudged_, beta, stats);
  return stats;
}

}  // namespace bilevel
