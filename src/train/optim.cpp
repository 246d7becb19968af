#include "bilevel/train/optim.h"

#include <torch/optim/adam.h>
#include <torch/optim/sgd.h>

#include <cmath>

#include "bilevel/quant/quantization.h"
#include "bilevel/optim/fused_adam.h"

namespace bilevel {

Optimizer make_optimizer(const ExperimentConfig& cfg, LayeredNet& net, QuantizationImpl* quant, bool fused) {
  const auto& o = cfg.optimizer;
  const size_t layers = net->num_layers();
  if (!o.layer_lrs.empty() && o.layer_lrs.size() != layers)
    cfg.fail("optimizer.layer_lrs", "has " + std::to_string(o.layer_lrs.size()) + " entries but the model has " +
                                        std::to_string(layers) + " layers (one learning rate per layer, input side first)");
  Optimizer out;
  std::vector<torch::optim::OptimizerParamGroup> groups;
  for (size_t l = 0; l < layers; ++l) {
    const double lr = o.layer_lrs.empty() ? o.lr : o.layer_lrs[l];
    if (lr <= 0) cfg.fail("optimizer.layer_lrs", "every learning rate must be > 0");
    out.base_lrs.push_back(lr);
    std::vector<torch::Tensor> params =
        quant ? quant->optimizer_params(l) : std::vector<torch::Tensor>{net->layer(l).weight, net->layer(l).bias};
    if (o.name == "sgd") {
      groups.emplace_back(params, std::make_unique<torch::optim::SGDOptions>(
                                      torch::optim::SGDOptions(lr).momentum(o.momentum).nesterov(o.nesterov)
                                          .weight_decay(o.weight_decay)));
    } else {
      groups.emplace_back(params, std::make_unique<torch::optim::AdamOptions>(
                                      torch::optim::AdamOptions(lr).betas({o.beta1, o.beta2}).eps(o.eps)
                                          .weight_decay(o.weight_decay)));
    }
  }
  FusedAdam* fused_adam = nullptr;
  if (o.name == "sgd") {
    out.impl = std::make_unique<torch::optim::SGD>(groups, torch::optim::SGDOptions(o.lr));
  } else if (!fused) {
    out.impl = std::make_unique<torch::optim::Adam>(groups, torch::optim::AdamOptions(o.lr));
  } else {
    auto adam = std::make_unique<FusedAdam>(groups, torch::optim::AdamOptions(o.lr));
    fused_adam = adam.get();
    out.impl = std::move(adam);
  }
  if (quant) quant->fuse_into(fused_adam);
  return out;
}

double schedule_lr(const SchedulerConfig& s, double base_lr, int64_t epoch, int64_t epochs) {
  if (s.name == "step") return base_lr * std::pow(s.gamma, double(epoch / s.step_size));
  if (s.name == "cosine") {
    const double t = epochs > 0 ? double(epoch) / double(epochs) : 0.0;
    return s.min_lr + 0.5 * (base_lr - s.min_lr) * (1 + std::cos(M_PI * t));
  }
  return base_lr;
}

double apply_schedule(Optimizer& opt, const SchedulerConfig& s, int64_t epoch, int64_t epochs) {
  auto& groups = opt.impl->param_groups();
  for (size_t g = 0; g < groups.size(); ++g)
    groups[g].options().set_lr(schedule_lr(s, opt.base_lrs.at(g), epoch, epochs));
  return groups.empty() ? 0.0 : groups[0].options().get_lr();
}

}  // namespace bilevel
