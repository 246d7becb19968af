// The fixed-point solver's packed-bit path for binary neurons with binary weights (equilibrium propagation with
// binary activations and weights: Laydevant, Ernoult, Querlioz & Grollier, CVPR-W 2021, §4).
//
// Same dynamics as the solvers' LibTorch paths with a 1-bit state quantizer (layered_energy.h), for a
// one-hidden-layer network with a squared-error output state: FixedPointSolver's synchronous sweeps
// s_1 ← Q(ρ(u_1)), s_2 ← ρ(u_2 [+ nudge]) (fixed_point_solver.h), or LayerwiseSolver's exact block minimisations,
// s_2 first (the proximal point under a squared-error nudge), then s_1 from the new s_2 (layerwise_solver.h; for
// two states its even/odd and top-down orders coincide). The hidden states live as bits during the relaxation and the output layer's
// product W_1 s_1 is an XNOR-popcount against W_1's sign bits (bilevel/kernels/cpu/binary_relax.h states the
// equations); each example stops at its first sweep that changes no bit (an exact fixed point), or, with tol > 0,
// whose max-abs change is below tol, as the fused float kernel does (fused_relaxation.h).
//
// Taken automatically (solver.kernel auto, or fused for fixed_point) when it applies: CPU, float32, S = 2 fully connected states,
// mse output, the hidden states on a deterministic 1-bit grid (quantization.activations: binary, or uniform with
// bits 1; not stochastic rounding while training), and every row of W_1 equal to ±c_o (binary weights, one scale
// per output unit or one per layer) — checked on the weights themselves at each call. Anything else takes the
// float paths.
#pragma once

#include "bilevel/energy/compact_relaxation.h"
#include "bilevel/energy/fused_relaxation.h"
#include "bilevel/energy/inner_solver.h"
#include "bilevel/energy/layered_energy.h"

namespace bilevel {

// Whether the packed path can relax this energy, batch and nudge.
bool binary_relaxation_supported(const LayeredEnergy& energy, const EnergyBatch& batch, const Nudge& nudge);
// Whether `choice` takes it here (auto and fused do, wherever it is supported).
bool use_binary_relaxation(RelaxKernel choice, const LayeredEnergy& energy, const EnergyBatch& batch,
                           const Nudge& nudge);

// Relaxes st from its current states (the hidden ones must be on the grid); requires binary_relaxation_supported().
// schedule: Jacobi (fixed_point) or EvenOdd / TopDown (layerwise; the same order for two states).
SolveStats binary_relaxation(const LayeredEnergy& energy, const EnergyBatch& batch, EnergyState& st,
                             const Nudge& nudge, int64_t max_steps, double tol,
                             SweepSchedule schedule = SweepSchedule::Jacobi);

}  // namespace bilevel
