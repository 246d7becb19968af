#include "bilevel/quant/activation_quantizer.h"

#include <cmath>

#include "bilevel/kernels/cpu/int_gemm.h"
#include "bilevel/kernels/quant_ops.h"
#include "bilevel/quant/counter_rng.h"

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
  const float lo = code_min(), hi = code_max(), d = step(layer), off = offset();
  const bool stochastic = training && opt_.stochastic;
  const uint64_t key = stochastic ? stream_key(seed_, epoch_, batch_, 0x5741ull * 131 + layer) : 0;
  if (x.device().is_cpu() && !stochastic) {
    cpu::state_codes(x.data_ptr<float>(), x.numel(), off, 1.f / d, lo, hi, out.data_ptr<float>());  // as integer inference
    return out;
  }
  // Stochastic, or off the CPU: the kernels (kernels/quant_ops.h; the same deterministic function as state_codes).
  kernels::activation_codes_out(x, off, d, lo, hi, stochastic ? &key : nullptr, out);
  return out;
}

void ActivationQuantizer::apply_(Tensor& s, size_t layer, bool training) const {
  torch::NoGradGuard no_grad;
  Tensor q = codes(s, layer, training).mul_(step(layer)).add_(offset());
  s.copy_(q);
}

Tensor ActivationQuantizer::apply(const Tensor& s, size_t layer, bool training) const {
  if (!opt_.learned) {
    Tensor q = codes(s, layer, training).mul_(step(layer)).add_(offset()).to(s.scalar_type());
    return s + (q - s).detach();  // straight-through
  }
  Tensor st = steps_.at(layer);
  const double qp = code_max(), qn = -code_min();
  if (training && st.item<float>() <= 0.f) {  // LSQ's initial step, from the first batch
    torch::NoGradGuard no_grad;
    st.fill_(std::max(2.0 * s.detach().abs().mean().item<double>() / std::sqrt(qp), 1e-6));
  }
  const double g = 1.0 / std::sqrt(double(s[0].numel()) * qp);
  Tensor sg = st * g + (st - st * g).detach();  // value st, gradient scaled by g
  Tensor x = torch::clamp(s / sg, -qn, qp);
  Tensor r = x + (codes(s, layer, training).to(x.scalar_type()) - x).detach();  // round, straight-through gradient
  return r * sg;
}

}  // namespace bilevel
