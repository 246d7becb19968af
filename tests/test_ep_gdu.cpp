// Gradient-descending updates (Ernoult et al. 2019, "Updates of equilibrium prop match gradients of backprop
// through time in an RNN with static input", Theorem 1): starting from a converged free phase s*, the step-by-step
// updates of EP's nudged phase equal (to O(β)) BPTT's gradients of ℓ(s_T) through T steps of the free dynamics
// started at s*, at the matching steps:
//
//   neural:  (s^β_{k+1} − s^β_k) / β  ≈  −∂ℓ/∂u_{T−k}      (u: the neurons' pre-activations, s = ρ(u))
//   weights: (∂Φ/∂θ(s^β_{k+1}) − ∂Φ/∂θ(s^β_k)) / β  ≈  −∂ℓ/∂θ^{(T−k)}   (θ^{(t)}: the copy used by step t)
//
// With ρ ≠ identity the exact pairing is with the pre-activation gradient: linearising both recursions gives
// (DK)^k D ∂ℓ/∂s on both sides (D = diag ρ'(u*), K the coupling). The BPTT side is written out here with autograd
// from the equations, independently of the rules.
#include <gtest/gtest.h>

#include "bilevel/energy/fixed_point_solver.h"
#include "oracle/ep_test_support.h"

using namespace ep_test;
using namespace bilevel;
using torch::Tensor;

namespace {

struct Trajectory {
  std::vector<std::vector<Tensor>> s;  // s[k][layer]
};

void check_gdu(const std::string& activation, double beta, double tol) {
  auto net = make_mlp(6, {9, 5}, 4, activation, "mse", 1.0, 11);
  torch::manual_seed(3);
  const int64_t B = 5, T = 12;
  auto x = torch::rand({B, 1, 1, 6}, torch::kFloat64);
  auto y = torch::randint(0, 4, {B}, torch::kLong);
  auto obj = make_objective("mse");
  LayeredEnergy energy(*net, Neuron::from_activation(net->rho()), *obj);
  EnergyBatch batch;
  energy.prepare(batch, x, y);
  EnergyState st;
  energy.init_state(batch, st);
  FixedPointSolver solver;
  auto free = solver.solve(energy, batch, st, Nudge::none(), 10000, 1e-15);
  ASSERT_LT(free.residual, 1e-15);
  const int64_t S = energy.num_states();

  // EP nudged phase, one sweep at a time.
  std::vector<std::vector<Tensor>> ep = {{}};
  for (auto& t : st.s) ep[0].push_back(t.clone());
  for (int64_t k = 0; k < T; ++k) {
    solver.solve(energy, batch, st, Nudge::loss(beta), 1, 0.0);
    ep.push_back({});
    for (auto& t : st.s) ep.back().push_back(t.clone());
  }

  // BPTT through T free steps from s*, with a separate copy of every parameter per step.
  std::vector<std::vector<Tensor>> W(T + 1), b(T + 1);
  std::vector<std::vector<Tensor>> u(T + 1);
  std::vector<Tensor> s = ep[0];
  Tensor xf = x.view({B, -1});
  for (int64_t t = 1; t <= T; ++t) {
    for (size_t l = 0; l < net->num_layers(); ++l) {
      W[t].push_back(net->layer(l).weight.detach().clone().requires_grad_(true));
      b[t].push_back(net->layer(l).bias.detach().clone().requires_grad_(true));
    }
    std::vector<Tensor> next;
    for (int64_t k = 1; k <= S; ++k) {
      Tensor below = k == 1 ? xf : s[k - 2];
      Tensor uk = torch::matmul(below, W[t][k - 1].t()) + b[t][k - 1];
      if (k < S) uk = uk + torch::matmul(s[k], W[t][k]);
      uk.retain_grad();
      u[t].push_back(uk);
      next.push_back(net->rho().f(uk));
    }
    s = next;
  }
  obj->loss(s[S - 1], y).sum().backward();

  // Errors per (step, layer), relative to the largest BPTT gradient of that layer over the steps (some are
  // exactly zero: at k = 0 only the output is nudged, and ∂ℓ/∂u_T vanishes on the hidden layers).
  auto grad_or_zero = [](const Tensor& leaf, const Tensor& like) {
    return leaf.grad().defined() ? leaf.grad() : torch::zeros_like(like);
  };
  double worst_neural = 0, worst_weight = 0;
  for (int64_t j = 0; j < S; ++j) {
    std::vector<Tensor> e_s, g_s, e_w, g_w, e_b, g_b;
    for (int64_t k = 0; k < T; ++k) {
      const int64_t t = T - k;
      e_s.push_back((ep[k + 1][j] - ep[k][j]) / beta);
      g_s.push_back(-grad_or_zero(u[t][j], ep[k][j]));
      Tensor in_next = j == 0 ? xf : ep[k + 1][j - 1], in_prev = j == 0 ? xf : ep[k][j - 1];
      e_w.push_back((ep[k + 1][j].t().mm(in_next) - ep[k][j].t().mm(in_prev)) / beta);
      g_w.push_back(-grad_or_zero(W[t][j], W[t][j]));
      e_b.push_back((ep[k + 1][j] - ep[k][j]).sum(0) / beta);
      g_b.push_back(-grad_or_zero(b[t][j], b[t][j]));
    }
    auto worst = [](const std::vector<Tensor>& e, const std::vector<Tensor>& g) {
      double ref = 0, w = 0;
      for (auto& t : g) ref = std::max(ref, t.norm().item<double>());
      EXPECT_GT(ref, 1e-6);
      for (size_t i = 0; i < e.size(); ++i) w = std::max(w, (e[i] - g[i]).norm().item<double>() / ref);
      return w;
    };
    worst_neural = std::max(worst_neural, worst(e_s, g_s));
    worst_weight = std::max({worst_weight, worst(e_w, g_w), worst(e_b, g_b)});
  }
  std::cout << activation << " β=" << beta << ": worst relative mismatch, neural " << worst_neural << ", weights "
            << worst_weight << "\n";
  EXPECT_LT(worst_neural, tol);
  EXPECT_LT(worst_weight, tol);
}

}  // namespace

TEST(EpGdu, NudgedPhaseStepsMatchBpttGradientsTanh) { check_gdu("tanh", 1e-5, 1e-4); }
TEST(EpGdu, NudgedPhaseStepsMatchBpttGradientsSigmoid4) { check_gdu("sigmoid4", 1e-5, 1e-4); }

TEST(EpGdu, MismatchShrinksWithBeta) {
  // The O(β) remainder is real: a larger β gives a proportionally larger mismatch (and the test can fail).
  auto mismatch = [](double beta) {
    auto net = make_mlp(6, {9, 5}, 4, "tanh", "mse", 1.0, 11);
    torch::manual_seed(3);
    auto x = torch::rand({5, 1, 1, 6}, torch::kFloat64);
    auto y = torch::randint(0, 4, {5}, torch::kLong);
    auto obj = make_objective("mse");
    LayeredEnergy energy(*net, Neuron::from_activation(net->rho()), *obj);
    EnergyBatch batch;
    energy.prepare(batch, x, y);
    EnergyState st;
    energy.init_state(batch, st);
    FixedPointSolver solver;
    solver.solve(energy, batch, st, Nudge::none(), 10000, 1e-15);
    Tensor s0 = st.s.back().clone();
    solver.solve(energy, batch, st, Nudge::loss(beta), 1, 0.0);
    // First step: (s_1^β − s*)/β vs −ρ'(u*) ⊙ ∂ℓ/∂s = −(1 − s*²)(s* − y).
    Tensor target = -(1 - s0 * s0) * (s0 - torch::one_hot(y, 4).to(torch::kFloat64));
    return rel((st.s.back() - s0) / beta, target);
  };
  const double a = mismatch(1e-2), b = mismatch(1e-3);
  EXPECT_GT(a, 5 * b);
  EXPECT_LT(b, 1e-2);
}
