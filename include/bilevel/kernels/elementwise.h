// Element-wise math shared by the CPU twins (src/kernels/cpu/elementwise_twins.cpp) and the CUDA kernels
// (src/kernels/cuda/*.cu): one definition of each function, compiled by g++ for the host and by nvcc for the
// device, so that both back ends compute the same function. No LibTorch header: the .cu files include this.
//
// BILEVEL_HD and BILEVEL_HDI (bilevel/util/hd.h) mark a function for both host and device under nvcc.
#pragma once

#include <math.h>

#include <cstdint>

#include "bilevel/util/hd.h"

namespace bilevel::kernels {

// The activations of bilevel/nn/activation.h plus a general clip (the energy neuron's clamp with its own box).
enum class Act : int32_t {
  Identity = 0,
  Relu = 1,         // max(x, 0)
  Tanh = 2,
  Sigmoid = 3,      // 1 / (1 + e^{-x})
  HardSigmoid = 4,  // clip(x, 0, 1)
  Sigmoid4 = 5,     // sigmoid(4 (x − ½))
  HardTanh = 6,     // clip(x, −1, 1)
  Softplus = 7,     // log(1 + e^x), = x above 20 (LibTorch's default threshold)
  Silu = 8,         // x sigmoid(x)
  Clip = 9,         // clip(x, lo, hi); hi may be +inf (then max(x, lo))
};

// An activation and, for Act::Clip, its box. Passed by value to kernels.
struct ActParams {
  Act kind = Act::Identity;
  double lo = 0.0, hi = 0.0;
};

// float / double overloads of the C math functions, callable from host and device code alike.
BILEVEL_HDI float k_exp(float x) { return expf(x); }
BILEVEL_HDI double k_exp(double x) { return exp(x); }
BILEVEL_HDI float k_tanh(float x) { return tanhf(x); }
BILEVEL_HDI double k_tanh(double x) { return tanh(x); }
BILEVEL_HDI float k_log1p(float x) { return log1pf(x); }
BILEVEL_HDI double k_log1p(double x) { return log1p(x); }
// NaN-propagating min / max (a NaN operand gives NaN, as LibTorch's clamp does).
template <class T> BILEVEL_HDI T k_max(T a, T b) { return (a != a || a > b) ? a : b; }
template <class T> BILEVEL_HDI T k_min(T a, T b) { return (a != a || a < b) ? a : b; }

template <class T> BILEVEL_HDI T sigmoid(T x) { return T(1) / (T(1) + k_exp(-x)); }

// ρ(x) for one element.
template <class T> BILEVEL_HDI T activate(const ActParams& a, T x) {
  switch (a.kind) {
    case Act::Identity: return x;
    case Act::Relu: return k_max(x, T(0));
    case Act::Tanh: return k_tanh(x);
    case Act::Sigmoid: return sigmoid(x);
    case Act::HardSigmoid: return k_min(k_max(x, T(0)), T(1));
    case Act::Sigmoid4: return sigmoid(T(4) * (x - T(0.5)));
    case Act::HardTanh: return k_min(k_max(x, T(-1)), T(1));
    case Act::Softplus: return x > T(20) ? x : k_log1p(k_exp(x));
    case Act::Silu: return x * sigmoid(x);
    case Act::Clip: return k_min(k_max(x, T(a.lo)), T(a.hi));
  }
  return x;
}

// Dual propagation's dyad (bilevel/rules/dual_prop.h) for one unit with total input u and feedback f:
//   s⁺ = ρ(u + ᾱ f),  s⁻ = ρ(u − α f),  δ = s⁺ − s⁻,  s̄ = s⁻ + α δ  (= α s⁺ + ᾱ s⁻),  ᾱ = 1 − α.
// The same sequence of roundings as the unfused LibTorch code (at::add(u, f, ᾱ), at::sub(u, f, α), ρ, −, add).
template <class T> struct DyadValue {
  T delta, sbar;
};
template <class T> BILEVEL_HDI DyadValue<T> dyad(const ActParams& rho, T u, T f, T alpha) {
  const T sp = activate(rho, u + (T(1) - alpha) * f);
  const T sm = activate(rho, u - alpha * f);
  const T d = sp - sm;
  return {d, sm + alpha * d};
}

// One element of the fixed-point step's epilogue (energy/fixed_point_solver.h): the new state h(v) from the
// accumulated pre-activation v = a·u + c, and its change |h(v) − s_old| (NaN when either is NaN).
template <class T> struct StateValue {
  T s, change;
};
template <class T> BILEVEL_HDI StateValue<T> state_update(const ActParams& h, T v, T s_old) {
  const T s = activate(h, v);
  const T d = s - s_old;
  return {s, d < T(0) ? -d : d};
}

// Running maximum of changes that keeps a NaN once it has seen one (as LibTorch's max() reports NaN).
template <class T> BILEVEL_HDI T max_keep_nan(T running, T x) {
  if (running != running) return running;
  return (x > running || x != x) ? x : running;
}

}  // namespace bilevel::kernels
