// The regime where `implicit` used to go wrong late in training (Fashion-MNIST: 88% at the best epoch, 82% at the
// last): weights large enough that the synchronous free phase no longer converges, so the state it returns is
// not an energy minimum and the linear system of implicit differentiation there, (I − D^½ K D^½) z = D^½ ∂ℓ/∂s,
// is symmetric but indefinite. The reference is the same system solved densely (Eigen LU) at the same states.
#include <gtest/gtest.h>

#include <cmath>
#include <iostream>

#include "oracle/ep_test_support.h"

using namespace ep_test;

namespace {

struct Regime {
  LayeredNet net{nullptr};
  torch::Tensor x, y;
  ep_oracle::Network oracle;
  std::vector<Eigen::VectorXd> states;  // the rule's free states, stacked per example
  double free_residual = 0;
};

bilevel::EnergyRuleOptions late_training_options(const std::string& method) {
  bilevel::EnergyRuleOptions o;
  o.solver = "fixed_point";  // the synchronous dynamics of configs/fmnist_mlp_ep.yaml, T = 30
  o.kernel = "generic";
  o.free_steps = 30;
  o.tol = 0;
  o.implicit_method = method;
  o.implicit_steps = 300;
  o.implicit_tol = 1e-12;
  return o;
}

// A 12-16-10 sigmoid4/mse network with weights `gain` times the default initialisation, 64 random inputs.
Regime make_regime(double gain, uint64_t seed = 3) {
  Regime r;
  r.net = make_mlp(12, {16}, 10, "sigmoid4", "mse", gain, seed);
  torch::manual_seed(seed + 11);
  r.x = torch::rand({64, 1, 1, 12}, torch::kFloat64);
  r.y = torch::randint(0, 10, {64}, torch::kLong);
  r.oracle = to_oracle(r.net, "mse");
  bilevel::ImplicitDifferentiation rule(bilevel::make_objective("mse"), late_training_options("minres"));
  bilevel::SolveStats st;
  const auto& free = rule.relax_free(r.net, r.x, r.y, &st);
  r.free_residual = st.residual;
  for (int64_t b = 0; b < r.x.size(0); ++b) {
    std::vector<double> v;
    for (const auto& s : free.s)
      for (int64_t i = 0; i < s.size(1); ++i) v.push_back(s[b][i].item<double>());
    r.states.push_back(Eigen::Map<Eigen::VectorXd>(v.data(), Eigen::Index(v.size())));
  }
  return r;
}

struct Outcome {
  double error = 0, residual = 0, indefinite = 0;
};

Outcome run(Regime& r, const std::string& method) {
  const auto exact = flat(ep_oracle::hypergradient(r.oracle, to_eigen(r.x), to_labels(r.y), &r.states));
  bilevel::ImplicitDifferentiation rule(bilevel::make_objective("mse"), late_training_options(method));
  bilevel::StepStats stats;
  const auto g = gradient_of(rule, r.net, r.x, r.y, &stats);
  return {rel(g, exact), stats.diagnostics.at("implicit_residual"), stats.diagnostics.at("implicit_indefinite")};
}

}  // namespace

TEST(ImplicitIndefinite, SmallWeightsDefiniteSystemEverySolverAgrees) {
  Regime r = make_regime(1.0, 4);
  EXPECT_LT(r.free_residual, 1e-6);  // the free phase converged: a strict minimum, a definite system
  for (const std::string method : {"minres", "cg"}) {
    const Outcome o = run(r, method);
    EXPECT_EQ(o.indefinite, 0.0) << method;
    EXPECT_LT(o.error, 1e-8) << method;
    EXPECT_LT(o.residual, 1e-10) << method;
  }
}

TEST(ImplicitIndefinite, LargeWeightsMinresSolvesTheIndefiniteSystemWhereCgFails) {
  Regime r = make_regime(2.0, 4);
  const Outcome minres = run(r, "minres"), cg = run(r, "cg");
  std::cout << "free residual " << r.free_residual << "; minres: error " << minres.error << ", residual "
            << minres.residual << ", indefinite " << minres.indefinite << "; cg: error " << cg.error
            << ", residual " << cg.residual << ", indefinite " << cg.indefinite << "\n";
  // The regime: the free phase did not settle, and some examples' systems are indefinite.
  EXPECT_GT(r.free_residual, 1e-3);
  EXPECT_GT(minres.indefinite, 0.0);
  EXPECT_GT(cg.indefinite, 0.0);
  // MINRES solves it.
  EXPECT_LT(minres.error, 1e-6);
  EXPECT_LT(minres.residual, 1e-8);
  // The old solver does not (this is what the test would catch).
  EXPECT_GT(cg.error, 1e-2);
  EXPECT_GT(cg.residual, 1e-2);
}
