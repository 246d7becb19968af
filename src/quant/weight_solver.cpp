#include "bilevel/quant/weight_solver.h"

#include <ATen/Parallel.h>

#include "bilevel/quant/element.h"

namespace bilevel {

using torch::Tensor;

Tensor WeightSolver::normalised(const QuantParam& p) {
  Tensor u = p.latent.detach() / Quantizer::broadcast(p.grid.scale.detach(), p.latent);
  return p.grid.zero.defined() ? u + Quantizer::broadcast(p.grid.zero.detach(), p.latent) : u;
}

Tensor WeightSolver::scale_grad(const Tensor& g, const Tensor& w, const Tensor& scale) {
  const int64_t channels = scale.numel();
  if (!g.device().is_cpu() || g.scalar_type() != torch::kFloat32 || w.scalar_type() != torch::kFloat32 ||
      scale.scalar_type() != torch::kFloat32)
    return Quantizer::channel_sum(g * w / Quantizer::broadcast(scale.detach(), g), channels);
  const Tensor gc = g.contiguous(), wc = w.contiguous(), s = scale.detach().contiguous();
  const int64_t rows = gc.size(0), inner = gc.numel() / rows;
  std::vector<float> row(size_t(rows), 0.f);
  const float *gp = gc.data_ptr<float>(), *wp = wc.data_ptr<float>(), *sp = s.data_ptr<float>();
  at::parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) row[size_t(r)] = qe::dot8(gp + r * inner, wp + r * inner, inner) / sp[channels > 1 ? r : 0];
  });
  Tensor out = torch::zeros({channels});
  float* op = out.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) op[channels > 1 ? r : 0] += row[size_t(r)];
  return out.to(scale.device());
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
