// Dual propagation's dyad update in one pass: s⁺, s⁻, δ, s̄ per element (math: bilevel/kernels/elementwise.h).
#include "bilevel/kernels/cuda/launch.h"
#include "grid.cuh"

namespace bilevel::kernels::cuda {
namespace {

template <class T>
__global__ void dyad_kernel(const T* __restrict__ u, const T* __restrict__ f, T* __restrict__ delta,
                            T* __restrict__ sbar, int64_t n, T alpha, ActParams rho) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const DyadValue<T> d = dyad(rho, u[i], f[i], alpha);
    delta[i] = d.delta;
    sbar[i] = d.sbar;
  }
}

template <class T>
cudaError_t launch(const T* u, const T* f, T* delta, T* sbar, int64_t n, T alpha, ActParams rho,
                   cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  dyad_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(u, f, delta, sbar, n, alpha, rho);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_dyad_update(const float* u, const float* f, float* delta, float* sbar, int64_t n, float alpha,
                               ActParams rho, cudaStream_t stream) {
  return launch(u, f, delta, sbar, n, alpha, rho, stream);
}
cudaError_t launch_dyad_update(const double* u, const double* f, double* delta, double* sbar, int64_t n,
                               double alpha, ActParams rho, cudaStream_t stream) {
  return launch(u, f, delta, sbar, n, alpha, rho, stream);
}

}  // namespace bilevel::kernels::cuda
