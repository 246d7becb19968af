// The element-wise epilogue of one fixed-point sweep (energy/fixed_point_solver.h) in one pass: the new state
// s = h(v) written over v, and the residual max |s − s_old| reduced in the same pass (math:
// bilevel/kernels/elementwise.h).
#include "bilevel/kernels/cuda/launch.h"
#include "grid.cuh"

namespace bilevel::kernels::cuda {
namespace {

// Non-negative floating-point numbers (and NaN with its sign bit clear) order as their bit patterns do as
// unsigned integers, so the block maxima are combined with an integer atomicMax on the bits; a NaN change
// (bits above +inf) wins, as LibTorch's max() reports NaN.
__device__ inline void atomic_max_nonneg(float* addr, float x) {
  atomicMax(reinterpret_cast<unsigned int*>(addr), __float_as_uint(x));
}
__device__ inline void atomic_max_nonneg(double* addr, double x) {
  atomicMax(reinterpret_cast<unsigned long long*>(addr), static_cast<unsigned long long>(__double_as_longlong(x)));
}

template <class T>
__global__ void state_kernel(T* __restrict__ v, const T* __restrict__ s_old, int64_t n, ActParams h,
                             T* __restrict__ residual) {
  __shared__ T block_max[kBlock];
  T r = T(0);
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const StateValue<T> s = state_update(h, v[i], s_old[i]);
    v[i] = s.s;
    r = max_keep_nan(r, s.change);
  }
  // |·| may have left a NaN with its sign bit set; clear it so the bit-pattern maximum sees it as largest.
  if (r != r) r = T(NAN);
  block_max[threadIdx.x] = r;
  __syncthreads();
  for (int width = kBlock / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) block_max[threadIdx.x] = max_keep_nan(block_max[threadIdx.x], block_max[threadIdx.x + width]);
    __syncthreads();
  }
  if (threadIdx.x == 0) atomic_max_nonneg(residual, block_max[0]);
}

template <class T>
cudaError_t launch(T* v, const T* s_old, int64_t n, ActParams h, T* residual, cudaStream_t stream) {
  cudaError_t err = cudaMemsetAsync(residual, 0, sizeof(T), stream);  // all-zero bits: +0
  if (err != cudaSuccess || n <= 0) return err;
  state_kernel<T><<<grid_for(n), kBlock, 0, stream>>>(v, s_old, n, h, residual);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_state_update(float* v, const float* s_old, int64_t n, ActParams h, float* residual,
                                cudaStream_t stream) {
  return launch(v, s_old, n, h, residual, stream);
}
cudaError_t launch_state_update(double* v, const double* s_old, int64_t n, ActParams h, double* residual,
                                cudaStream_t stream) {
  return launch(v, s_old, n, h, residual, stream);
}

}  // namespace bilevel::kernels::cuda
