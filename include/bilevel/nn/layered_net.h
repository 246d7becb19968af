// A layered network: a stack of fully connected or convolutional (+ max- or average-pool) layers sharing one activation ρ.
// The same parameters serve every learning rule: backprop runs the feedforward pass below; energy-based rules
// read the layers through layer(l) and compute their own states.
//
// Feedforward pass (input s_0 = x):
//   linear layer l:  z_l = W_l s_{l-1} + b_l                              (s_{l-1} flattened)
//   conv layer l:    z_l = pool_p(conv2d(s_{l-1}, W_l, padding) + b_l)   (max or average over p×p windows)
//   s_l = ρ(z_l) for hidden layers; the output layer gives s_L = ρ_out(z_L), where ρ_out = ρ when the
//   network's outputs are states (squared-error objective) and the identity when they are logits (cross-entropy).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/nn/activation.h"

namespace bilevel {

enum class LayerKind { Linear, Conv };

// Quantization of the hidden layers' outputs ρ(z_l) (bilevel/quant/activation_quantizer.h implements it). The
// network applies it after ρ on every hidden layer it covers; energy-based rules apply it inside the relaxation.
class StateQuantizer {
 public:
  virtual ~StateQuantizer() = default;
  // Whether hidden layer l's output (0-based layer index) is quantized.
  virtual bool covers(size_t layer) const = 0;
  // Fake quantization for autograd: the forward value is quantized, the backward is the quantizer's estimator.
  virtual torch::Tensor apply(const torch::Tensor& s, size_t layer, bool training) const = 0;
  // In place, without autograd (relaxations, dual propagation's states).
  virtual void apply_(torch::Tensor& s, size_t layer, bool training) const = 0;
  // Whether hidden layer l's states take exactly two values, level and level + step, chosen deterministically by
  // the rounding of cpu::state_codes (offset level, step step) in this mode; fills them when so. Packed-bit
  // relaxations (bilevel/energy/binary_relaxation.h) need this.
  virtual bool binary_levels(size_t /*layer*/, bool /*training*/, float& /*level*/, float& /*step*/) const {
    return false;
  }
};

struct Layer {
  LayerKind kind;
  torch::Tensor weight;  // Linear: [out, in]; Conv: [out_ch, in_ch, k, k]
  torch::Tensor bias;    // [out] / [out_ch]
  int64_t padding = 0;   // conv only
  int64_t pool = 1;      // conv only: pooling kernel and stride (1 = none)
  bool avg_pool = false;  // conv only: average instead of max pooling
  std::vector<int64_t> in_shape;   // per example, e.g. {1, 28, 28} or {784}
  std::vector<int64_t> out_shape;  // per example, after pooling
};

// Multiply-adds of the layer's linear map for one example (conv: output positions before pooling × out
// channels × in channels × k²).
int64_t layer_macs(const Layer& layer);

class LayeredNetImpl : public torch::nn::Module {
 public:
  // input_shape = {C, H, W}; activate_output: whether ρ is applied to the output layer.
  LayeredNetImpl(const ModelConfig& cfg, std::vector<int64_t> input_shape, int64_t num_classes,
                 bool activate_output);

  // The feedforward output s_L, [B, num_classes].
  torch::Tensor forward(const torch::Tensor& x);
  // The output layer's pre-activation z_L under the feedforward pass.
  torch::Tensor logits(const torch::Tensor& x);

  size_t num_layers() const { return layers_.size(); }
  const Layer& layer(size_t l) const { return layers_.at(l); }  // l = 0 is the first (input-side) layer
  // Applies layer l's linear map (conv + pool, or matmul) to a batch of its inputs, without ρ.
  torch::Tensor apply_layer(size_t l, const torch::Tensor& input) const;
  const Activation& rho() const { return *rho_; }
  bool activate_output() const { return activate_output_; }
  std::vector<int64_t> input_shape() const { return input_shape_; }
  int64_t num_classes() const { return num_classes_; }
  // Hidden-layer output quantization (null: none). The network does not own it.
  void set_state_quantizer(const StateQuantizer* q) { state_quantizer_ = q; }
  const StateQuantizer* state_quantizer() const { return state_quantizer_; }
  // s ← Q_l(s) in place when hidden layer l's output is quantized.
  void quantize_state_(torch::Tensor& s, size_t l) const {
    if (state_quantizer_ && l + 1 < layers_.size() && state_quantizer_->covers(l)) state_quantizer_->apply_(s, l, is_training());
  }

 private:
  std::vector<Layer> layers_;
  const Activation* rho_;
  bool activate_output_;
  std::vector<int64_t> input_shape_;
  int64_t num_classes_;
  const StateQuantizer* state_quantizer_ = nullptr;
};
TORCH_MODULE(LayeredNet);

}  // namespace bilevel
