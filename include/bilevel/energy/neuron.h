// The neurons of an energy-based layered network: the element-wise part of the energy.
//
// Every state unit s carries a convex potential G_ρ with G_ρ' = ρ⁻¹ (Legendre dual of the primitive of ρ), so
// that minimising  G_ρ(s) − u·s  over s gives s = ρ(u): the neuron's response to its total input u is the exact
// minimiser of its own energy. This is what makes the "primitive function" form of the energy (Laborieux et al.
// 2021, "Scaling equilibrium propagation to deep ConvNets", eq. 4; Scellier et al. 2023, "Energy-based learning
// algorithms for analog computing", §2) a true energy for any strictly monotone ρ:
//
//   ρ = clip(·, lo, hi) (hard_sigmoid, hard_tanh, relu), identity:  G(s) = ½ s²  on the box [lo, hi]
//   ρ = sigmoid(a u + c) (sigmoid: a=1, c=0; sigmoid4: a=4, c=−2):  G(s) = (s log s + (1−s) log(1−s) − c s) / a
//   ρ = tanh:                                                        G(s) = s atanh(s) + ½ log(1 − s²)
//   ρ = softplus:                                                    G' = log(eˢ − 1) (no closed-form value)
//
// Non-monotone activations (silu) have no such potential and are rejected by from_activation().
//
// For speed, ρ is written as ρ(u) = h(a·u + c) with an in-place kernel h (clamp_, sigmoid_, tanh_, …): the
// relaxation loops accumulate v = a·u + c directly (scaling weights and biases once per batch) and finish with
// one in-place h_(v).
#pragma once

#include <torch/types.h>

#include <string>

#include "bilevel/kernels/elementwise.h"
#include "bilevel/nn/activation.h"

namespace bilevel {

class Neuron {
 public:
  enum class Kernel { Identity, Clamp, Sigmoid, Tanh, Softplus };

  // Throws std::invalid_argument naming the activation when it cannot define an energy (non-monotone ρ).
  static Neuron from_activation(const Activation& rho);

  const std::string& name() const { return name_; }
  Kernel kernel() const { return kernel_; }
  // h as the kernels' plain activation parameters (kernels/elementwise.h), for their fused entries.
  kernels::ActParams act_params() const;
  double scale() const { return scale_; }  // a
  double shift() const { return shift_; }  // c
  double lo() const { return lo_; }        // Clamp bounds
  double hi() const { return hi_; }
  double max_slope() const { return max_slope_; }  // max ρ'
  bool piecewise_linear() const { return kernel_ == Kernel::Identity || kernel_ == Kernel::Clamp; }

  // v ← h(v) in place, where v already holds a·u + c.
  void finish_(torch::Tensor& v) const;
  // ρ(u), out of place and differentiable by autograd (BPTT).
  torch::Tensor rho(const torch::Tensor& u) const;
  // ρ'(u) expressed through the state s = ρ(u) (for clip-type ρ: 1 strictly inside the box, 0 on its faces).
  torch::Tensor drho_from_state(const torch::Tensor& s) const;
  // ρ⁻¹(s) = G'(s) (for clip-type ρ: s itself, the gradient of the smooth part).
  torch::Tensor inverse(const torch::Tensor& s) const;
  // Σ over each example's units of G(s): [B]. Throws std::logic_error for softplus.
  torch::Tensor potential(const torch::Tensor& s) const;

  // The exact minimiser over s of  G(s) − u·s + (β/2)‖s − y‖²  (a squared-error nudge), element-wise, written
  // into s (whose current value is the warm start). Clip-type ρ: s = clip((u + β y)/(1 + β), lo, hi). Smooth ρ:
  // Newton's method on the pre-activation z of  z + β(ρ(z) − y) = u,  s = ρ(z), to |Δz| < 1e-13 (float64)
  // or 8 ulps (float32), relative to max|z| (at most 30 iterations). Requires 1 + β·max ρ' > 0 (always true for β ≥ 0).
  void output_prox_(torch::Tensor& s, const torch::Tensor& u, const torch::Tensor& y, double beta) const;

 private:
  std::string name_;
  Kernel kernel_ = Kernel::Identity;
  double scale_ = 1.0, shift_ = 0.0;
  double lo_ = 0.0, hi_ = 0.0;  // Clamp only (hi may be +inf for relu)
  double max_slope_ = 1.0;      // max ρ'
};

}  // namespace bilevel
