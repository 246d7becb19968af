#include "bilevel/rules/bptt.h"

#include <torch/autograd.h>

#include <algorithm>

namespace bilevel {

BackpropThroughTime::BackpropThroughTime(std::unique_ptr<Objective> objective, EnergyRuleOptions options)
    : EnergyRule(std::move(objective), std::move(options)) {}

std::vector<std::string> BackpropThroughTime::diagnostic_columns() const { return {"free_residual", "free_steps"}; }

StepStats BackpropThroughTime::train_step(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) {
  auto energy = energy_of(net);
  const bool gauss_seidel = opt_.solver == "layerwise";
  const auto& w0 = net->layer(0).weight;
  const int64_t B = x.size(0);
  std::vector<torch::Tensor> s;
  for (int64_t k = 1; k <= energy.num_states(); ++k) s.push_back(torch::zeros(energy.state_shape(k, B), w0.options()));
  torch::Tensor drive1 = energy.input_drive_autograd(x).view(s[0].sizes());
  double residual = 0.0;
  int64_t steps = 0;
  for (int64_t t = 1; t <= opt_.free_steps; ++t) {
    auto next = energy.step_autograd(drive1, s, gauss_seidel);
    steps = t;
    if (opt_.tol > 0.0 || t == opt_.free_steps) {
      torch::NoGradGuard no_grad;
      residual = 0.0;
      for (size_t i = 0; i < s.size(); ++i) residual = std::max(residual, max_abs_diff(next[i], s[i]));
    }
    s = std::move(next);
    if (opt_.tol > 0.0 && residual < opt_.tol) break;
  }
  torch::Tensor out = energy.output_autograd(s);
  const torch::Tensor labels = y.to(out.device(), torch::kLong);
  torch::Tensor losses = objective_->loss(out, labels);
  losses.mean().backward();
  StepStats stats;
  torch::NoGradGuard no_grad;
  stats.loss_sum = losses.sum().item<double>();
  stats.correct = out.argmax(1).eq(labels).sum().item<int64_t>();
  stats.diagnostics = {{"free_residual", residual}, {"free_steps", double(steps)}};
  return stats;
}

}  // namespace bilevel
