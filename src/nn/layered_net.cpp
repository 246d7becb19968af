#include "bilevel/nn/layered_net.h"

#include "bilevel/nn/layer_maps.h"

#include <torch/nn/init.h>
#include <torch/nn/functional.h>

#include <cmath>
#include <numeric>
#include <stdexcept>

#include "bilevel/nn/linear.h"

namespace bilevel {

int64_t layer_macs(const Layer& layer) {
  const auto ws = layer.weight.sizes().vec();
  const int64_t O = ws[0], K = layer.weight.numel() / O;
  int64_t positions = 1;
  if (layer.kind == LayerKind::Conv) {
    const int64_t k = ws[2];
    positions = (layer.in_shape[1] + 2 * layer.padding - k + 1) * (layer.in_shape[2] + 2 * layer.padding - k + 1);
  }
  return positions * O * K;
}

namespace {

int64_t numel(const std::vector<int64_t>& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<int64_t>());
}

// Initialises W and b in place. "default" is LibTorch's nn.Linear / nn.Conv2d rule (uniform ±1/sqrt(fan_in)),
// written out here so a LibTorch release that changes its defaults cannot change ours.
void initialise(torch::Tensor& w, torch::Tensor& b, const ModelConfig& cfg, size_t layer) {
  torch::NoGradGuard no_grad;
  const int64_t fan_in = w.numel() / w.size(0);
  const int64_t fan_out = w.numel() / w.size(1);
  const double bound_b = 1.0 / std::sqrt(double(fan_in));
  double bound_w = bound_b;
  if (cfg.init == "xavier_uniform") bound_w = std::sqrt(6.0 / double(fan_in + fan_out));
  if (cfg.init == "kaiming_uniform") bound_w = std::sqrt(6.0 / double(fan_in));
  const double layer_gain = layer < cfg.layer_gains.size() ? cfg.layer_gains[layer] : 1.0;
  const double gain = cfg.init_gain * layer_gain;
  w.uniform_(-bound_w * gain, bound_w * gain);
  b.uniform_(-bound_b * layer_gain, bound_b * layer_gain);
}

}  // namespace

LayeredNetImpl::LayeredNetImpl(const ModelConfig& cfg, std::vector<int64_t> input_shape, int64_t num_classes,
                               bool activate_output)
    : rho_(&activation(cfg.activation)),
      activate_output_(activate_output),
      input_shape_(input_shape),
      num_classes_(num_classes) {
  std::vector<int64_t> shape = input_shape;
  auto add = [&](Layer layer, const std::string& name) {
    layer.weight = register_parameter(name + "_weight", layer.weight);
    layer.bias = register_parameter(name + "_bias", layer.bias);
    initialise(layer.weight, layer.bias, cfg, layers_.size());
    layers_.push_back(std::move(layer));
  };
  if (cfg.kind == "conv") {
    for (size_t i = 0; i < cfg.channels.size(); ++i) {
      Layer l;
      l.kind = LayerKind::Conv;
      l.padding = cfg.padding;
      l.pool = cfg.pool;
      l.avg_pool = cfg.pooling == "avg";
      l.in_shape = shape;
      const int64_t k = cfg.kernel_size;
      const int64_t h = shape[1] + 2 * cfg.padding - k + 1, w = shape[2] + 2 * cfg.padding - k + 1;
      if (h < 1 || w < 1)
        throw std::invalid_argument("conv layer " + std::to_string(i + 1) + ": kernel " + std::to_string(k) +
                                    " is larger than its padded input " + std::to_string(shape[1]));
      l.out_shape = {cfg.channels[i], h / cfg.pool, w / cfg.pool};
      if (l.out_shape[1] < 1 || l.out_shape[2] < 1)
        throw std::invalid_argument("conv layer " + std::to_string(i + 1) + ": pooling leaves an empty image");
      l.weight = torch::empty({cfg.channels[i], shape[0], k, k});
      l.bias = torch::empty({cfg.channels[i]});
      shape = l.out_shape;
      add(std::move(l), "conv" + std::to_string(i + 1));
    }
  }
  std::vector<int64_t> widths = cfg.hidden;
  widths.push_back(num_classes);
  for (size_t i = 0; i < widths.size(); ++i) {
    Layer l;
    l.kind = LayerKind::Linear;
    l.in_shape = {numel(shape)};
    l.out_shape = {widths[i]};
    l.weight = torch::empty({widths[i], numel(shape)});
    l.bias = torch::empty({widths[i]});
    shape = l.out_shape;
    add(std::move(l), "fc" + std::to_string(i + 1));
  }
  if (!cfg.layer_gains.empty() && cfg.layer_gains.size() != layers_.size())  // the message names its key first
    throw std::invalid_argument("model.layer_gains has " + std::to_string(cfg.layer_gains.size()) +
                                " entries but the model has " + std::to_string(layers_.size()) + " layers");
}

torch::Tensor LayeredNetImpl::apply_layer(size_t l, const torch::Tensor& input) const {
  const Layer& layer = layers_.at(l);
  if (layer.kind == LayerKind::Linear) return linear(input, layer.weight, layer.bias);
  namespace F = torch::nn::functional;
  // LayerMaps::conv_input: float32 on the CPU goes channels-last, as in the relaxation. Besides being oneDNN's fast
  // path, it keeps backprop's input gradients right under Debian 13's LibTorch 2.6, whose float32 NCHW conv2d
  // backward returned wrong input gradients (see LayerMaps::feedback_add).
  auto z = F::conv2d(LayerMaps::conv_input(input), layer.weight,
                     F::Conv2dFuncOptions().bias(layer.bias).padding(layer.padding));
  return LayerMaps::pool(layer, z, nullptr);
}

torch::Tensor LayeredNetImpl::logits(const torch::Tensor& x) {
  torch::Tensor s = x;
  for (size_t l = 0; l + 1 < layers_.size(); ++l) {
    s = rho_->f(apply_layer(l, s));
    if (state_quantizer_ && state_quantizer_->covers(l)) s = state_quantizer_->apply(s, l, is_training());
  }
  return apply_layer(layers_.size() - 1, s);
}

torch::Tensor LayeredNetImpl::forward(const torch::Tensor& x) {
  auto z = logits(x);
  return activate_output_ ? rho_->f(z) : z;
}

}  // namespace bilevel
