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
  for (int i = 0; i < 20; ++i) {  // warm-up
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
  const int threads = std::getenv("EP_PERF_THREADS") ? std::atoi(std::getenv("EP_PERF_THREADS")) : 1;
  const int n = std::getenv("EP_PERF_BATCHES") ? std::atoi(std::getenv("EP_PERF_BATCHES")) : 300;
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

  Backprop bp(make_objective("mse"));
  const double t_bp = ms_per_batch(bp, net, xs, y, n);
  std::printf("threads %d, %d batches of 50\n  backprop                         %7.3f ms/batch\n", threads, n, t_bp);
  struct Variant {
    const char* label;
    const char* rule;
    const char* solver;
    int T, K;
    double tol;
  };
  for (const Variant& v : {Variant{"ep  fixed_point T=30 K=10", "ep", "fixed_point", 30, 10, 0.0},
                           Variant{"ep  layerwise   T=30 K=10", "ep", "layerwise", 30, 10, 0.0},
                           Variant{"ep  layerwise   T=8  K=4 ", "ep", "layerwise", 8, 4, 0.0},
                           Variant{"ep  fixed_point tol=1e-4  ", "ep", "fixed_point", 30, 10, 1e-4},
                           Variant{"ep  layerwise   tol=1e-4  ", "ep", "layerwise", 30, 10, 1e-4},
                           Variant{"ep_symmetric fixed_point  ", "ep_symmetric", "fixed_point", 30, 10, 0.0},
                           Variant{"chl fixed_point T=30 K=10", "chl", "fixed_point", 30, 10, 0.0},
                           Variant{"implicit cg (T=30)        ", "implicit", "fixed_point", 30, 10, 0.0},
                           Variant{"bptt (T=30, autograd)     ", "bptt", "fixed_point", 30, 10, 0.0}}) {
    EnergyRuleOptions o;
    o.solver = v.solver;
    o.free_steps = v.T;
    o.nudged_steps = v.K;
    o.tol = v.tol;
    o.beta = 0.1;
    o.implicit_steps = 20;
    o.implicit_tol = 1e-5;
    std::unique_ptr<LearningRule> rule;
    const std::string r = v.rule;
    if (r == "ep") rule = ep_test::make_ep("mse", o, false);
    if (r == "ep_symmetric") rule = ep_test::make_ep("mse", o, true);
    if (r == "chl") rule = std::make_unique<ContrastiveHebbian>(make_objective("mse"), o);
    if (r == "implicit") rule = std::make_unique<ImplicitDifferentiation>(make_objective("mse"), o);
    if (r == "bptt") rule = std::make_unique<BackpropThroughTime>(make_objective("mse"), o);
    std::map<std::string, double> diag;
    const double t = ms_per_batch(*rule, net, xs, y, r == "bptt" ? n / 4 : n, &diag);
    std::printf("  %s  %7.3f ms/batch  (%.2fx backprop)  free %.1f steps, r=%.1e; nudged %.1f steps, r=%.1e\n",
                v.label, t, t / t_bp, diag["free_steps"], diag["free_residual"], diag["nudged_steps"],
                diag["nudged_residual"]);
  }
}
