// CPU twins of the CUDA element-wise kernels (src/kernels/cuda/*.cu): the same functions of
// bilevel/kernels/elementwise.h over raw arrays, one thread. bilevel/kernels/fused_ops.h splits tensors into
// chunks across LibTorch's thread pool and dispatches between these and the CUDA kernels by device.
#pragma once

#include <cstdint>

#include "bilevel/kernels/elementwise.h"

namespace bilevel::kernels::cpu {

// δ[i], s̄[i] = dyad(ρ, u[i], f[i], α) for i < n.
void dyad_update(const float* u, const float* f, float* delta, float* sbar, int64_t n, float alpha, ActParams rho);
void dyad_update(const double* u, const double* f, double* delta, double* sbar, int64_t n, double alpha,
                 ActParams rho);

// v[i] ← h(v[i]) for i < n; returns max_i |h(v[i]) − s_old[i]| (0 for n = 0; NaN if any change is NaN).
float state_update(float* v, const float* s_old, int64_t n, ActParams h);
double state_update(double* v, const double* s_old, int64_t n, ActParams h);

}  // namespace bilevel::kernels::cpu
