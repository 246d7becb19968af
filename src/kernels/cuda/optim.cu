// The optimizer's fused passes and the STE solver's post-step as CUDA kernels, one grid-stride pass each (math:
// bilevel/kernels/adam_element.h and bilevel/kernels/ste_step.h; CPU twins: src/kernels/cpu/optim_loops.cpp and
// src/kernels/cpu/ste_twins.cpp). Compiled with --fmad=false (cmake/Cuda.cmake), as the twins are without
// contraction, so both compute the same bits.
#include "bilevel/kernels/cuda/launch.h"
#include "bilevel/kernels/ste_step.h"
#include "grid.cuh"

namespace bilevel::kernels::cuda {
namespace {

#define BILEVEL_GRID_STRIDE(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(blockDim.x) * gridDim.x)

__global__ void adam_kernel(float* __restrict__ p, float* __restrict__ m, float* __restrict__ v,
                            const float* __restrict__ g, int64_t n, AdamElement a) {
  BILEVEL_GRID_STRIDE(i, n) p[i] = adam_update(g[i], m[i], v[i], p[i], a);
}

__global__ void ste_adam_kernel(SteAdamArgs a) {
  BILEVEL_GRID_STRIDE(i, a.n) ste_adam_element(a, i);
}

__global__ void ste_update_kernel(SteUpdateArgs a) {
  BILEVEL_GRID_STRIDE(i, a.n) ste_update_element(a, i);
}

}  // namespace

cudaError_t launch_adam(float* p, float* m, float* v, const float* g, int64_t n, const AdamElement& a,
                        cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  adam_kernel<<<grid_for(n), kBlock, 0, stream>>>(p, m, v, g, n, a);
  return cudaGetLastError();
}

cudaError_t launch_ste_adam(const SteAdamArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return cudaSuccess;
  ste_adam_kernel<<<grid_for(a.n), kBlock, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t launch_ste_update(const SteUpdateArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return cudaSuccess;
  ste_update_kernel<<<grid_for(a.n), kBlock, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace bilevel::kernels::cuda
