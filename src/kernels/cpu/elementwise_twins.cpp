#include "bilevel/kernels/cpu/elementwise_twins.h"

namespace bilevel::kernels::cpu {
namespace {

template <class T>
void dyad_loop(const T* u, const T* f, T* delta, T* sbar, int64_t n, T alpha, ActParams rho) {
  for (int64_t i = 0; i < n; ++i) {
    const DyadValue<T> d = dyad(rho, u[i], f[i], alpha);
    delta[i] = d.delta;
    sbar[i] = d.sbar;
  }
}

// The switch on the activation is hoisted out of the loop: one instantiation per kind lets the compiler
// vectorise the clip-type ones.
template <class T, Act K>
T state_loop(T* v, const T* s_old, int64_t n, ActParams h) {
  h.kind = K;
  T r = T(0);
  for (int64_t i = 0; i < n; ++i) {
    const StateValue<T> s = state_update(h, v[i], s_old[i]);
    v[i] = s.s;
    r = max_keep_nan(r, s.change);
  }
  return r;
}

template <class T>
T state_dispatch(T* v, const T* s_old, int64_t n, ActParams h) {
  switch (h.kind) {
    case Act::Identity: return state_loop<T, Act::Identity>(v, s_old, n, h);
    case Act::Relu: return state_loop<T, Act::Relu>(v, s_old, n, h);
    case Act::Tanh: return state_loop<T, Act::Tanh>(v, s_old, n, h);
    case Act::Sigmoid: return state_loop<T, Act::Sigmoid>(v, s_old, n, h);
    case Act::HardSigmoid: return state_loop<T, Act::HardSigmoid>(v, s_old, n, h);
    case Act::Sigmoid4: return state_loop<T, Act::Sigmoid4>(v, s_old, n, h);
    case Act::HardTanh: return state_loop<T, Act::HardTanh>(v, s_old, n, h);
    case Act::Softplus: return state_loop<T, Act::Softplus>(v, s_old, n, h);
    case Act::Silu: return state_loop<T, Act::Silu>(v, s_old, n, h);
    case Act::Clip: return state_loop<T, Act::Clip>(v, s_old, n, h);
  }
  return state_loop<T, Act::Identity>(v, s_old, n, h);
}

template <class T>
void state_rows(T* v, const T* s_old, int64_t rows, int64_t n, ActParams h, T* change, const T* s_older,
                T* change_older) {
  for (int64_t r = 0; r < rows; ++r) {
    change[r] = max_keep_nan(change[r], state_dispatch(v + r * n, s_old + r * n, n, h));
    if (!s_older) continue;
    T m = T(0);
    for (int64_t j = 0; j < n; ++j) {
      const T d = v[r * n + j] - s_older[r * n + j];
      m = max_keep_nan(m, d < T(0) ? -d : d);
    }
    change_older[r] = max_keep_nan(change_older[r], m);
  }
}

template <class T, Act K>
void dyad_fixed(const T* u, const T* f, T* delta, T* sbar, int64_t n, T alpha, ActParams rho) {
  rho.kind = K;
  dyad_loop(u, f, delta, sbar, n, alpha, rho);
}

template <class T>
void dyad_dispatch(const T* u, const T* f, T* delta, T* sbar, int64_t n, T alpha, ActParams rho) {
  switch (rho.kind) {
    case Act::Identity: return dyad_fixed<T, Act::Identity>(u, f, delta, sbar, n, alpha, rho);
    case Act::Relu: return dyad_fixed<T, Act::Relu>(u, f, delta, sbar, n, alpha, rho);
    case Act::Tanh: return dyad_fixed<T, Act::Tanh>(u, f, delta, sbar, n, alpha, rho);
    case Act::Sigmoid: return dyad_fixed<T, Act::Sigmoid>(u, f, delta, sbar, n, alpha, rho);
    case Act::HardSigmoid: return dyad_fixed<T, Act::HardSigmoid>(u, f, delta, sbar, n, alpha, rho);
    case Act::Sigmoid4: return dyad_fixed<T, Act::Sigmoid4>(u, f, delta, sbar, n, alpha, rho);
    case Act::HardTanh: return dyad_fixed<T, Act::HardTanh>(u, f, delta, sbar, n, alpha, rho);
    case Act::Softplus: return dyad_fixed<T, Act::Softplus>(u, f, delta, sbar, n, alpha, rho);
    case Act::Silu: return dyad_fixed<T, Act::Silu>(u, f, delta, sbar, n, alpha, rho);
    case Act::Clip: return dyad_fixed<T, Act::Clip>(u, f, delta, sbar, n, alpha, rho);
  }
}

}  // namespace

void dyad_update(const float* u, const float* f, float* delta, float* sbar, int64_t n, float alpha, ActParams rho) {
  dyad_dispatch(u, f, delta, sbar, n, alpha, rho);
}
void dyad_update(const double* u, const double* f, double* delta, double* sbar, int64_t n, double alpha,
                 ActParams rho) {
  dyad_dispatch(u, f, delta, sbar, n, alpha, rho);
}
float state_update(float* v, const float* s_old, int64_t n, ActParams h) { return state_dispatch(v, s_old, n, h); }
double state_update(double* v, const double* s_old, int64_t n, ActParams h) { return state_dispatch(v, s_old, n, h); }
void state_update_rows(float* v, const float* s_old, int64_t rows, int64_t n, ActParams h, float* change,
                       const float* s_older, float* change_older) {
  state_rows(v, s_old, rows, n, h, change, s_older, change_older);
}
void state_update_rows(double* v, const double* s_old, int64_t rows, int64_t n, ActParams h, double* change,
                       const double* s_older, double* change_older) {
  state_rows(v, s_old, rows, n, h, change, s_older, change_older);
}

}  // namespace bilevel::kernels::cpu
