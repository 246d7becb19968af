#include "bilevel/optim/fused_adam.h"

#include "bilevel/kernels/fused_ops.h"
#include "bilevel/kernels/optim_ops.h"

#include <torch/autograd.h>

#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace bilevel {

using torch::Tensor;
using torch::optim::AdamOptions;
using torch::optim::AdamParamState;

namespace {

// The optimizer's state map is keyed by the parameter's TensorImpl: in LibTorch 1.x as the pointer printed to a
// string (what c10::guts::to_string writes, which torch::optim::Adam and its serialization use), in 2.x as the
// pointer itself.
template <class Key>
Key key_of(const void* impl) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream os;
    os << impl;
    return os.str();
  } else {
    return static_cast<Key>(const_cast<void*>(impl));
  }
}

bool fusable(const Tensor& p, const Tensor& g, const AdamOptions& o) {
  // The pass is a kernel entry (bilevel/kernels/optim_ops.h): the CPU loop, or the CUDA kernel in a build with them.
  const bool device_ok = p.device().is_cpu() || (p.is_cuda() && kernels::cuda_kernels_built());
  return !o.amsgrad() && device_ok && g.device() == p.device() && p.scalar_type() == torch::kFloat32 &&
         p.is_contiguous() && g.scalar_type() == torch::kFloat32 && g.sizes() == p.sizes() && !g.is_sparse() &&
         g.is_contiguous();
}

// LibTorch's formula with its operators, for what the single pass does not take.
void operator_step(Tensor& p, Tensor grad, AdamParamState& s, const AdamOptions& o) {
  const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
  const double bc1 = 1 - std::pow(beta1, double(s.step())), bc2 = 1 - std::pow(beta2, double(s.step()));
  if (o.weight_decay() != 0) grad = grad.add(p, o.weight_decay());
  s.exp_avg().mul_(beta1).add_(grad, 1 - beta1);
  s.exp_avg_sq().mul_(beta2).addcmul_(grad, grad, 1 - beta2);
  Tensor denom;
  if (o.amsgrad()) {
    torch::max_out(s.max_exp_avg_sq(), s.exp_avg_sq(), s.max_exp_avg_sq());
    denom = (s.max_exp_avg_sq().sqrt() / std::sqrt(bc2)).add_(o.eps());
  } else {
    denom = (s.exp_avg_sq().sqrt() / std::sqrt(bc2)).add_(o.eps());
  }
  p.addcdiv_(s.exp_avg(), denom, -o.lr() / bc1);
}

kernels::AdamElement coefficients(const AdamOptions& o, int64_t step) {
  return kernels::AdamElement::at(o.lr(), std::get<0>(o.betas()), std::get<1>(o.betas()), o.eps(), o.weight_decay(),
                                  step);
}

}  // namespace

void FusedAdam::fuse(const Tensor& param, ParamStep step) { fused_[param.unsafeGetTensorImpl()] = std::move(step); }

AdamParamState& FusedAdam::state_of(const Tensor& p) {
  const auto key = key_of<typename std::decay_t<decltype(state_)>::key_type>(p.unsafeGetTensorImpl());
  auto it = state_.find(key);
  if (it == state_.end()) {
    auto s = std::make_unique<AdamParamState>();
    s->step(0);
    s->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    s->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    it = state_.emplace(key, std::move(s)).first;
  }
  return static_cast<AdamParamState&>(*it->second);
}

Tensor FusedAdam::step(LossClosure closure) {
  torch::NoGradGuard no_grad;
  Tensor loss;
  if (closure) {
    at::AutoGradMode enable(true);
    loss = closure();
  }
  std::vector<std::pair<Tensor, const AdamOptions*>> deferred;
  for (auto& group : param_groups_) {
    const auto& o = static_cast<const AdamOptions&>(group.options());
    for (auto& p : group.params()) {
      if (fused_.count(p.unsafeGetTensorImpl())) {
        deferred.emplace_back(p, &o);
        continue;
      }
      if (!p.grad().defined()) continue;
      const Tensor& g = p.grad();
      AdamParamState& s = state_of(p);
      if (o.amsgrad() && !s.max_exp_avg_sq().defined())
        s.max_exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      s.step(s.step() + 1);
      if (!fusable(p, g, o)) {
        operator_step(p, g, s, o);
        continue;
      }
      const kernels::AdamElement a = coefficients(o, s.step());
      Tensor pd = p.detach(), m = s.exp_avg(), v = s.exp_avg_sq();
      kernels::adam_step_(pd, m, v, g, a);
    }
  }
  for (auto& [p, o] : deferred) {
    AdamParamState& s = state_of(p);
    s.step(s.step() + 1);
    fused_.at(p.unsafeGetTensorImpl())(coefficients(*o, s.step()), s.exp_avg(), s.exp_avg_sq());
  }
  return loss;
}

}  // namespace bilevel
