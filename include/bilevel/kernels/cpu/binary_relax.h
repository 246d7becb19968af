// The synchronous relaxation of a one-hidden-layer network with binary neurons and binary weights, on packed bits
// (no LibTorch; raw pointers, row-major).
//
// Binary neurons for equilibrium propagation: Laydevant, Ernoult, Querlioz & Grollier, CVPR-W 2021, "Training
// dynamical binary neural networks with equilibrium propagation" (§4: binary weights and binary activations). The
// hidden state is binary, s_1 ∈ {ℓ, ℓ + Δ} (ℓ = 0, Δ = 1 for ρ in [0, 1]), the output state s_2 (squared-error
// output) is real, and every weight of W_1 is ±c_o (one scale per output unit o; bilevel/quant/quantizer.h).
// In v-space (v = a·u + c, h(v) = ρ(u); bilevel/energy/neuron.h), one Jacobi sweep from (s_1, s_2) is
//
//   v_1 = a(W_0 x + b_0) + c + Σ_o (a s_{2,o}) W_1[o, ·]               (the input drive is given, computed once)
//   s_1 ← Q(h(v_1))                                                     Q: the hidden quantizer's two-level grid
//   v_{2,o} = a b_{1,o} + c + (a c_o) Σ_j q_{o,j} s_{1,j}  [+ aβ(y_o − s_{2,o})]    q = sign W_1 ∈ {−1, +1}
//   s_2 ← h(v_2)                                           (held at onehot(y) for a clamped output)
//
// with the binary product on bits: s_1 packed as its codes c_j ∈ {0, 1} (bit j = [s_{1,j} = ℓ + Δ]: the rounding
// of cpu::state_bits, the one the LibTorch path's quantizer uses, as a threshold on v_1, binary_state_threshold),
// q packed as bit = [q = +1], and
//   Σ_j q_{o,j} s_{1,j} = ℓ R_o + Δ (D_o + R_o)/2,   D_o = Σ_j q_{o,j}(2c_j − 1) = xnor_popcount_gemm,  R_o = Σ_j q_{o,j},
// an exact integer for ℓ = 0, Δ = 1 (the AND-popcount 2·popcount(q⁺ ∧ c) − popcount(c) in XNOR form, so that
// the inference kernels of int_gemm.h are the ones used). The feedback Σ_o (a s_{2,o}) W_1[o, ·] stays in float:
// s_2 is real.
//
// Layer-wise schedule (LayerwiseSolver; for two states even/odd and top-down are the same order): each sweep
// updates s_2 first, from the current bits, then s_1 from the new s_2. Both half-steps are exact block minimisations
// of E (+ βℓ): for s_1 ∈ {ℓ, ℓ + Δ}^n the minimiser of G(s_1) − ⟨u_1, s_1⟩ is the grid rounding of ρ(u_1) (G takes
// the same value at both levels for σ; for σ(4u − 2) the difference is the threshold's offset), and with a
// squared-error nudge s_2 is the proximal point  argmin G(s) − u s + (β/2)(s − y)²:  s = ρ(z) with
// z + β(ρ(z) − y) = u by Newton's method from z = u to 8 float ulps (at most 30 steps), or
// clip((u + βy)/(1 + β)) for piecewise-linear ρ — Neuron::output_prox_'s equations, per unit. The energy never
// increases, so the sweeps settle on a fixed point instead of the 2-cycles that synchronous sweeps of binary units
// can enter.
//
// Stop: a row stops after a sweep that changes no bit of s_1 and no bit of s_2's floats: it sits on an exact fixed
// point of the dynamics, so the remaining sweeps would return the same states (the result is that of running all
// max_steps sweeps). With tol > 0 it also stops once the sweep's max-abs change is below tol, as the float
// kernel does (a flipped bit counts as a change of Δ). The LibTorch path (FixedPointSolver, solver.kernel:
// generic) computes the same sweeps in float; the two agree up to float rounding of the sums (tests compare them).
#pragma once

#include <cstdint>

#include "bilevel/kernels/cpu/dense_relax.h"

namespace bilevel::cpu {

enum class BinarySchedule { Jacobi, OutputFirst };

struct BinaryRelaxProblem {
  BinarySchedule schedule = BinarySchedule::Jacobi;
  int64_t batch = 0;
  int64_t hidden = 0;                 // n_1
  int64_t outputs = 0;                // n_2
  const float* drive1 = nullptr;      // [B, n_1]: a(W_0 x + b_0) + c
  const float* weight = nullptr;      // W_1, [n_2, n_1] row-major: row o is ±c_o
  const uint64_t* weight_bits = nullptr;  // [n_2, words]: bit j of row o = [W_1[o, j] > 0], padding bits 0
  const int32_t* row_sum = nullptr;   // [n_2]: R_o = Σ_j sign W_1[o, j]
  const float* row_scale = nullptr;   // [n_2]: a·c_o
  const float* vbias2 = nullptr;      // [n_2]: a b_1 + c
  float scale = 1.0f;                 // a
  float shift = 0.0f;                 // c (OutputFirst with a squared-error nudge: u = (v − c)/a)
  float beta = 0.0f;                  // β (OutputFirst with a squared-error nudge)
  Act act = Act::Sigmoid;             // h, for both layers (before the hidden quantizer)
  float lo = 0.0f, hi = 0.0f;         // Clamp bounds of h
  float level = 0.0f, step = 1.0f;    // the hidden states' two values: level and level + step
  float threshold = 0.0f;             // binary_state_threshold(*this): s_{1,j} is the top level iff v_{1,j} ≥ it
  OutputNudge nudge = OutputNudge::None;  // None, StateMse or Clamp
  float nudge_scale = 0.0f;           // aβ (Jacobi)
  const float* onehot = nullptr;      // [B, n_2]
  int64_t max_steps = 0;
  float tol = 0.0f;
  int64_t* row_steps = nullptr;       // optional [B]: the sweeps each row ran
};

// The smallest float v whose state Q(h(v)) is the top level (h by apply_activation, the grid rounding by
// state_bits; −inf or +inf when every v or none gets there): h is non-decreasing, so a bisection over the floats
// finds it, and the sweeps then set a hidden bit by one comparison, v_1 ≥ threshold, with the same result as
// rounding h(v_1) (a float h that is not monotone within a few ulps of 0.5 could differ there).
float binary_state_threshold(const BinaryRelaxProblem& p);

// Words of one row of packed hidden states.
inline int64_t binary_relax_words(int64_t hidden) { return (hidden + 63) / 64; }

// Relaxes rows [begin, end) of s1 ([B, n_1]) and s2 ([B, n_2]) in place. Every entry of s1 must be one of the two
// levels on entry (std::invalid_argument otherwise: the packed states could not represent it); for
// OutputNudge::Clamp s2 must already hold onehot.
RelaxStats binary_relax_rows(const BinaryRelaxProblem& p, float* s1, float* s2, int64_t begin, int64_t end);

}  // namespace bilevel::cpu
