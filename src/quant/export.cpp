#include "bilevel/quant/export.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace bilevel {
namespace {

std::vector<float> to_vector(const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous().reshape(-1);
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

}  // namespace

ExportedModel export_model(const LayeredNetImpl& net, const QuantizationImpl* quant, std::vector<std::string>* warnings) {
  ExportedModel m;
  m.input_shape = net.input_shape();
  m.num_classes = net.num_classes();
  m.activate_output = net.activate_output();
  m.activation.rho = net.rho().name;
  const ActivationQuantizer* aq = quant ? quant->activation_quantizer() : nullptr;
  const size_t L = net.num_layers();
  if (aq) {
    const auto& o = aq->options();
    m.activation.quantizer = o.kind;
    m.activation.bits = o.bits;
    m.activation.code_min = aq->code_min();
    m.activation.code_max = aq->code_max();
    m.activation.offset = aq->offset();
    for (size_t l = 0; l + 1 < L; ++l) m.activation.steps.push_back(aq->step(l));
    for (size_t l : o.full_precision) m.activation.full_precision.push_back(int64_t(l));
  } else {
    m.activation.quantizer = "none";
    m.activation.steps.assign(L > 0 ? L - 1 : 0, 1.f);
  }
  for (size_t l = 0; l < L; ++l) {
    const Layer& layer = net.layer(l);
    if (layer.avg_pool && layer.pool > 1)
      throw std::invalid_argument("conv layer " + std::to_string(l + 1) + " averages its pooling windows "
                                  "(model.pooling: avg): the integer model file has max-pooling only");
    ExportedLayer e;
    e.kind = layer.kind == LayerKind::Conv ? "conv" : "linear";
    e.in_shape = layer.in_shape;
    e.out_shape = layer.out_shape;
    e.padding = layer.padding;
    e.pool = layer.pool;
    e.bias = to_vector(layer.bias);
    PackedWeights& w = e.weight;
    w.shape = layer.weight.sizes().vec();
    if (quant && quant->quantized(l)) {
      const Quantizer& q = quant->weight_quantizer();
      const QuantParam& p = *quant->param(l);
      const std::string kind = q.name();
      // Binary and ternary have codes of their own; uniform and registered grids store q − code_min as k-bit
      // unsigned integers.
      w.encoding = kind == "binary" || kind == "ternary" ? kind : "uint";
      w.bits = q.storage_bits();
      w.code_min = kind == "binary" ? -1.f : q.code_min();
      torch::Tensor codes = quant->codes(l);
      w.pack(to_vector(codes));
      w.scale = to_vector(p.grid.scale);
      if (p.grid.zero.defined()) w.zero = to_vector(p.grid.zero);
      if (warnings) {
        const double gap = (q.dequantize(codes, p.grid) - layer.weight.detach()).abs().max().item<double>();
        const double s = p.grid.scale.detach().abs().max().item<double>();
        if (gap > 1e-6 * std::max(1.0, s))
          warnings->push_back("layer " + std::to_string(l + 1) + ": the run's weights are up to " + std::to_string(gap) +
                              " off the grid (solver " + quant->weight_solver().name() +
                              " has not finished annealing); exported hard-quantized");
      }
    } else {
      w.encoding = "float32";
      w.bits = 32;
      w.values = to_vector(layer.weight);
    }
    m.layers.push_back(std::move(e));
  }
  return m;
}

std::vector<LayerSummary> summarize(const LayeredNetImpl& net, const QuantizationImpl* quant) {
  std::vector<LayerSummary> out;
  for (size_t l = 0; l < net.num_layers(); ++l) {
    const Layer& layer = net.layer(l);
    LayerSummary s;
    const auto ws = layer.weight.sizes().vec();
    const int64_t O = ws[0], K = layer.weight.numel() / O;
    const bool conv = layer.kind == LayerKind::Conv;
    s.name = (conv ? "conv" : "fc") + std::to_string(l + 1) + " " + (conv ? "conv" : "linear") + " ";
    s.name += conv ? std::to_string(ws[1]) + "→" + std::to_string(O) + " k" + std::to_string(ws[2])
                   : std::to_string(K) + "→" + std::to_string(O);
    s.weights = layer.weight.numel();
    s.params = s.weights + layer.bias.numel();
    s.macs = layer_macs(layer);
    s.float_bytes = 4 * s.params;
    int64_t extra = 0;
    if (quant && quant->quantized(l)) {
      s.weight_bits = quant->weight_quantizer().storage_bits();
      const QuantParam& p = *quant->param(l);
      extra = 4 * (p.grid.scale.numel() + (p.grid.zero.defined() ? p.grid.zero.numel() : 0));
    }
    const int64_t row_bytes = s.weight_bits == 32 ? 4 * K : 8 * ((K * s.weight_bits + 63) / 64);
    s.packed_bytes = O * row_bytes + 4 * layer.bias.numel() + extra;
    out.push_back(s);
  }
  return out;
}

}  // namespace bilevel
