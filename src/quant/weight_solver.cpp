#include "bilevel/quant/weight_solver.h"

namespace bilevel {

using torch::Tensor;

Tensor WeightSolver::normalised(const QuantParam& p) {
  Tensor u = p.latent.detach() / Quantizer::broadcast(p.grid.scale.detach(), p.latent);
  return p.grid.zero.defined() ? u + Quantizer::broadcast(p.grid.zero.detach(), p.latent) : u;
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

Tensor WeightSolver::codes(const QuantParam& p, const Quantizer& q) const { return q.codes(p.latent, p.grid); }

}  // namespace bilevel
