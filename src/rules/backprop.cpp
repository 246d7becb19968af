#include "bilevel/rules/backprop.h"

#include <torch/autograd.h>

#include "bilevel/rules/registry.h"

namespace bilevel {

StepStats Backprop::train_step(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) {
  auto out = net->forward(x);
  auto losses = objective_->loss(out, y);
  losses.mean().backward();
  StepStats stats;
  torch::NoGradGuard no_grad;
  stats.loss_sum = losses.sum().item<double>();
  stats.correct = out.argmax(1).eq(y).sum().item<int64_t>();
  return stats;
}

torch::Tensor Backprop::predict(LayeredNet& net, const torch::Tensor& x) { return net->forward(x); }

void add_backprop_rules(Registry<LearningRule>& rules) {
  rules.add({"backprop", "backpropagation through the feedforward pass (autograd)", {}},
            [](const ExperimentConfig& cfg) { return std::make_unique<Backprop>(objective_for(cfg)); },
            {kRuleQuantizedStates, kRuleAutograd});
}

}  // namespace bilevel
