#include "bilevel/quant/weight_solver.h"

#include "bilevel/kernels/ste_ops.h"

namespace bilevel {

using torch::Tensor;

Tensor WeightSolver::normalised(const QuantParam& p) {
  Tensor u = p.latent.detach() / Quantizer::broadcast(p.grid.scale.detach(), p.latent);
  return p.grid.zero.defined() ? u + Quantizer::broadcast(p.grid.zero.detach(), p.latent) : u;
}

Tensor WeightSolver::scale_grad(const Tensor& g, const Tensor& w, const Tensor& scale) {
  return kernels::channel_scale_grad(g, w, scale);
}

void WeightSolver::init(QuantParam& p, const Quantizer& q) const {
  torch::NoGradGuard no_grad;
  p.grid = q.fit(p.weight);
  p.latent = p.weight.detach().clone();
}

Tensor WeightSolver::forward(const QuantParam& p, const Quantizer& q, const QuantClock&, const uint64_t* key) const {
  return q.quantize(p.latent, p.grid, key);
}

void WeightSolver::update(QuantParam& p, const Quantizer& q, const QuantClock& c) const {
  after_step(p, q, c);
  torch::NoGradGuard no_grad;
  p.weight.copy_(forward(p, q, c, nullptr));
}

void WeightSolver::fused_adam_step(QuantParam&, const Quantizer&, const Tensor&, const Tensor&,
                                   const kernels::AdamElement&, const Tensor&, const Tensor&) const {
  throw std::logic_error("quantization solver '" + name() + "' has no fused Adam step");
}

Tensor WeightSolver::codes(const QuantParam& p, const Quantizer& q) const { return q.codes(p.latent, p.grid); }

}  // namespace bilevel
