// The compact relaxation: the inner solvers' sweeps as large matrix products over the examples still relaxing,
// with a per-example stop. It is the path of every network the fused kernel does not take (deep, wide and
// convolutional energies, any dtype, CPU or GPU), and it keeps that kernel's properties:
//
//   * per-example stop: after each sweep, an example whose states the sweep left unchanged (tol = 0: an exact
//     fixed point of the float32 dynamics, so every further sweep would return the same bits) or changed by less
//     than tol (tol > 0) is done; its states are written home and it leaves the working set;
//   * compaction: the working set is gathered into contiguous [R, …] buffers (R = examples still relaxing), so
//     each sweep's products (LayeredEnergy::drive_into: one addmm, or conv2d, per neighbour) run over R rows only;
//   * fused epilogue: the activation h and each example's change max_j |s_new − s_old| come from one pass per layer
//     (kernels::state_update_rows_), with no host synchronisation; one synchronisation per sweep reads which
//     examples are done.
//
// The dynamics are those of the solver that calls it (schedule):
//   Jacobi   (fixed_point): s_k ← ρ(u_k(s)) for every k at once (fixed_point_solver.h);
//   EvenOdd  (layerwise):   even k, then odd k from the new even states, each an exact block minimisation
//                            (layerwise_solver.h), the nudged mse output by its proximal step;
//   TopDown  (layerwise, order: top_down): k = S, S − 1, …, 1, each from its neighbours' newest states, the
//                            same exact block minimisations in another order.
// Results equal the batch-wide LibTorch path's up to float32 rounding: the products of a smaller working set may
// round differently, and on the CPU h is the fused kernel's (a few ulps from LibTorch's). SolveStats::residual is
// the maximum over examples of their last sweep's change, steps the most sweeps any example ran, and row_steps
// each example's sweeps.
#pragma once

#include "bilevel/energy/inner_solver.h"
#include "bilevel/energy/layered_energy.h"

namespace bilevel {

enum class SweepSchedule { Jacobi, EvenOdd, TopDown };

// Relaxes st from its current states for at most max_steps sweeps. On return st.pool holds the switches at the
// returned states. Clamp nudges fix s_S = onehot(y) first.
SolveStats compact_relaxation(const LayeredEnergy& energy, const EnergyBatch& batch, EnergyState& st,
                              const Nudge& nudge, int64_t max_steps, double tol, SweepSchedule schedule);

}  // namespace bilevel
