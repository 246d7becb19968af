// Energy-based rules against the independent Eigen oracle (tests/oracle/ep_oracle.h) on random tiny fully
// connected networks (5-7-4-3) with smooth ρ: fixed points, exact hypergradients from bptt and implicit, and the
// O(β) / O(β²) convergence of one-sided / symmetric EP.
#include <gtest/gtest.h>

#include <cmath>

#include "oracle/ep_test_support.h"

using namespace ep_test;
using bilevel::EnergyRuleOptions;

namespace {

struct Case {
  std::string activation, loss;
};

struct Problem {
  LayeredNet net;
  torch::Tensor x, y;
  ep_oracle::Network oracle;
  torch::Tensor exact;  // oracle hypergradient, flattened in parameter order
};

Problem make_problem(const Case& c, uint64_t seed = 7, int64_t batch = 6) {
  auto net = make_mlp(5, {7, 4}, 3, c.activation, c.loss, 1.0, seed);
  torch::manual_seed(seed + 100);
  auto x = torch::rand({batch, 1, 1, 5}, torch::kFloat64) * 2 - 0.5;
  auto y = torch::randint(0, 3, {batch}, torch::kLong);
  auto oracle = to_oracle(net, c.loss);
  auto exact = flat(ep_oracle::hypergradient(oracle, to_eigen(x), to_labels(y)));
  return {net, x, y, oracle, exact};
}

// Least-squares slope of log(err) against log(β).
double loglog_slope(const std::vector<double>& betas, const std::vector<double>& errs) {
  double mx = 0, my = 0;
  for (size_t i = 0; i < betas.size(); ++i) mx += std::log(betas[i]), my += std::log(errs[i]);
  mx /= betas.size(), my /= betas.size();
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < betas.size(); ++i) {
    const double dx = std::log(betas[i]) - mx;
    sxy += dx * (std::log(errs[i]) - my), sxx += dx * dx;
  }
  return sxy / sxx;
}

const std::vector<Case> kCases = {{"tanh", "mse"}, {"sigmoid4", "mse"}, {"tanh", "cross_entropy"},
                                  {"sigmoid4", "cross_entropy"}};

}  // namespace

TEST(EpOracle, OracleAgreesWithFiniteDifferences) {
  for (const auto& c : kCases) {
    auto p = make_problem(c);
    auto fd = flat(ep_oracle::finite_difference(p.oracle, to_eigen(p.x), to_labels(p.y), 1e-5));
    EXPECT_LT(rel(p.exact, fd), 1e-7) << c.activation << "/" << c.loss;
    EXPECT_GT(p.exact.norm().item<double>(), 1e-3);
  }
}

TEST(EpOracle, FreeEquilibriumMatchesOracle) {
  for (const auto& c : kCases) {
    for (const std::string solver : {"fixed_point", "layerwise", "layerwise_top_down"}) {
      auto p = make_problem(c);
      auto rule = make_ep(c.loss, converged_options(solver), false);
      bilevel::SolveStats st;
      const auto& free = rule->relax_free(p.net, p.x, p.y, &st);
      EXPECT_LT(st.residual, 1e-14);
      EXPECT_LT(st.steps, 5000);
      auto X = to_eigen(p.x);
      double worst = 0;
      for (int64_t b = 0; b < p.x.size(0); ++b) {
        auto s = ep_oracle::fixed_point(p.oracle, X.row(b).transpose());
        const auto off = ep_oracle::offsets(p.oracle);
        for (int k = 1; k <= p.oracle.num_states(); ++k)
          for (int i = 0; i < off[k] - off[k - 1]; ++i)
            worst = std::max(worst, std::abs(free.s[k - 1][b][i].item<double>() - s[off[k - 1] + i]));
      }
      EXPECT_LT(worst, 1e-12) << c.activation << "/" << c.loss << "/" << solver;
    }
  }
}

TEST(EpOracle, ImplicitMatchesExactHypergradient) {
  for (const auto& c : kCases) {
    for (const std::string method : {"minres", "cg", "fixed_point"}) {
      auto p = make_problem(c);
      auto opt = converged_options();
      opt.implicit_method = method;
      bilevel::ImplicitDifferentiation rule(bilevel::make_objective(c.loss), opt);
      bilevel::StepStats stats;
      auto g = gradient_of(rule, p.net, p.x, p.y, &stats);
      EXPECT_LT(rel(g, p.exact), 1e-9) << c.activation << "/" << c.loss << "/" << method;
      EXPECT_LT(stats.diagnostics.at("implicit_residual"), 1e-10);
      EXPECT_GT(stats.diagnostics.at("implicit_steps"), 1);
    }
  }
}

TEST(EpOracle, BpttMatchesExactHypergradient) {
  for (const auto& c : kCases) {
    auto p = make_problem(c);
    auto opt = converged_options();
    opt.free_steps = 300;
    opt.tol = 0;
    bilevel::BackpropThroughTime rule(bilevel::make_objective(c.loss), opt);
    auto g = gradient_of(rule, p.net, p.x, p.y);
    EXPECT_LT(rel(g, p.exact), 1e-8) << c.activation << "/" << c.loss;
    // A short unroll is measurably off: the test can fail.
    opt.free_steps = 3;
    bilevel::BackpropThroughTime short_rule(bilevel::make_objective(c.loss), opt);
    EXPECT_GT(rel(gradient_of(short_rule, p.net, p.x, p.y), p.exact), 1e-4);
  }
}

TEST(EpOracle, EpErrorIsFirstOrderInBetaOneSidedAndSecondOrderSymmetric) {
  const std::vector<double> betas = {0.08, 0.04, 0.02, 0.01, 0.005};
  for (const auto& c : kCases) {
    for (const std::string solver : {"fixed_point", "layerwise", "layerwise_top_down"}) {
      auto p = make_problem(c);
      std::vector<double> e1, e2;
      for (double beta : betas) {
        auto opt = converged_options(solver);
        opt.beta = beta;
        auto one = make_ep(c.loss, opt, false);
        auto sym = make_ep(c.loss, opt, true);
        e1.push_back(rel(gradient_of(*one, p.net, p.x, p.y), p.exact));
        e2.push_back(rel(gradient_of(*sym, p.net, p.x, p.y), p.exact));
      }
      const double s1 = loglog_slope(betas, e1), s2 = loglog_slope(betas, e2);
      std::cout << c.activation << "/" << c.loss << "/" << solver << ": one-sided slope " << s1 << " (err "
                << e1.front() << " .. " << e1.back() << "), symmetric slope " << s2 << " (err " << e2.front()
                << " .. " << e2.back() << ")\n";
      EXPECT_GT(s1, 0.8);
      EXPECT_LT(s1, 1.3);
      EXPECT_GT(s2, 1.7);
      EXPECT_LT(s2, 2.3);
      EXPECT_LT(e2.back(), e1.back());
      EXPECT_LT(e1.back(), 0.05);
    }
  }
}

TEST(EpOracle, NegativeBetaOneSidedAlsoConverges) {
  auto p = make_problem({"tanh", "mse"});
  auto opt = converged_options();
  opt.beta = -0.005;
  auto neg = make_ep("mse", opt, false);
  opt.beta = 0.005;
  auto pos = make_ep("mse", opt, false);
  auto gn = gradient_of(*neg, p.net, p.x, p.y), gp = gradient_of(*pos, p.net, p.x, p.y);
  EXPECT_LT(rel(gn, p.exact), 0.05);
  // Opposite signs of β give O(β) errors of opposite sign: their mean is O(β²).
  EXPECT_LT(rel(0.5 * (gn + gp), p.exact), 0.1 * rel(gp, p.exact));
}
