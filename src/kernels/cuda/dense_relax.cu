// The relaxation of a fully connected layered energy on the GPU, all sweeps of one phase in one kernel launch: the
// CUDA twin of the CPU kernel bilevel/kernels/cpu/dense_relax.h (arguments: bilevel/kernels/dense_relax_args.h).
//
// Equilibrium propagation (Scellier & Bengio 2017, "Equilibrium propagation: bridging the gap between energy-based
// models and backpropagation") relaxes the states to a fixed point of the energy, free (β = 0) and then nudged
// towards the target. Written in v-space (v = a·u + c, s = h(v)), one synchronous (Jacobi) sweep is
//
//   v_1 = drive1 + a W_1ᵀ s_2                                       (drive1 = a(W_0 x + b_0) + c, given)
//   v_k = a b_{k−1} + c + a W_{k−1} s_{k−1} + a W_kᵀ s_{k+1}         1 < k < S
//   v_S = a b_{S−1} + c + a W_{S−1} s_{S−1} + nudge
//   s_k ← h(v_k) for every k at once,
//
// with nudge = aβ(onehot − s_S) for a squared-error output state (StateMse), −aβ W_rᵀ(softmax(W_r s_S + b_r) −
// onehot) for a cross-entropy read-out (ReadoutCrossEntropy), and s_S held at onehot (Clamp, contrastive Hebbian
// learning). h is identity, clamp(v, lo, hi), sigmoid or tanh, the functions of bilevel/kernels/elementwise.h
// (shared with the CPU element-wise twins): the same functions as the CPU relaxation kernel's up to float rounding.
//
// Why one persistent kernel: LibTorch's version of a phase is T sweeps × S layers × five or six operator launches
// on [B, n] tensors, each a few microseconds of launch latency for a few microseconds of work at EP's sizes (e.g.
// 784-512-10, B ≤ a few hundred). Every example's relaxation is independent of the others, so here one thread
// block relaxes one example through all its sweeps: the example's states (both halves of the Jacobi ping-pong)
// stay in shared memory, the weights are read from global memory (W_1..W_{S−1} and W_r are small enough to stay
// in L2 for these sizes), and one launch replaces the T × S × 6.
//
// One sweep of one block, with three or four block-wide barriers:
//   A. the forward products v_k ← vbias_k + a W_{k−1} s_{k−1} (k ≥ 2) and the read-out logits W_r s_S + b_r, one
//      warp per output row (lanes stride the row, coalesced, then a shuffle sum), into the next-state buffer;
//   (cross-entropy only: warp 0 turns the logits into the coefficients −aβ(softmax − onehot);)
//   B. one thread per unit adds the feedback a Σ_j s_{k+1,j} W_k[j, i] (W_k read down a column: coalesced across
//      the threads), the nudge, applies h, and keeps its largest |s_new − s_old|;
//   C. a block-wide max of the changes (warp shuffles, then the warps' maxima in shared memory, read by every
//      thread so that all of them take the same decision).
// The feedback sum runs in the CPU kernel's order (base, then j = 0, 1, …); the forward dot products do not (a
// warp's lanes), so results agree with the CPU kernel to rounding, not bit for bit.
//
// Early stop, per example as on the CPU, so results do not depend on how examples are batched: an example stops
// after the sweep whose max-abs change is < tol (tol > 0), or is exactly 0 (an exact fixed point of the float32
// dynamics: every further sweep would return the same bits, so the states are those of all max_steps sweeps).
// A NaN change never stops an example (it runs every sweep and reports a NaN residual). Each example writes the
// sweeps it ran and its last change; the host reduces them to the maxima (the CPU kernel's RelaxStats).
//
// When both halves of one example's states do not fit in shared memory (Σ n_k beyond ~28 Ki floats on sm_90), the
// same code ping-pongs between the state and scratch buffers in global memory instead, as the CPU kernel does.
#include "bilevel/kernels/cuda/launch.h"
#include "bilevel/kernels/launch_cache.h"
#include "grid.cuh"

namespace bilevel::kernels::cuda {
namespace {

using Act = RelaxAct;
using OutputNudge = RelaxNudge;

constexpr int kWarp = 32;
constexpr int kWarps = kBlock / kWarp;
constexpr unsigned kFullMask = 0xffffffffu;

// h(v), NaN-propagating (the CPU kernel's activations, computed with CUDA's expf / tanhf).
template <Act A>
__device__ __forceinline__ float relax_act(float v, float lo, float hi) {
  if constexpr (A == Act::Clamp) return k_min(k_max(v, lo), hi);
  if constexpr (A == Act::Sigmoid) return sigmoid(v);
  if constexpr (A == Act::Tanh) return k_tanh(v);
  return v;
}

__device__ __forceinline__ float warp_sum(float x) {
  for (int o = kWarp / 2; o > 0; o /= 2) x += __shfl_xor_sync(kFullMask, x, o);
  return x;
}
__device__ __forceinline__ float warp_max_keep_nan(float x) {
  for (int o = kWarp / 2; o > 0; o /= 2) x = max_keep_nan(x, __shfl_xor_sync(kFullMask, x, o));
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
  for (int o = kWarp / 2; o > 0; o /= 2) x = fmaxf(x, __shfl_xor_sync(kFullMask, x, o));
  return x;
}

// Floats of dynamic shared memory before the states: the C logits / softmax coefficients, padded to 16 bytes.
BILEVEL_HDI int64_t coef_floats(int64_t classes) { return (classes + 3) / 4 * 4; }

// Dynamic shared memory: (cross-entropy) coef_floats(C) logits, then (in_shared) the states, two halves of Σ n_k
// floats.
template <Act A>
__global__ void __launch_bounds__(kBlock) dense_relax_kernel(const DenseRelaxArgs a, const bool in_shared) {
  extern __shared__ float s_dyn[];
  __shared__ float* s_row[2][kMaxRelaxStates];  // this example's s_k: [0] the state, [1] the other half
  __shared__ float* s_home[kMaxRelaxStates];
  __shared__ float* s_spare[kMaxRelaxStates];
  __shared__ const float* s_w[kMaxRelaxStates];
  __shared__ const float* s_vb[kMaxRelaxStates];
  __shared__ int s_n[kMaxRelaxStates];
  __shared__ float s_red[kWarps];

  const int tid = int(threadIdx.x), lane = tid % kWarp, warp = tid / kWarp;
  const int S = a.states;
  const bool clamp = a.nudge == OutputNudge::Clamp;
  const bool ce = a.nudge == OutputNudge::ReadoutCrossEntropy;
  const bool mse = a.nudge == OutputNudge::StateMse;
  const int top = clamp ? S - 1 : S;  // states relaxed: s_1..s_top
  const int C = int(a.classes);
  float* const coef = s_dyn;
  float* const smem_states = s_dyn + coef_floats(ce ? a.classes : 0);

  if (tid < S) {
    s_n[tid] = int(a.width[tid]);
    s_w[tid] = a.weight[tid];
    s_vb[tid] = a.vbias[tid];
    s_home[tid] = a.state[tid];
    s_spare[tid] = a.scratch[tid];
  }
  __syncthreads();
  int total = 0, rows_a = ce ? C : 0;  // state floats of one example; rows of pass A
  for (int k = 0; k < S; ++k) total += s_n[k];
  for (int k = 2; k <= top; ++k) rows_a += s_n[k - 1];

  for (int64_t r = blockIdx.x; r < a.batch; r += gridDim.x) {
    if (tid < S) {
      const int64_t n = s_n[tid];
      if (in_shared) {
        int off = 0;
        for (int l = 0; l < tid; ++l) off += s_n[l];
        s_row[0][tid] = smem_states + off;
        s_row[1][tid] = smem_states + total + off;
      } else {
        s_row[0][tid] = s_home[tid] + r * n;
        s_row[1][tid] = s_spare[tid] + r * n;
      }
    }
    __syncthreads();
    if (in_shared) {
      for (int k = 0; k < S; ++k) {
        const float* src = s_home[k] + r * s_n[k];
        const bool both = clamp && k == S - 1;  // the clamped s_S is read from either half
        for (int i = tid; i < s_n[k]; i += kBlock) {
          const float x = src[i];
          s_row[0][k][i] = x;
          if (both) s_row[1][k][i] = x;
        }
      }
      __syncthreads();
    }

    const float* const onehot = a.onehot ? a.onehot + r * a.classes : nullptr;
    int par = 0;  // s_row[par] holds the current states
    float residual = 0.0f;
    int64_t t = 1;
    for (; t <= a.max_steps; ++t) {
      // A. forward products and read-out logits, one warp per row.
      for (int q = warp; q < rows_a; q += kWarps) {
        int k = 2, row = q;
        while (k <= top && row >= s_n[k - 1]) row -= s_n[k - 1], ++k;
        const float *w, *x, *bias;
        float* out;
        int n_in;
        float mult;
        if (k <= top) {  // v_k[row] = vbias_k[row] + a W_{k−1}[row, ·] s_{k−1}
          n_in = s_n[k - 2];
          w = s_w[k - 2] + int64_t(row) * n_in;
          x = s_row[par][k - 2];
          bias = s_vb[k - 1] + row;
          out = s_row[par ^ 1][k - 1] + row;
          mult = a.scale;
        } else {  // logit[row] = b_r[row] + W_r[row, ·] s_S
          n_in = s_n[S - 1];
          w = a.readout + int64_t(row) * n_in;
          x = s_row[par][S - 1];
          bias = a.readout_bias + row;
          out = coef + row;
          mult = 1.0f;
        }
        float acc = 0.0f;
        for (int j = lane; j < n_in; j += kWarp) acc = fmaf(w[j], x[j], acc);
        acc = warp_sum(acc);
        if (lane == 0) *out = *bias + mult * acc;
      }
      __syncthreads();
      if (ce) {
        // coef[c] ← −aβ (softmax(logits)_c − onehot_c), by warp 0 (each lane keeps to its own c).
        if (warp == 0) {
          float mx = -INFINITY;
          for (int c = lane; c < C; c += kWarp) mx = fmaxf(mx, coef[c]);
          mx = warp_max(mx);
          float z = 0.0f;
          for (int c = lane; c < C; c += kWarp) z += (coef[c] = expf(coef[c] - mx));
          z = warp_sum(z);
          for (int c = lane; c < C; c += kWarp) coef[c] = -a.nudge_scale * (coef[c] / z - onehot[c]);
        }
        __syncthreads();
      }

      // B. feedback, nudge and h, one thread per unit.
      float change = 0.0f;
      for (int k = 1; k <= top; ++k) {
        const int n = s_n[k - 1];
        const float* const cur = s_row[par][k - 1];
        float* const nxt = s_row[par ^ 1][k - 1];
        const float* const base = k == 1 ? a.drive1 + r * n : nxt;
        const int m = k < S ? s_n[k] : 0;
        const float* const up = k < S ? s_row[par][k] : nullptr;
        const float* const W = k < S ? s_w[k - 1] : nullptr;
        for (int i = tid; i < n; i += kBlock) {
          float v = base[i];
          for (int j = 0; j < m; ++j) v = fmaf(a.scale * up[j], W[int64_t(j) * n + i], v);
          if (k == S) {
            if (ce)
              for (int c = 0; c < C; ++c) v = fmaf(coef[c], a.readout[int64_t(c) * n + i], v);
            else if (mse)
              v = fmaf(a.nudge_scale, onehot[i] - cur[i], v);
          }
          const float s = relax_act<A>(v, a.lo, a.hi);
          nxt[i] = s;
          change = max_keep_nan(change, fabsf(s - cur[i]));
        }
      }

      // C. the example's largest change, the same value in every thread.
      change = warp_max_keep_nan(change);
      if (lane == 0) s_red[warp] = change;
      __syncthreads();
      change = s_red[0];
      for (int w = 1; w < kWarps; ++w) change = max_keep_nan(change, s_red[w]);
      par ^= 1;
      residual = change;
      if (change == 0.0f || (a.tol > 0.0f && change < a.tol)) break;
    }

    // Home: the final states (in shared memory, or in the scratch half) into state. The clamped s_S never moved.
    if (in_shared || par == 1) {
      for (int k = 0; k < top; ++k) {
        float* const dst = s_home[k] + r * s_n[k];
        const float* const src = s_row[par][k];
        for (int i = tid; i < s_n[k]; i += kBlock) dst[i] = src[i];
      }
    }
    if (tid == 0) {
      a.row_steps[r] = t < a.max_steps ? t : a.max_steps;
      a.row_residual[r] = residual;
    }
    __syncthreads();  // the next example reuses s_row, s_red and the shared states
  }
}

using Kernel = void (*)(DenseRelaxArgs, bool);

Kernel kernel_for(Act act) {
  switch (act) {
    case Act::Identity: return dense_relax_kernel<Act::Identity>;
    case Act::Clamp: return dense_relax_kernel<Act::Clamp>;
    case Act::Sigmoid: return dense_relax_kernel<Act::Sigmoid>;
    case Act::Tanh: return dense_relax_kernel<Act::Tanh>;
  }
  return nullptr;
}

}  // namespace

cudaError_t launch_dense_relax(const DenseRelaxArgs& a, cudaStream_t stream) {
  if (a.states < 1 || a.states > kMaxRelaxStates || a.classes < 0 || a.classes > (int64_t(1) << 30))
    return cudaErrorInvalidValue;
  int64_t total = 0;
  for (int k = 0; k < a.states; ++k) {
    if (a.width[k] < 0 || a.width[k] > (int64_t(1) << 30)) return cudaErrorInvalidValue;
    total += a.width[k];
  }
  if (a.batch <= 0) return cudaSuccess;
  const Kernel kernel = kernel_for(a.act);
  if (!kernel) return cudaErrorInvalidValue;

  // The device's and kernel's limits are asked once per (device, kernel), not per launch (launch_cache.h).
  static LaunchCache cache;
  int device = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  LaunchCache::Entry limits;
  err = cudaError_t(cache.entry(device, reinterpret_cast<const void*>(kernel), limits, [&](int64_t& room) {
    int optin = 0;
    cudaError_t e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
    cudaFuncAttributes attr{};
    if (e == cudaSuccess) e = cudaFuncGetAttributes(&attr, kernel);
    room = int64_t(optin) - int64_t(attr.sharedSizeBytes);  // dynamic shared memory a block may have
    return int(e);
  }));
  if (err != cudaSuccess) return err;
  const int64_t room = limits.room;
  const bool ce = a.nudge == RelaxNudge::ReadoutCrossEntropy;
  const int64_t coef_bytes = coef_floats(ce ? a.classes : 0) * int64_t(sizeof(float));
  const int64_t state_bytes = 2 * total * int64_t(sizeof(float));
  const bool in_shared = coef_bytes + state_bytes <= room;
  const int64_t dynamic = coef_bytes + (in_shared ? state_bytes : 0);
  if (dynamic > room) return cudaErrorInvalidValue;  // more classes than shared memory holds
  if (dynamic > 48 * 1024 && !limits.opted_in) {  // beyond the default limit a kernel must opt in: once, to the room
    err = cudaError_t(cache.opt_in(device, reinterpret_cast<const void*>(kernel), [&](int64_t bytes) {
      return int(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
    }));
    if (err != cudaSuccess) return err;
  }
  const unsigned grid = unsigned(std::min<int64_t>(a.batch, 65535));  // blocks stride over the rest
  kernel<<<grid, kBlock, size_t(dynamic), stream>>>(a, in_shared);
  return cudaGetLastError();
}

}  // namespace bilevel::kernels::cuda
