#include "bilevel/kernels/optim_ops.h"

#include <algorithm>
#include <stdexcept>
#include <string>

#include "bilevel/kernels/cpu/optim_loops.h"
#include "bilevel/kernels/ste_step.h"
#include "dispatch.h"

namespace bilevel::kernels {

using torch::Tensor;

void adam_step_(Tensor& p, Tensor& m, Tensor& v, const Tensor& g, const AdamElement& a) {
  check_tensors("adam_step_", {{"p", &p}, {"m", &m}, {"v", &v}, {"g", &g}}, true);
  float *pp = p.data_ptr<float>(), *mp = m.data_ptr<float>(), *vp = v.data_ptr<float>();
  const float* gp = g.data_ptr<float>();
  const int64_t n = p.numel();
  dispatch_n("adam_step_", p, n, 32768,
             [&](int64_t b, int64_t e) { cpu::adam_pass(pp + b, mp + b, vp + b, gp + b, e - b, a); },
             BILEVEL_CUDA_CALL(launch_adam(pp, mp, vp, gp, n, a, stream)));
}

void ste_adam_step_(Tensor& theta, Tensor& w, Tensor& g, Tensor& m, Tensor& v, const Tensor& scale_before,
                    const Tensor& scale, const Tensor& zero, double lo, double hi, CodeSpec spec,
                    const AdamElement& adam) {
  check_tensors("ste_adam_step_", {{"theta", &theta}, {"w", &w}, {"g", &g}, {"m", &m}, {"v", &v}}, true);
  if (theta.dim() == 0 || theta.size(0) == 0)
    throw std::invalid_argument("bilevel::kernels::ste_adam_step_: argument 'theta' must have at least one row");
  const float* const z = check_grid("ste_adam_step_", theta, scale, zero);
  check_grid("ste_adam_step_", theta, scale_before, Tensor());
  if (scale_before.numel() != scale.numel())
    throw std::invalid_argument("bilevel::kernels::ste_adam_step_: argument 'scale_before' has " +
                                std::to_string(scale_before.numel()) + " elements but 'scale' has " +
                                std::to_string(scale.numel()));
  const int64_t n = theta.numel(), rows = theta.size(0), inner = n / rows, channels = scale.numel();
  const SteAdamArgs a{theta.data_ptr<float>(), w.data_ptr<float>(), g.data_ptr<float>(), m.data_ptr<float>(),
                      v.data_ptr<float>(), scale_before.data_ptr<float>(), scale.data_ptr<float>(), z, n,
                      channels > 1 ? inner : n, float(lo), float(hi), spec, adam};
  // The CPU loop runs row by row (one row: one channel's constants), rows split over LibTorch's threads.
  dispatch_n("ste_adam_step_", theta, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(inner, 1)),
             [&](int64_t rb, int64_t re) {
               for (int64_t r = rb; r < re; ++r) {
                 const int64_t c = channels > 1 ? r : 0;
                 cpu::SteChannel ch;
                 ch.inv_scale_before = 1.f / a.scale_before[c], ch.scale = a.scale[c], ch.zero = zero_at(a.zero, c);
                 ch.lo = a.lo, ch.hi = a.hi, ch.code_lo = spec.lo, ch.code_hi = spec.hi;
                 const int64_t b = r * inner;
                 cpu::ste_adam_pass(a.theta + b, a.w + b, a.g + b, a.m + b, a.v + b, inner, ch, spec.kind, adam);
               }
             },
             BILEVEL_CUDA_CALL(launch_ste_adam(a, stream)));
}

}  // namespace bilevel::kernels
