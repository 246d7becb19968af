// Implicit differentiation at the free fixed point (recurrent backprop: Almeida 1987, Pineda 1987; the
// implicit-function-theorem view of Zach 2021, "Bilevel programs meet deep learning", §3; Bai et al. 2019 for
// deep equilibrium models). At the free equilibrium s* = F(s*; θ), F_k(s) = ρ(u_k(s; θ)), the IFT gives
//
//   dℓ/dθ = vᵀ ∂F/∂θ + ∂ℓ/∂θ|_direct,    where    (I − ∂F/∂s)ᵀ v = ∂ℓ/∂s(s*).
//
// With D = diag ρ'(u*) and the symmetric coupling K (u = K s + drive; K's blocks A_{k−1} below and A_kᵀ above,
// max-pool switches fixed at s*), ∂F/∂s = D K, and w = D v solves the symmetric system
//
//   (D⁻¹ − K) w = ∂ℓ/∂s          (D⁻¹ − K is the Hessian of the energy at s*),
//
// which is computed without inverting D as  (I − D^½ K D^½) z = D^½ ∂ℓ/∂s,  w = D^½ z. Then
//
//   dℓ/dW_l = Σ_b [ ∂/∂W_l ⟨w_{l+1}, A_l s*_l⟩ + ∂/∂W_l ⟨s*_{l+1}, A_l w_l⟩ ],   dℓ/db_l = Σ_b w_{l+1}
//
// (linear layers: w_{l+1} s*_lᵀ + s*_{l+1} w_lᵀ), batch-averaged, plus the read-out's direct gradient with
// cross_entropy.
//
// The symmetric system is the (scaled) Hessian of the energy, positive definite only where s* is a strict local
// minimum. A layered network's coupling is bipartite (even layers talk only to odd ones), so at a fixed point the
// eigenvalues of D^½ K D^½ come in pairs ±σ: I − D^½ K D^½ is positive definite exactly when σ_max < 1, which is
// also exactly when the synchronous fixed-point dynamics are locally stable there. Where the free phase stops on
// a state that is not such a minimum (it has not settled, e.g. the dynamics are unstable for that example), the
// system is indefinite: CG then meets p·Ap ≤ 0 or a tiny p·Ap and returns a wrong vector (on the test's
// 12-16-10 network, a gradient whose error is 400 times the exact gradient's norm: tests/test_implicit_indefinite.cpp). On Fashion-MNIST (configs/fmnist_mlp_ep.yaml) this
// happens to about one example in an epoch from epoch 7 on (implicit_indefinite ≈ 2e-5), and with CG the test
// accuracy fell from 86.7% to 80.5% in that epoch and did not recover; MINRES solves the same system.
// solver.implicit_method:
//   minres       (default) MINRES (Paige & Saunders 1975) on the symmetric system, per example: minimises the
//                residual over the Krylov space, for any symmetric operator, definite or not;
//   cg           conjugate gradient on the same system (Hestenes & Stiefel 1952), per example; correct only where
//                it is positive definite;
//   fixed_point  the Neumann iteration w ← D(∂ℓ/∂s + K w), stopping when ‖Δw‖∞ < implicit_tol·‖w‖∞ (converges
//                only where the spectral radius of DK is < 1).
// minres and cg stop when every example's ‖r‖/‖rhs‖ < implicit_tol. All run at most solver.implicit_steps
// iterations; diagnostics report the relative residual ‖w − D(∂ℓ/∂s + K w)‖ / ‖D ∂ℓ/∂s‖ (Frobenius over the
// batch), the iterations used, and implicit_indefinite: the fraction of examples whose system showed
// non-positive curvature (a CG p·Ap ≤ 0, or a non-positive LDLᵀ pivot of MINRES's Lanczos tridiagonal).
#pragma once

#include "bilevel/rules/energy_rule.h"

namespace bilevel {

class ImplicitDifferentiation final : public EnergyRule {
 public:
  ImplicitDifferentiation(std::unique_ptr<Objective> objective, EnergyRuleOptions options);
  std::string name() const override { return "implicit"; }
  StepStats train_step(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) override;
  std::vector<std::string> diagnostic_columns() const override;
};

}  // namespace bilevel
