// A fused CPU kernel for the synchronous fixed-point relaxation of a fully connected layered energy.
//
// The problem is the one in bilevel/energy/layered_energy.h, written in v-space (v = a·u + c, s = h(v)):
//
//   v_1 = a(W_0 x + b_0) + c + a W_1ᵀ s_2                        (the input drive is given, computed once)
//   v_k = a b_{k−1} + c + a W_{k−1} s_{k−1} + a W_kᵀ s_{k+1}      1 < k < S
//   v_S = a b_{S−1} + c + a W_{S−1} s_{S−1} + nudge
//   s_k ← h(v_k) for every k at once (Jacobi sweep), T times,
//
// with nudge = aβ(onehot − s_S) for a squared-error output state, −aβ W_rᵀ(softmax(W_r s_S + b_r) − onehot) for a
// cross-entropy read-out, and s_S held at onehot for a clamped output (contrastive Hebbian learning).
//
// Why a kernel: every example's relaxation is independent of the others, so one call relaxes a block of rows
// through all T sweeps while the row's states stay in L1, with no LibTorch dispatch per operation and the
// activation fused into the product that feeds it. LibTorch's version of a sweep is five to six operator calls on
// [B, n] tensors. The math is unchanged; the tests compare it with the LibTorch path.
//
// Early stopping (tol > 0) is per row: a row stops after the sweep whose max-abs change is below tol, so results
// do not depend on how rows are split over threads. Without tol a row also stops after a sweep that changed none
// of its states: it sits on an exact fixed point of the float32 dynamics, so the remaining sweeps would return the
// same bits; the result is the one of running all max_steps sweeps (in the classic 784-512-10 setting most
// examples get there before T = 30, which saves about a quarter of the relaxation). `steps` reports the sweeps run.
//
// Element-wise h, float32, relative error within a few ulps of the exact function:
//   sigmoid: 1/(1+e^{−v}), e^{−v} (v clamped to [−88, 87.33]) by Cody–Waite range reduction and a degree-7
//            Taylor polynomial, the reciprocal by rcp and one Newton step;
//   tanh: (1−e^{−2|v|})/(1+e^{−2|v|}) with the sign restored, and its odd Taylor series below |v| = 1/16;
//   clamp(v, lo, hi) (relu, hard_sigmoid, hard_tanh); identity. NaN propagates.
#pragma once

#include <cstdint>
#include <vector>

namespace bilevel::cpu {

enum class Act { Identity, Clamp, Sigmoid, Tanh };

enum class OutputNudge { None, StateMse, ReadoutCrossEntropy, Clamp };

struct DenseRelaxProblem {
  int64_t batch = 0;
  std::vector<int64_t> width;         // n_1..n_S
  const float* drive1 = nullptr;      // [B, n_1]
  std::vector<const float*> vbias;    // vbias[k−1] = a b_{k−1} + c, [n_k], for k ≥ 2 (vbias[0] unused)
  std::vector<const float*> weight;   // weight[k−1] = W_k, [n_{k+1}, n_k] row-major, k = 1..S−1
  float scale = 1.0f;                 // a
  Act act = Act::Identity;
  float lo = 0.0f, hi = 0.0f;         // Clamp bounds (hi may be +inf)
  OutputNudge nudge = OutputNudge::None;
  float nudge_scale = 0.0f;           // aβ
  const float* onehot = nullptr;      // [B, C]
  const float* readout = nullptr;     // W_r, [C, n_S] (ReadoutCrossEntropy)
  const float* readout_bias = nullptr;  // b_r, [C]
  int64_t classes = 0;                // C
  int64_t max_steps = 0;
  float tol = 0.0f;
  int64_t* row_steps = nullptr;       // optional, host memory [B]: the sweeps each row ran
};

struct RelaxStats {
  float residual = 0.0f;  // max over rows of the last sweep's max-abs state change
  int64_t steps = 0;      // max over rows of the sweeps run
  int64_t at_limit = 0;   // rows that ran max_steps sweeps without meeting the stop criterion
};

// Relaxes rows [begin, end). state[k−1] holds s_k ([B, n_k], row-major) on entry and on exit; scratch[k−1] is
// workspace of the same shape. For OutputNudge::Clamp both must already hold onehot in s_S.
RelaxStats dense_relax_rows(const DenseRelaxProblem& p, float* const* state, float* const* scratch, int64_t begin,
                            int64_t end);

// h applied in place to n floats (the same code the relaxation uses).
void apply_activation(Act act, float lo, float hi, float* v, int64_t n);

// The epilogue of one sweep of the compact relaxation (energy/compact_relaxation.h) over rows [0, rows) of
// [rows, n] row-major arrays, in one pass per row: v ← h(v), and change[r] ← max(change[r], max_j |h(v[r, j]) −
// old[r, j]|). A NaN change makes change[r] NaN (and it stays NaN). Same h as apply_activation. When `older` is
// not null, also change_older[r] ← max(change_older[r], max_j |h(v[r, j]) − older[r, j]|) (the state two sweeps
// back: a zero there is a period-2 cycle).
void finish_rows(Act act, float lo, float hi, float* v, const float* old, int64_t rows, int64_t n, float* change,
                 const float* older = nullptr, float* change_older = nullptr);

// The instruction set the kernels run with on this CPU: "avx2" or "generic".
const char* dense_relax_isa();

// The portable one-lane build, whatever the CPU (the tests hold the vector build against it).
namespace generic {
RelaxStats dense_relax_rows(const DenseRelaxProblem& p, float* const* state, float* const* scratch, int64_t begin,
                            int64_t end);
void apply_activation(Act act, float lo, float hi, float* v, int64_t n);
void finish_rows(Act act, float lo, float hi, float* v, const float* old, int64_t rows, int64_t n, float* change,
                 const float* older, float* change_older);
}  // namespace generic

}  // namespace bilevel::cpu
