// Optimizers (SGD with momentum, Adam) with one parameter group per layer, so each layer can have its own
// learning rate, and per-epoch learning-rate schedules.
//   none:    lr_e = lr
//   step:    lr_e = lr · γ^⌊e / step_size⌋
//   cosine:  lr_e = min_lr + ½ (lr − min_lr)(1 + cos(π e / E))          (Loshchilov & Hutter 2017, no restarts)
// where e = 0, 1, ... is the epoch about to run and E the number of epochs. A schedule is a pure function of the
// epoch, so a resumed run needs no scheduler state beyond the epoch counter.
#pragma once

#include <torch/optim/optimizer.h>

#include <memory>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/nn/layered_net.h"

namespace bilevel {

struct Optimizer {
  std::unique_ptr<torch::optim::Optimizer> impl;
  std::vector<double> base_lrs;  // per parameter group (= per layer)
};

class QuantizationImpl;

// Throws ConfigError when optimizer.layer_lrs does not have one entry per layer. With quantization, each layer's group
// holds what the quantization steps instead of the weights (latent weights, learned scales). Adam is FusedAdam
// (one pass per tensor; with quantization, the solver's fused step where it has one) unless `fused` is false, which
// gives LibTorch's torch::optim::Adam and the quantization's separate passes (the reference the tests compare with).
Optimizer make_optimizer(const ExperimentConfig& cfg, LayeredNet& net, QuantizationImpl* quant = nullptr,
                         bool fused = true);

// The learning-rate factor for epoch e (0-based) of `epochs`.
double schedule_lr(const SchedulerConfig& s, double base_lr, int64_t epoch, int64_t epochs);

// Sets every group's learning rate for epoch e; returns the first group's.
double apply_schedule(Optimizer& opt, const SchedulerConfig& s, int64_t epoch, int64_t epochs);

}  // namespace bilevel
