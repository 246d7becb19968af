// Asynchronous layer-wise exact minimisation (block coordinate descent; Scellier et al. 2023, "Energy-based
// learning algorithms for analog computing: a comparative study", §3): one step updates the even layers, then
// the odd layers. Layers of one parity do not interact, and given its neighbours the energy is separable and
// convex in each unit of layer k, so
//
//   s_k ← argmin_{s_k} E = ρ(A_{k−1} s_{k−1} + b_{k−1} + A_kᵀ s_{k+1})            (hidden layers)
//   s_S ← argmin_{s_S} G(s_S) − u_S·s_S + (β/2)‖s_S − y‖²                      (mse output, nudged)
//       = clip((u_S + β y)/(1 + β))  for clip-type ρ (hard_sigmoid etc.),  Newton's method for smooth ρ.
//
// Each half-step is an exact minimisation, so E + βℓ never increases, for every monotone ρ (the energy of
// neuron.h is defined for all of them) — not only hard_sigmoid. Two exceptions, documented and not exact:
//   * cross_entropy read-out nudge: ℓ(W_r s_S + b_r) couples the units of s_S, so s_S takes the fixed-point
//     step ρ(u_S − β W_rᵀ ∂ℓ/∂o) at the current s_S (exact at β = 0);
//
// order: top_down runs each sweep as k = S, S − 1, …, 1 (Gauss–Seidel from the output down), the same exact block
// minimisations in another order, so the same fixed points and the same monotone energy. From the free fixed
// point, the nudge then reaches every layer within one sweep (even/odd needs ⌈S/2⌉ + 1 half-steps of which the
// first recomputes unchanged layers); from a feedforward start, the first sweep brings the feedback of every
// layer above down to the input. Its first update needs no switches from the entry state.
//   * conv layers with max-pooling: ⟨s_{k+1}, maxpool(conv(s_k))⟩ is not linear in s_k, so the update of s_k
//     uses the switches at its current value (a block fixed-point step). Average pooling (model.pooling: avg)
//     is linear, and its steps are exact.
#pragma once

#include "bilevel/energy/fused_relaxation.h"
#include "bilevel/energy/inner_solver.h"

namespace bilevel {

// solver.kernel: compact runs the schedule in the compact relaxation (compact_relaxation.h: per-example stop);
// generic on the whole batch, which stops together; auto as use_compact_relaxation() decides. No fused kernel.
class LayerwiseSolver final : public InnerSolver {
 public:
  enum class Order { EvenOdd, TopDown };
  explicit LayerwiseSolver(RelaxKernel kernel = RelaxKernel::Auto, Order order = Order::EvenOdd);
  std::string name() const override { return "layerwise"; }
  SolveStats solve(const LayeredEnergy& energy, const EnergyBatch& batch, EnergyState& st, const Nudge& nudge,
                   int64_t max_steps, double tol) const override;

 private:
  RelaxKernel kernel_;
  Order order_;
};

// "even_odd" or "top_down"; anything else throws std::invalid_argument naming the choices.
LayerwiseSolver::Order layerwise_order_from_name(const std::string& name);

}  // namespace bilevel
