// The quantization kernels, one grid-stride pass each: the built-in grids' codes (deterministic or stochastic
// from the counter-based stream), and the quantization solvers' element-wise backward passes (STE, AdaSTE, LSQ)
// and the flip rule (math: bilevel/kernels/quant_codes.h, bilevel/kernels/quant_element.h; CPU twins:
// src/kernels/cpu/quant_twins.cpp).
#include "bilevel/kernels/cuda/launch.h"
#include "bilevel/kernels/quant_codes.h"
#include "grid.cuh"

namespace bilevel::kernels::cuda {
namespace {

#define BILEVEL_GRID_STRIDE(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(blockDim.x) * gridDim.x)

__global__ void codes_kernel(CodesArgs a) {
  BILEVEL_GRID_STRIDE(i, a.n) a.out[i] = codes_element(a, i);
}

__global__ void act_codes_kernel(ActCodesArgs a) {
  BILEVEL_GRID_STRIDE(i, a.n) a.out[i] = act_codes_element(a, i);
}

__global__ void ste_kernel(SteArgs a) {
  BILEVEL_GRID_STRIDE(i, a.n) a.out[i] = ste_element(a, i);
}

__global__ void adaste_forward_kernel(const float* __restrict__ u, float beta, float alpha, float* __restrict__ w,
                                      int64_t n) {
  BILEVEL_GRID_STRIDE(i, n) w[i] = qe::adaste_forward(u[i], beta, alpha);
}

__global__ void adaste_grad_kernel(const float* __restrict__ g, const float* __restrict__ u, float beta, float alpha,
                                   float* __restrict__ out, int64_t n) {
  BILEVEL_GRID_STRIDE(i, n) out[i] = qe::adaste_grad(g[i], u[i], beta, alpha);
}

__global__ void lsq_kernel(const float* __restrict__ g, const float* __restrict__ u, float qn, float qp,
                           float* __restrict__ gv, float* __restrict__ gs, int64_t n) {
  BILEVEL_GRID_STRIDE(i, n) {
    gv[i] = g[i] * qe::lsq_grad_v(u[i], qn, qp);
    gs[i] = g[i] * qe::lsq_grad_s(u[i], qn, qp);
  }
}

__global__ void prox_kernel(const float* __restrict__ u, float lambda, float* __restrict__ q, int64_t n) {
  BILEVEL_GRID_STRIDE(i, n) q[i] = qe::prox_towards(u[i], q[i], lambda);
}

__global__ void flip_kernel(float* __restrict__ codes, const float* __restrict__ m, float tau, int64_t n) {
  BILEVEL_GRID_STRIDE(i, n) codes[i] = qe::flip_code(codes[i], m[i], tau);
}

}  // namespace

cudaError_t launch_quant_codes(const CodesArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return cudaSuccess;
  codes_kernel<<<grid_for(a.n), kBlock, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t launch_activation_codes(const ActCodesArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return cudaSuccess;
  act_codes_kernel<<<grid_for(a.n), kBlock, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t launch_ste_grad(const SteArgs& a, cudaStream_t stream) {
  if (a.n <= 0) return cudaSuccess;
  ste_kernel<<<grid_for(a.n), kBlock, 0, stream>>>(a);
  return cudaGetLastError();
}

cudaError_t launch_adaste_forward(const float* u, float beta, float alpha, float* w, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  adaste_forward_kernel<<<grid_for(n), kBlock, 0, stream>>>(u, beta, alpha, w, n);
  return cudaGetLastError();
}

cudaError_t launch_adaste_grad(const float* g, const float* u, float beta, float alpha, float* out, int64_t n,
                               cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  adaste_grad_kernel<<<grid_for(n), kBlock, 0, stream>>>(g, u, beta, alpha, out, n);
  return cudaGetLastError();
}

cudaError_t launch_lsq_grads(const float* g, const float* u, float qn, float qp, float* gv, float* gs, int64_t n,
                             cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  lsq_kernel<<<grid_for(n), kBlock, 0, stream>>>(g, u, qn, qp, gv, gs, n);
  return cudaGetLastError();
}

cudaError_t launch_prox_towards(const float* u, float lambda, float* q, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  prox_kernel<<<grid_for(n), kBlock, 0, stream>>>(u, lambda, q, n);
  return cudaGetLastError();
}

cudaError_t launch_flip_codes(float* codes, const float* m, float tau, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  flip_kernel<<<grid_for(n), kBlock, 0, stream>>>(codes, m, tau, n);
  return cudaGetLastError();
}

}  // namespace bilevel::kernels::cuda
