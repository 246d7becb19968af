// Quantization-aware training of a LayeredNet: the concept between the optimizer and the learning rules.
//
// For every quantized layer the network's weight tensor always holds the weights the rules use, w = w(θ); the
// latent θ, the grid's scale and zero point and each solver's state live here, as parameters and buffers of this
// module, which is registered as the network's submodule "quant" so that checkpoints and model files hold them.
// One training step (the trainer calls these around the rule's train_step and the optimizer step):
//
//   begin_batch   w ← solver.forward(θ) (stochastic rounding keyed on (seed, epoch, batch, layer)); zero ∂ℓ/∂w
//   rule.train_step(net)           writes ∂ℓ/∂w into the weight's grad, as it does without quantization
//   after_backward  θ.grad ← solver.backward(θ, ∂ℓ/∂w)  (flip: updates w itself)
//   optimizer.step                 steps θ (and learned scales) instead of w
//   after_step    solver.after_step (clip, prox); w ← the deterministic forward, what evaluation uses
//
// With Adam (FusedAdam) and a solver that can fuse them (fuse_into), the last three become one pass per tensor
// inside the optimizer's step: after_backward only writes learned scales' gradients, and the optimizer calls the
// solver's fused_adam_step for θ after stepping the scales.
//
// So no learning rule knows about quantization. Activation quantization is a StateQuantizer given to the network
// (bilevel/quant/activation_quantizer.h). Config: quantization.* (`bilevel train --help`).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <memory>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/nn/layered_net.h"
#include "bilevel/quant/activation_quantizer.h"
#include "bilevel/quant/quantizer.h"
#include "bilevel/quant/weight_solver.h"

namespace bilevel {

class FusedAdam;

class QuantizationImpl : public torch::nn::Module {
 public:
  // Validates the quantization.* keys against the network and the learning rule (ConfigError naming the key) and
  // sets up every quantized layer from the network's initial weights. Attaches the activation quantizer to `net`.
  QuantizationImpl(const ExperimentConfig& cfg, LayeredNet net);

  // The parameters the optimizer steps for layer l, in place of {weight, bias}.
  std::vector<torch::Tensor> optimizer_params(size_t layer) const;
  // Whether layer l's weights are quantized.
  bool quantized(size_t layer) const;
  const QuantParam* param(size_t layer) const;
  const Quantizer& weight_quantizer() const { return *quantizer_; }
  const WeightSolver& weight_solver() const { return *solver_; }
  // The latent-weight gradients ∂ℓ/∂θ that `solver`'s backward makes of g[l] = ∂ℓ/∂w (shaped as layer l's weights)
  // at clock c, for each layer with a latent (undefined for the others), leaving the run's state as it was (the
  // gradient probe, train.probe_solver). Meaningful between solvers whose latents mean the same (ste, adaste).
  std::vector<torch::Tensor> latent_gradients(const WeightSolver& solver, const std::vector<torch::Tensor>& g,
                                              const QuantClock& c) const;
  const ActivationQuantizer* activation_quantizer() const { return act_.get(); }

  // Hands every latent's step to `opt` (WeightSolver::fused_adam_step) when the solver can fuse it and the tensors
  // are float32 on the CPU; the optimizer must already hold the latents (make_optimizer). nullptr: the separate
  // passes (any optimizer). Returns whether the steps are fused.
  bool fuse_into(FusedAdam* opt);
  void begin_batch(const QuantClock& c);
  void after_backward(const QuantClock& c);
  void after_step(const QuantClock& c);
  // Sets w to the deterministic forward at clock c (at setup).
  void refresh(const QuantClock& c);

  // metrics.csv columns and their values for the epoch that just ended (begin_epoch snapshots the codes).
  std::vector<std::string> columns() const;
  void begin_epoch();
  std::vector<double> epoch_values(const QuantClock& c) const;
  // The snapshot begin_epoch took (per layer; undefined for full-precision layers), for a checkpoint written
  // inside an epoch, and its restoration when such a checkpoint is resumed.
  const std::vector<torch::Tensor>& epoch_codes() const { return epoch_codes_; }
  void set_epoch_codes(std::vector<torch::Tensor> codes) { epoch_codes_ = std::move(codes); }

  // Integer codes of layer l's weights (what export writes), and its grid.
  torch::Tensor codes(size_t layer) const;

 private:
  LayeredNetImpl* net_;  // the owner (this module is its submodule)
  std::unique_ptr<Quantizer> quantizer_;
  std::unique_ptr<WeightSolver> solver_;
  std::vector<std::unique_ptr<QuantParam>> params_;  // indexed by layer; null = full precision
  std::vector<torch::Tensor> epoch_codes_;
  std::unique_ptr<ActivationQuantizer> act_;
  std::vector<torch::Tensor> act_steps_;
  bool stochastic_ = false;
  bool learn_scale_ = false;  // scales are parameters (lsq, or quantization.weights.learn_scale)
  bool fused_ = false;        // the optimizer steps θ through the solver's fused step (fuse_into)
};
TORCH_MODULE(Quantization);

// Checks every quantization.* key that can be checked from the config alone (before data is loaded).
void validate_quantization(const ExperimentConfig& cfg);

}  // namespace bilevel
