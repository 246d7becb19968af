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

// One block per row (rows beyond the grid loop): the block's threads stride over the row's n elements, reduce
// their maxima in shared memory, and thread 0 folds the row's maxima into change[r] (and change_older[r]); no
// atomics.
template <class T>
__global__ void state_rows_kernel(T* __restrict__ v, const T* __restrict__ s_old, int64_t rows, int64_t n,
                                  ActParams h, T* __restrict__ change, const T* __restrict__ s_older,
                                  T* __restrict__ change_older) {
  __shared__ T block_max[kBlock];
  __shared__ T block_max2[kBlock];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    T m = T(0), m2 = T(0);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const int64_t i = r * n + j;
      const StateValue<T> s = state_update(h, v[i], s_old[i]);
      v[i] = s.s;
      m = max_keep_nan(m, s.change);
      if (s_older) {
        const T d = s.s - s_older[i];
        m2 = max_keep_nan(m2, d < T(0) ? -d : d);
      }
    }
    block_max[threadIdx.x] = m;
    block_max2[threadIdx.x] = m2;
    __syncthreads();
    for (int width = kBlock / 2; width > 0; width /= 2) {
      if (threadIdx.x < width) {
        block_max[threadIdx.x] = max_keep_nan(block_max[threadIdx.x], block_max[threadIdx.x + width]);
        block_max2[threadIdx.x] = max_keep_nan(block_max2[threadIdx.x], block_max2[threadIdx.x + width]);
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      change[r] = max_keep_nan(change[r], block_max[0]);
      if (s_older) change_older[r] = max_keep_nan(change_older[r], block_max2[0]);
    }
    __syncthreads();
  }
}

template <class T>
cudaError_t launch_rows(T* v, const T* s_old, int64_t rows, int64_t n, ActParams h, T* change, const T* s_older,
                        T* change_older, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  const unsigned grid = unsigned(rows < 65535 ? rows : 65535);
  state_rows_kernel<T><<<grid, kBlock, 0, stream>>>(v, s_old, rows, n, h, change, s_older, change_older);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_state_update_rows(float* v, const float* s_old, int64_t rows, int64_t n, ActParams h,
                                     float* change, const float* s_older, float* change_older, cudaStream_t stream) {
  return launch_rows(v, s_old, rows, n, h, change, s_older, change_older, stream);
}
cudaError_t launch_state_update_rows(double* v, const double* s_old, int64_t rows, int64_t n, ActParams h,
                                     double* change, const double* s_older, double* change_older,
                                     cudaStream_t stream) {
  return launch_rows(v, s_old, rows, n, h, change, s_older, change_older, stream);
}

cudaError_t launch_state_update(float* v, const float* s_old, int64_t n, ActParams h, float* residual,
                                cudaStream_t stream) {
  return launch(v, s_old, n, h, residual, stream);
}
cudaError_t launch_state_update(double* v, const double* s_old, int64_t n, ActParams h, double* residual,
                                cudaStream_t stream) {
  return launch(v, s_old, n, h, residual, stream);
}

}  // namespace bilevel::kernels::cuda
