#include "bilevel/energy/neuron.h"

#include <cmath>
#include <limits>
#include <stdexcept>

namespace bilevel {

using torch::Tensor;

Neuron Neuron::from_activation(const Activation& rho) {
  Neuron n;
  n.name_ = rho.name;
  const double inf = std::numeric_limits<double>::infinity();
  if (rho.name == "identity") {
    n.kernel_ = Kernel::Identity;
  } else if (rho.name == "relu") {
    n.kernel_ = Kernel::Clamp, n.lo_ = 0.0, n.hi_ = inf;
  } else if (rho.name == "hard_sigmoid") {
    n.kernel_ = Kernel::Clamp, n.lo_ = 0.0, n.hi_ = 1.0;
  } else if (rho.name == "hard_tanh") {
    n.kernel_ = Kernel::Clamp, n.lo_ = -1.0, n.hi_ = 1.0;
  } else if (rho.name == "sigmoid") {
    n.kernel_ = Kernel::Sigmoid, n.max_slope_ = 0.25;
  } else if (rho.name == "sigmoid4") {  // sigmoid(4(u − ½)) = sigmoid(4u − 2)
    n.kernel_ = Kernel::Sigmoid, n.scale_ = 4.0, n.shift_ = -2.0, n.max_slope_ = 1.0;
  } else if (rho.name == "tanh") {
    n.kernel_ = Kernel::Tanh;
  } else if (rho.name == "softplus") {
    n.kernel_ = Kernel::Softplus;
  } else {
    throw std::invalid_argument("activation '" + rho.name +
                                "' is not monotone, so it defines no energy; energy-based rules accept identity, "
                                "relu, hard_sigmoid, hard_tanh, sigmoid, sigmoid4, tanh, softplus");
  }
  return n;
}

void Neuron::finish_(Tensor& v) const {
  switch (kernel_) {
    case Kernel::Identity: return;
    case Kernel::Clamp:
      if (std::isinf(hi_)) v.clamp_min_(lo_);
      else v.clamp_(lo_, hi_);
      return;
    case Kernel::Sigmoid: v.sigmoid_(); return;
    case Kernel::Tanh: v.tanh_(); return;
    case Kernel::Softplus: v.copy_(torch::softplus(v)); return;
  }
}

Tensor Neuron::rho(const Tensor& u) const {
  Tensor v = (scale_ == 1.0 && shift_ == 0.0) ? u : u * scale_ + shift_;
  switch (kernel_) {
    case Kernel::Identity: return v;
    case Kernel::Clamp: return std::isinf(hi_) ? torch::clamp_min(v, lo_) : torch::clamp(v, lo_, hi_);
    case Kernel::Sigmoid: return torch::sigmoid(v);
    case Kernel::Tanh: return torch::tanh(v);
    case Kernel::Softplus: return torch::softplus(v);
  }
  return v;
}

Tensor Neuron::drho_from_state(const Tensor& s) const {
  switch (kernel_) {
    case Kernel::Identity: return torch::ones_like(s);
    case Kernel::Clamp: return ((s > lo_) & (s < hi_)).to(s.scalar_type());
    case Kernel::Sigmoid: return s * (1 - s) * scale_;
    case Kernel::Tanh: return 1 - s * s;
    case Kernel::Softplus: return -torch::expm1(-s);
  }
  return s;
}

Tensor Neuron::inverse(const Tensor& s) const {
  switch (kernel_) {
    case Kernel::Identity:
    case Kernel::Clamp: return s;
    case Kernel::Sigmoid: return (torch::logit(s) - shift_) / scale_;
    case Kernel::Tanh: return torch::atanh(s);
    case Kernel::Softplus: return torch::log(torch::expm1(s));
  }
  return s;
}

Tensor Neuron::potential(const Tensor& s) const {
  Tensor g;
  switch (kernel_) {
    case Kernel::Identity:
    case Kernel::Clamp: g = 0.5 * s * s; break;
    case Kernel::Sigmoid: g = (torch::xlogy(s, s) + torch::xlogy(1 - s, 1 - s) - shift_ * s) / scale_; break;
    case Kernel::Tanh: g = s * torch::atanh(s) + 0.5 * torch::log1p(-s * s); break;
    case Kernel::Softplus: throw std::logic_error("the softplus neuron's potential has no closed form");
  }
  return g.flatten(1).sum(1);
}

void Neuron::output_prox_(Tensor& s, const Tensor& u, const Tensor& y, double beta) const {
  if (1.0 + beta * max_slope_ <= 0.0)
    throw std::invalid_argument("nudging strength β = " + std::to_string(beta) +
                                " makes the output layer's energy non-convex for activation " + name_);
  if (piecewise_linear()) {
    Tensor t = (u + beta * y) / (1.0 + beta);
    if (kernel_ == Kernel::Clamp) {
      if (std::isinf(hi_)) t.clamp_min_(lo_);
      else t.clamp_(lo_, hi_);
    }
    s.copy_(t);
    return;
  }
  // Newton on z + β(ρ(z) − y) − u = 0 (derivative 1 + β ρ'(z) > 0), to a few ulps of the dtype.
  const double eps = s.scalar_type() == torch::kDouble ? 1e-13 : 8.0 * double(std::numeric_limits<float>::epsilon());
  Tensor z = u.clone();
  for (int it = 0; it < 30; ++it) {
    Tensor r = rho(z);
    Tensor step = (z + beta * (r - y) - u).div_(1.0 + beta * drho_from_state(r));
    z.sub_(step);
    if (step.abs().max().item<double>() < eps * (1.0 + z.abs().max().item<double>())) break;
  }
  s.copy_(rho(z));
}

kernels::ActParams Neuron::act_params() const {
  using kernels::Act;
  kernels::ActParams a;
  switch (kernel_) {
    case Kernel::Identity: a.kind = Act::Identity; break;
    case Kernel::Clamp: a.kind = Act::Clip, a.lo = lo_, a.hi = hi_; break;
    case Kernel::Sigmoid: a.kind = Act::Sigmoid; break;
    case Kernel::Tanh: a.kind = Act::Tanh; break;
    case Kernel::Softplus: a.kind = Act::Softplus; break;
  }
  return a;
}

}  // namespace bilevel
