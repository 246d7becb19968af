#include "bilevel/quant/activation_quantizer.h"

#include <algorithm>
#include <cmath>

#include "bilevel/kernels/quant_ops.h"
#include "bilevel/kernels/counter_rng.h"

namespace bilevel {

using torch::Tensor;

ActivationQuantizer::ActivationQuantizer(ActivationQuantOptions o, std::vector<Tensor> steps)
    : opt_(std::move(o)), steps_(std::move(steps)) {}

float ActivationQuantizer::code_min() const {
  if (!opt_.learned) return 0.f;
  return opt_.signed_range ? -std::ldexp(1.f, opt_.bits - 1) : 0.f;
}
float ActivationQuantizer::code_max() const {
  if (!opt_.learned || !opt_.signed_range) return std::ldexp(1.f, opt_.bits) - 1.f;
  return std::ldexp(1.f, opt_.bits - 1) - 1.f;
}
float ActivationQuantizer::step(size_t layer) const {
  if (opt_.learned) return steps_.at(layer).item<float>();
  return float((opt_.hi - opt_.lo) / (std::ldexp(1.0, opt_.bits) - 1.0));
}

Tensor ActivationQuantizer::codes(const Tensor& s, size_t layer, bool training) const {
  const Tensor x = s.detach().to(torch::kFloat32).contiguous();
  Tensor out = torch::empty_like(x);
  const float lo = code_min(), hi = code_max(), off = offset();
  const bool stochastic = training && opt_.stochastic;
  const uint64_t key = stochastic ? stream_key(seed_, epoch_, batch_, 0x5741ull * 131 + layer) : 0;
  // The kernels (kernels/quant_ops.h; deterministic CPU codes are integer inference's state_codes). A learned step
  // is passed as the tensor it is, so that it is never read on the host.
  if (opt_.learned)
    kernels::activation_codes_out(x, off, steps_.at(layer).detach(), lo, hi, stochastic ? &key : nullptr, out);
  else
    kernels::activation_codes_out(x, off, step(layer), lo, hi, stochastic ? &key : nullptr, out);
  return out;
}

void ActivationQuantizer::apply_(Tensor& s, size_t layer, bool training) const {
  torch::NoGradGuard no_grad;
  Tensor q = codes(s, layer, training);
  if (opt_.learned) q.mul_(steps_.at(layer).detach());  // on the device: no host read of the step
  else q.mul_(step(layer)).add_(offset());
  s.copy_(q);
}

bool ActivationQuantizer::binary_levels(size_t layer, bool training, float& level, float& step) const {
  if (opt_.learned || opt_.bits != 1 || !covers(layer) || (training && opt_.stochastic)) return false;
  level = offset(), step = this->step(layer);
  return true;
}

void ActivationQuantizer::init_step(const Tensor& s, size_t layer) const {
  Tensor st = steps_.at(layer);
  torch::NoGradGuard no_grad;
  const double qp = code_max();
  if (st.device().is_cpu()) {  // reading a CPU tensor costs nothing
    if (st.item<float>() <= 0.f) st.fill_(std::max(2.0 * s.detach().abs().mean().item<double>() / std::sqrt(qp), 1e-6));
    return;
  }
  // Elsewhere the same choice on the device, so that no forward waits for it: a step ≤ 0 becomes LSQ's initial one.
  const Tensor init = (s.detach().abs().mean() * (2.0 / std::sqrt(qp))).clamp_min(1e-6).to(st.scalar_type());
  st.copy_(torch::where(st > 0, st, init));
}

Tensor ActivationQuantizer::apply(const Tensor& s, size_t layer, bool training) const {
  if (!opt_.learned) {
    Tensor q = codes(s, layer, training).mul_(step(layer)).add_(offset()).to(s.scalar_type());
    return s + (q - s).detach();  // straight-through
  }
  Tensor st = steps_.at(layer);
  const double qp = code_max(), qn = -code_min();
  if (training) init_step(s, layer);
  const double g = 1.0 / std::sqrt(double(s[0].numel()) * qp);
  Tensor sg = st * g + (st - st * g).detach();  // value st, gradient scaled by g
  Tensor x = torch::clamp(s / sg, -qn, qp);
  Tensor r = x + (codes(s, layer, training).to(x.scalar_type()) - x).detach();  // round, straight-through gradient
  return r * sg;
}

}  // namespace bilevel
