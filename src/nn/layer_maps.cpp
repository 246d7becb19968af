#include "bilevel/nn/layer_maps.h"

#include <ATen/ATen.h>

#include "bilevel/kernels/cpu/split_gemm.h"

namespace bilevel {

using torch::Tensor;


Tensor& grad_buffer(const Tensor& param) {
  if (!param.grad().defined()) param.mutable_grad() = torch::zeros_like(param);
  return param.mutable_grad();
}

LayerMaps::LayerMaps(const LayeredNetImpl& net) {
  for (size_t l = 0; l < net.num_layers(); ++l) layers_.push_back(&net.layer(l));
}

Tensor LayerMaps::flat(const Tensor& t) { return t.dim() == 2 ? t : t.view({t.size(0), -1}); }

namespace {
// The tensors conv_input (and feedback_add's convolution) put in channels-last: 4-d float32 on the CPU.
bool channels_last_on_cpu(const Tensor& t) {
  return t.dim() == 4 && LayerMaps::conv_format(t.options()) == at::MemoryFormat::ChannelsLast;
}
// g in the memory format of the max-pooling switches it is unpooled with (g itself without switches).
Tensor like_switches(const Tensor& g, const Tensor& switches) {
  if (!switches.defined() || switches.dim() != 4) return g;
  return g.contiguous(switches.suggest_memory_format());
}
}  // namespace

// Channels-last (NHWC) for float32 on the CPU: for the relaxation's conv + max-pool (fmnist_conv_ep's second layer,
// batch 64, one thread) LibTorch then takes its oneDNN convolution and its vectorised NHWC pooling: ~2.2 + 0.4 ms
// instead of ~5.9 + 3.0 ms in NCHW, for a 0.05 ms layout copy. The result is the same map (values differ only by
// the convolution's summation order); the pooling indices are positions in each channel's plane whatever the
// layout, so max_unpool2d and the switches are unchanged.
at::MemoryFormat LayerMaps::conv_format(const torch::TensorOptions& options) {
  return options.device().is_cpu() && options.dtype() == torch::kFloat ? at::MemoryFormat::ChannelsLast
                                                                       : at::MemoryFormat::Contiguous;
}

Tensor LayerMaps::conv_input(const Tensor& in) {
  if (!channels_last_on_cpu(in)) return in;
  return in.contiguous(at::MemoryFormat::ChannelsLast);
}

std::vector<int64_t> LayerMaps::conv_out_hw(const Layer& layer, const Tensor& in) {
  const int64_t k = layer.weight.size(2);
  return {in.size(2) + 2 * layer.padding - k + 1, in.size(3) + 2 * layer.padding - k + 1};
}

Tensor LayerMaps::bias_view(const Layer& layer) {
  return layer.kind == LayerKind::Conv ? layer.bias.view({-1, 1, 1}) : layer.bias;
}

bool LayerMaps::has_switches(const Layer& layer) {
  return layer.kind == LayerKind::Conv && layer.pool > 1 && !layer.avg_pool;
}

Tensor LayerMaps::pool(const Layer& layer, const Tensor& z, Tensor* switches) {
  if (layer.kind != LayerKind::Conv || layer.pool <= 1) return z;
  const int64_t p = layer.pool;
  if (layer.avg_pool) return at::avg_pool2d(z, {p, p}, {p, p});
  auto pr = at::max_pool2d_with_indices(z, {p, p}, {p, p});
  if (switches) *switches = std::get<1>(pr);
  return std::get<0>(pr);
}

Tensor LayerMaps::unpool(const Layer& layer, const Tensor& g, const Tensor& switches, at::IntArrayRef hw) {
  if (layer.kind != LayerKind::Conv || layer.pool <= 1) return g;
  const int64_t p = layer.pool;
  if (!layer.avg_pool) return at::max_unpool2d(g, switches, hw);
  // avg_pool2d's input gradient; its `self` argument only gives the shape.
  const Tensor like = at::empty({g.size(0), g.size(1), hw[0], hw[1]}, g.options());
  return at::avg_pool2d_backward(g, like, {p, p}, {p, p}, {0, 0}, false, true, c10::nullopt);
}

void LayerMaps::forward_into(size_t l, const Tensor& in, const Tensor& self, double alpha, Tensor& out,
                             Tensor* pool, Tensor* product) const {
  const Layer& L = *layers_[l];
  if (L.kind == LayerKind::Linear) {
    Tensor o = flat(out);
    kernels::cpu::split_addmm(o, self, flat(in), L.weight.t(), alpha);
    return;
  }
  const Tensor z = LayerMaps::pool(L, at::conv2d(conv_input(in), L.weight, {}, 1, L.padding), pool);
  at::add_out(out, self, z, alpha);
  if (product) *product = z;
}

void LayerMaps::feedback_add(size_t l, const Tensor& g, const Tensor& pool, double alpha, Tensor& out) const {
  const Layer& L = *layers_[l];
  if (L.kind == LayerKind::Linear) {
    Tensor o = flat(out);
    kernels::cpu::split_addmm(o, flat(g), L.weight, 1.0, alpha);
    return;
  }
  // The pooling's adjoint in the layout of its switches (a channels-last pooling's), so that its output is already
  // in the convolution's layout: unpooling the quarter-size g in another layout costs 5× more, and converting its
  // output after it 4× the copy.
  const Tensor up = conv_input(unpool(L, like_switches(g, pool), pool, conv_out_hw(L, out)));
  // The input gradient of the convolution, through the kernel autograd uses for conv2d's backward: on CPU it is
  // about twice as fast as at::conv_transpose2d for the same product (31 vs 16 ms for the fmnist ConvNet's second
  // layer, batch 64, one thread). The input argument stands in for the layer input (only its shape and layout are
  // read). Float32 goes channels-last, as in the forward: Debian 13's LibTorch 2.6 (oneDNN 3.7.2) returned a wrong
  // float32 input gradient for NCHW tensors (batch 6, 4 -> 5 channels, 6x6, 3x3 kernel, padding 1: off by up to
  // 18 against float64 autograd; channels-last: 4e-6), which EpRules.Float32ConvRelaxationMatchesFloat64 caught.
  const Tensor shape = channels_last_on_cpu(out) && !out.is_contiguous(at::MemoryFormat::ChannelsLast)
                           ? at::empty_like(out, at::MemoryFormat::ChannelsLast)
                           : out;
  out.add_(std::get<0>(at::convolution_backward(up, shape, L.weight, at::OptionalIntArrayRef{}, {1, 1},
                                                {L.padding, L.padding}, {1, 1}, false, {0, 0}, 1,
                                                {true, false, false})),
           alpha);
}

Tensor LayerMaps::linearized(size_t l, const Tensor& in, const Tensor& pool) const {
  const Layer& L = *layers_[l];
  if (L.kind == LayerKind::Linear) return flat(in).mm(L.weight.t());
  Tensor z = at::conv2d(in, L.weight, {}, 1, L.padding);
  if (has_switches(L)) return z.flatten(2).gather(2, pool.flatten(2)).view(pool.sizes());
  return LayerMaps::pool(L, z, nullptr);
}

void LayerMaps::param_grad_add(size_t l, const Tensor& g, const Tensor& in, const Tensor& pool, double coeff,
                               Tensor& gW, Tensor* gb) const {
  const Layer& L = *layers_[l];
  if (L.kind == LayerKind::Linear) {
    Tensor gf = flat(g);
    kernels::cpu::split_addmm(gW, gf.t(), flat(in), 1.0, coeff);
    if (gb) gb->add_(gf.sum(0), coeff);
    return;
  }
  const Tensor up = unpool(L, like_switches(g, pool), pool, conv_out_hw(L, in));
  auto grads = at::convolution_backward(up, in, L.weight, at::OptionalIntArrayRef{}, {1, 1},
                                        {L.padding, L.padding}, {1, 1}, false, {0, 0}, 1, {false, true, false});
  gW.add_(std::get<1>(grads), coeff);
  if (gb) gb->add_(g.sum({0, 2, 3}), coeff);
}

}  // namespace bilevel
