// Timing harness (disabled by default; run with --gtest_also_run_disabled_tests): ms per batch of backprop
// (autograd forward + backward of the same LayeredNet) against the energy-based rules in the classic setting of
// Ernoult et al. 2019 / Laborieux et al. 2021: 784-512-10, sigmoid4, mse, batch 50, T = 30, K = 10, float32.
// Environment: EP_PERF_THREADS (default 1), EP_PERF_BATCHES (default 300).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <map>

#include "bilevel/rules/backprop.h"
#include "oracle/ep_test_support.h"

using namespace bilevel;

namespace {

double ms_per_batch(LearningRule& rule, LayeredNet& net, const std::vector<torch::Tensor>& xs,
                    const torch::Tensor& y, int n, std::map<std::string, double>* diag = nullptr) {
  for (int i = 0; i < 5; ++i) {  // warm-up
    for (auto& p : net->parameters()) p.mutable_grad() = torch::Tensor();
    rule.train_step(net, xs[i % xs.size()], y);
  }
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) {
    for (auto& p : net->parameters())
      if (p.grad().defined()) p.mutable_grad().zero_();
    auto st = rule.train_step(net, xs[i % xs.size()], y);
    if (diag)
      for (auto& [k, v] : st.diagnostics) (*diag)[k] += v / n;
  }
  auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::milli>(t1 - t0).count() / n;
}

}  // namespace

TEST(EpPerf, DISABLED_ClassicMlpEpochCost) {
  // The machine may be shared: every variant is timed in short interleaved rounds and the fastest round is kept.
  const int threads = std::getenv("EP_PERF_THREADS") ? std::atoi(std::getenv("EP_PERF_THREADS")) : 1;
  const int n = std::getenv("EP_PERF_BATCHES") ? std::atoi(std::getenv("EP_PERF_BATCHES")) : 40;
  const int rounds = std::getenv("EP_PERF_ROUNDS") ? std::atoi(std::getenv("EP_PERF_ROUNDS")) : 7;
  torch::set_num_threads(threads);
  torch::manual_seed(0);
  ModelConfig m;
  m.kind = "mlp";
  m.activation = "sigmoid4";
  m.hidden = {512};
  m.init = "default";
  LayeredNet net(m, std::vector<int64_t>{1, 28, 28}, 10, true);
  std::vector<torch::Tensor> xs;
  for (int i = 0; i < 8; ++i) xs.push_back(torch::rand({50, 1, 28, 28}));
  auto y = torch::randint(0, 10, {50}, torch::kLong);

  struct Variant {
    std::string label, rule, solver;
    int T, K;
    double tol;
  };
  const std::vector<Variant> variants = {
      {"backprop (autograd)          ", "backprop", "", 0, 0, 0.0},
      {"ep fixed_point T=30 K=10     ", "ep", "fixed_point", 30, 10, 0.0},
      {"ep layerwise   T=30 K=10     ", "ep", "layerwise", 30, 10, 0.0},
      {"ep layerwise   T=15 K=5      ", "ep", "layerwise", 15, 5, 0.0},
      {"ep fixed_point tol=1e-4      ", "ep", "fixed_point", 30, 10, 1e-4},
      {"ep layerwise   tol=1e-4      ", "ep", "layerwise", 30, 10, 1e-4},
      {"ep_symmetric fixed_point     ", "ep_symmetric", "fixed_point", 30, 10, 0.0},
      {"chl fixed_point T=30 K=10    ", "chl", "fixed_point", 30, 10, 0.0},
      {"implicit cg (T=30, 20 it)    ", "implicit", "fixed_point", 30, 10, 0.0},
      {"bptt (T=30, autograd)        ", "bptt", "fixed_point", 30, 10, 0.0}};
  std::vector<std::unique_ptr<LearningRule>> rules;
  for (const auto& v : variants) {
    EnergyRuleOptions o;
    o.solver = v.solver.empty() ? "fixed_point" : v.solver;
    o.free_steps = std::max(v.T, 1);
    o.nudged_steps = std::max(v.K, 1);
    o.tol = v.tol;
    o.beta = 0.1;
    o.implicit_steps = 20;
    o.implicit_tol = 1e-5;
    if (v.rule == "backprop") rules.push_back(std::make_unique<Backprop>(make_objective("mse")));
    if (v.rule == "ep") rules.push_back(ep_test::make_ep("mse", o, false));
    if (v.rule == "ep_symmetric") rules.push_back(ep_test::make_ep("mse", o, true));
    if (v.rule == "chl") rules.push_back(std::make_unique<ContrastiveHebbian>(make_objective("mse"), o));
    if (v.rule == "implicit") rules.push_back(std::make_unique<ImplicitDifferentiation>(make_objective("mse"), o));
    if (v.rule == "bptt") rules.push_back(std::make_unique<BackpropThroughTime>(make_objective("mse"), o));
  }
  std::vector<double> best(variants.size(), 1e30);
  std::vector<std::map<std::string, double>> diag(variants.size());
  for (int r = 0; r < rounds; ++r)
    for (size_t i = 0; i < variants.size(); ++i) {
      std::map<std::string, double> d;
      best[i] = std::min(best[i], ms_per_batch(*rules[i], net, xs, y, n, &d));
      diag[i] = d;
    }
  std::printf("threads %d, best of %d rounds of %d batches of 50 (784-512-10 sigmoid4 mse, float32)\n", threads,
              rounds, n);
  for (size_t i = 0; i < variants.size(); ++i) {
    std::printf("  %s %7.3f ms/batch  %5.2fx backprop", variants[i].label.c_str(), best[i], best[i] / best[0]);
    if (i > 0)
      std::printf("   free %4.1f steps r=%.1e, nudged %4.1f steps r=%.1e", diag[i]["free_steps"],
                  diag[i]["free_residual"], diag[i]["nudged_steps"], diag[i]["nudged_residual"]);
    std::printf("\n");
  }
}
