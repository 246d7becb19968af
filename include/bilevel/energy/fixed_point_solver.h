// Synchronous fixed-point dynamics (the literature standard: Ernoult et al. 2019 "Updates of equilibrium prop
// match gradients of backprop through time", eq. 3; Laborieux et al. 2021, eq. 5):
//
//   s_k^{t+1} = ρ( A_{k−1} s_{k−1}^t + b_{k−1} + A_kᵀ s_{k+1}^t  [+ nudge] )     for all k at once,
//   nudge on the top state: mse  + β (onehot(y) − s_S^t);   cross_entropy  − β W_rᵀ ∂ℓ/∂o(s_S^t).
//
// Its fixed points are the stationary points of E + βℓ (see layered_energy.h). One step costs one forward and one
// feedback map per layer; the input drive comes precomputed in EnergyBatch. States are double-buffered, so a
// step allocates nothing for fully connected layers.
//
// Two implementations of the same dynamics (solver.kernel): LibTorch operators on [B, n] tensors (any layer
// kind, dtype and device), and, for fully connected float32 networks (CPU, or GPU in a CUDA build), the fused kernel of
// fused_relaxation.h, which runs all sweeps of a block of examples in one call (1.3x faster per sweep on one
// thread for 784-512-10, and parallel over examples with no synchronisation between sweeps).
#pragma once

#include "bilevel/energy/fused_relaxation.h"
#include "bilevel/energy/inner_solver.h"

namespace bilevel {

class FixedPointSolver final : public InnerSolver {
 public:
  // `kernel` (solver.kernel) picks between the fused path (fused_relaxation.h) and LibTorch operators.
  explicit FixedPointSolver(RelaxKernel kernel = RelaxKernel::Auto) : kernel_(kernel) {}
  std::string name() const override { return "fixed_point"; }
  SolveStats solve(const LayeredEnergy& energy, const EnergyBatch& batch, EnergyState& st, const Nudge& nudge,
                   int64_t max_steps, double tol) const override;

 private:
  RelaxKernel kernel_;
};

}  // namespace bilevel
