// Adam's update of one element (Kingma & Ba 2015, Algorithm 1, with L2 weight decay added to the gradient as
// torch::optim::Adam does), as a plain inline function, so that an optimizer pass and a quantization solver's fused
// pass (bilevel/quant/weight_solver.h) compute the same step. At step t with learning rate lr:
//   g ← g + λ θ
//   m ← β1 m + (1 − β1) g
//   v ← β2 v + (1 − β2) g²
//   θ ← θ − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
#pragma once

#include <math.h>

#include "bilevel/util/hd.h"

namespace bilevel::kernels {

// The step's coefficients, computed once per tensor and step (AdamElement::at).
struct AdamElement {
  float beta1 = 0.9f, beta2 = 0.999f;
  float one_minus_beta1 = 0.1f, one_minus_beta2 = 0.001f;  // rounded from double, as LibTorch's alpha arguments are
  float step_size = 0;     // lr / (1 − β1^t)
  float inv_sqrt_bc2 = 1;  // 1 / √(1 − β2^t)
  float eps = 1e-8f;
  float weight_decay = 0;

  static AdamElement at(double lr, double beta1, double beta2, double eps, double weight_decay, long long t) {
    AdamElement a;
    a.beta1 = float(beta1), a.beta2 = float(beta2), a.eps = float(eps), a.weight_decay = float(weight_decay);
    a.one_minus_beta1 = float(1.0 - beta1), a.one_minus_beta2 = float(1.0 - beta2);
    a.step_size = float(lr / (1.0 - pow(beta1, double(t))));
    a.inv_sqrt_bc2 = float(1.0 / sqrt(1.0 - pow(beta2, double(t))));
    return a;
  }
};

// One element: updates m and v in place and returns the new θ.
BILEVEL_HDI float adam_update(float g, float& m, float& v, float theta, const AdamElement& a) {
  g += a.weight_decay * theta;
  m = a.beta1 * m + a.one_minus_beta1 * g;
  v = a.beta2 * v + a.one_minus_beta2 * g * g;
  return theta - a.step_size * m / (sqrtf(v) * a.inv_sqrt_bc2 + a.eps);
}

}  // namespace bilevel::kernels
