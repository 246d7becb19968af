// The argument of the CUDA relaxation kernel (src/kernels/cuda/dense_relax.cu): bilevel/kernels/cpu/dense_relax.h's
// DenseRelaxProblem as one plain struct of sizes and raw device pointers, passed by value to the kernel (so the
// per-layer arrays have a fixed length, kMaxRelaxStates). No LibTorch and no CUDA header: the .cu file, its
// LibTorch entry (src/kernels/cuda/dense_relax_entry.cpp) and the host code that decides whether a problem fits
// (energy/fused_relaxation.cpp) all include it.
//
// Same problem and notation as the CPU kernel: states s_1..s_S of widths n_1..n_S, v-space sweeps
//   v_1 = drive1 + a W_1ᵀ s_2,   v_k = vbias_k + a W_{k−1} s_{k−1} + a W_kᵀ s_{k+1},   v_S = … + nudge,
//   s_k ← h(v_k) for every k at once,
// per-example early stop after a sweep whose max-abs change is < tol, or exactly 0.
#pragma once

#include <cstdint>

#include "bilevel/kernels/cpu/dense_relax.h"

namespace bilevel::kernels {

// The most states (S) one relaxation may have on the GPU (the kernel's argument holds per-layer arrays).
constexpr int kMaxRelaxStates = 16;
// The most classes of a cross-entropy read-out (its logits live in shared memory, 4 bytes each).
constexpr int64_t kMaxRelaxClasses = 16384;

// The CPU kernel's enums (spelt out from the root: bilevel::kernels::cpu is another namespace).
using RelaxAct = ::bilevel::cpu::Act;
using RelaxNudge = ::bilevel::cpu::OutputNudge;

struct DenseRelaxArgs {
  int64_t batch = 0;                          // B
  int32_t states = 0;                         // S ≤ kMaxRelaxStates
  int64_t width[kMaxRelaxStates] = {};        // n_1..n_S
  const float* drive1 = nullptr;              // [B, n_1]
  const float* vbias[kMaxRelaxStates] = {};   // vbias[k−1] = a b_{k−1} + c, [n_k], k ≥ 2 (vbias[0] unused)
  const float* weight[kMaxRelaxStates] = {};  // weight[k−1] = W_k, [n_{k+1}, n_k] row-major, k = 1..S−1
  // s_k ([B, n_k]) on entry and on exit; scratch[k−1] has the same shape and is used only when the states of one
  // example do not fit in shared memory. Clamp: both hold onehot in s_S on entry.
  float* state[kMaxRelaxStates] = {};
  float* scratch[kMaxRelaxStates] = {};
  float scale = 1.0f;                         // a
  RelaxAct act = RelaxAct::Identity;
  float lo = 0.0f, hi = 0.0f;                 // Clamp bounds (hi may be +inf)
  RelaxNudge nudge = RelaxNudge::None;
  float nudge_scale = 0.0f;                   // aβ
  const float* onehot = nullptr;              // [B, C]
  const float* readout = nullptr;             // W_r, [C, n_S] (ReadoutCrossEntropy)
  const float* readout_bias = nullptr;        // b_r, [C]
  int64_t classes = 0;                        // C
  int64_t max_steps = 0;
  float tol = 0.0f;
  // Per example, written by the kernel: the sweeps run and the last sweep's max-abs change (NaN when a change
  // was NaN). The maxima over examples are the CPU kernel's RelaxStats.
  int64_t* row_steps = nullptr;               // [B]
  float* row_residual = nullptr;              // [B]
};

}  // namespace bilevel::kernels
