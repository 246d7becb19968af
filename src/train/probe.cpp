#include "bilevel/train/probe.h"

#include <cmath>

namespace bilevel {

std::vector<torch::Tensor> layer_gradients(LearningRule& rule, LayeredNet& net, const torch::Tensor& x,
                                           const torch::Tensor& y) {
  for (auto& p : net->parameters())
    if (p.grad().defined()) p.grad().zero_();
  rule.train_step(net, x, y);
  std::vector<torch::Tensor> out;
  for (size_t l = 0; l < net->num_layers(); ++l) {
    const Layer& layer = net->layer(l);
    auto g = [](const torch::Tensor& p) {
      return p.grad().defined() ? p.grad().detach().flatten().to(torch::kFloat64) : torch::zeros({p.numel()}, torch::kFloat64);
    };
    out.push_back(torch::cat({g(layer.weight), g(layer.bias)}));
  }
  for (auto& p : net->parameters())
    if (p.grad().defined()) p.grad().zero_();
  return out;
}

namespace {
LayerAlignment align(const torch::Tensor& g, const torch::Tensor& r) {
  LayerAlignment a;
  const double gn = g.norm().item<double>(), rn = r.norm().item<double>();
  a.cosine = (gn > 0 && rn > 0) ? g.dot(r).item<double>() / (gn * rn) : std::nan("");
  a.relative_error = rn > 0 ? (g - r).norm().item<double>() / rn : std::nan("");
  a.norm_ratio = rn > 0 ? gn / rn : std::nan("");
  return a;
}
}  // namespace

Alignment compare_gradients(const std::vector<torch::Tensor>& estimate, const std::vector<torch::Tensor>& reference) {
  Alignment a;
  for (size_t l = 0; l < estimate.size(); ++l) a.layers.push_back(align(estimate[l], reference[l]));
  a.overall = align(torch::cat(estimate), torch::cat(reference));
  return a;
}

std::vector<std::string> alignment_columns(size_t layers) {
  std::vector<std::string> c{"probe_cosine", "probe_rel_error"};
  for (size_t l = 1; l <= layers; ++l) {
    c.push_back("probe_cosine_layer" + std::to_string(l));
    c.push_back("probe_norm_ratio_layer" + std::to_string(l));
  }
  return c;
}

std::vector<torch::Tensor> latent_layer_gradients(const LayeredNetImpl& net, const QuantizationImpl& quant,
                                                  const WeightSolver& solver, const std::vector<torch::Tensor>& layers,
                                                  const QuantClock& clock) {
  std::vector<torch::Tensor> weight_grads;
  for (size_t l = 0; l < layers.size(); ++l) {
    const torch::Tensor& w = net.layer(l).weight;
    weight_grads.push_back(layers[l].slice(0, 0, w.numel()).to(w.scalar_type()).view(w.sizes()));
  }
  const std::vector<torch::Tensor> latent = quant.latent_gradients(solver, weight_grads, clock);
  std::vector<torch::Tensor> out = layers;
  for (size_t l = 0; l < layers.size() && l < latent.size(); ++l)
    if (latent[l].defined())
      out[l] = torch::cat({latent[l].flatten().to(torch::kFloat64), layers[l].slice(0, net.layer(l).weight.numel())});
  return out;
}

std::vector<double> alignment_values(const Alignment& a) {
  std::vector<double> v{a.overall.cosine, a.overall.relative_error};
  for (const auto& l : a.layers) v.insert(v.end(), {l.cosine, l.norm_ratio});
  return v;
}

}  // namespace bilevel
