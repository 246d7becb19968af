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

// Row-wise: for each row r < rows of [rows, n] arrays, v[r, j] ← h(v[r, j]),
// change[r] ← max_keep_nan(change[r], max_j |h(v[r, j]) − s_old[r, j]|) and, when s_older is not null,
// change_older[r] ← max_keep_nan(change_older[r], max_j |h(v[r, j]) − s_older[r, j]|) (the CUDA kernel's twin).
void state_update_rows(float* v, const float* s_old, int64_t rows, int64_t n, ActParams h, float* change,
                       const float* s_older = nullptr, float* change_older = nullptr);
void state_update_rows(double* v, const double* s_old, int64_t rows, int64_t n, ActParams h, double* change,
                       const double* s_older = nullptr, double* change_older = nullptr);

}  // namespace bilevel::kernels::cpu
