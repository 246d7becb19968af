// Google Benchmark microbenchmarks: one train_step of every learning rule on a fixed batch, and one inner-solver
// call of each solver, on the 784-512-10 sigmoid4 MLP (mse) with batch 50 and 1 thread.
//
//   build/micro_rules [--benchmark_filter=train_step] [--benchmark_repetitions=5] ...
//
// Rules are built through the registry (make_rule on a config from load_config_text), so a rule that is not
// registered in this build is skipped with a note. Quantizer benchmarks: none yet (no quantizer API exists).
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/energy/inner_solver.h"
#include "bilevel/energy/layered_energy.h"
#include "bilevel/energy/neuron.h"
#include "bilevel/kernels/fused_ops.h"
#include "bilevel/nn/activation.h"
#include "bilevel/nn/layered_net.h"
#include "bilevel/nn/objective.h"
#include "bilevel/rules/learning_rule.h"
#include "bilevel/train/experiment.h"

using namespace bilevel;

namespace {

constexpr int64_t kBatch = 50;

// The network every rule trains here; the energy-based rules need a monotone ρ and an mse output state.
const char* kConfig = R"(
seed: 0
model:
  kind: mlp
  hidden: [512]
  activation: sigmoid4
train:
  loss: mse
  batch_size: 50
  threads: 1
)";

// The rules the project has or is landing; any other registered rule is benchmarked too.
const std::vector<std::string> kKnownRules = {"backprop", "ep", "ep_symmetric", "chl", "bptt", "implicit", "dual_prop"};

ExperimentConfig config_for(const std::string& algorithm) {
  return load_config_text(kConfig, "micro_rules", {"rule.name=" + algorithm});
}

// A fixed batch: uniform images in [0, 1] and labels from a fixed generator.
std::pair<torch::Tensor, torch::Tensor> fixed_batch() {
  torch::manual_seed(1234);
  return {torch::rand({kBatch, 1, 28, 28}), torch::randint(0, 10, {kBatch}, torch::kLong)};
}

void BM_train_step(benchmark::State& state, const std::string& algorithm) {
  ExperimentConfig cfg;
  std::unique_ptr<LearningRule> rule;
  try {
    cfg = config_for(algorithm);
    rule = make_rule(cfg);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());  // a rule whose config keys are not in this build's schema
    for (auto _ : state) {
    }
    return;
  }
  apply_runtime_settings(cfg);  // seeds LibTorch, 1 thread
  LayeredNet net(cfg.model, std::vector<int64_t>{1, 28, 28}, 10, rule->objective().activate_output());
  const auto [x, y] = fixed_batch();
  int64_t step = 0;
  for (auto _ : state) {
    for (auto& p : net->parameters())
      if (p.grad().defined()) p.mutable_grad().zero_();
    rule->begin_batch(cfg.seed, 0, step++);
    StepStats s = rule->train_step(net, x, y);
    benchmark::DoNotOptimize(s.resolve().loss_sum);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetLabel(algorithm);
}

// One solve of `steps` sweeps of the free phase from the zero state (a warm start would be an exact fixed point
// already, which the fused kernel detects after one sweep).
void BM_solver(benchmark::State& state, const std::string& solver_name, const std::string& kernel) {
  const ExperimentConfig cfg = config_for("backprop");
  apply_runtime_settings(cfg);
  auto objective = make_objective("mse");
  LayeredNet net(cfg.model, std::vector<int64_t>{1, 28, 28}, 10, objective->activate_output());
  const Neuron neuron = Neuron::from_activation(net->rho());
  LayeredEnergy energy(*net, neuron, *objective);
  auto solver = make_solver(solver_name, kernel);
  const auto [x, y] = fixed_batch();
  torch::NoGradGuard no_grad;
  EnergyBatch batch;
  energy.prepare(batch, x, y);
  EnergyState st;
  energy.init_state(batch, st);
  const int64_t steps = state.range(0);
  for (auto _ : state) {
    energy.init_state(batch, st);
    const SolveStats s = solver->solve(energy, batch, st, Nudge::none(), steps, 0.0);
    benchmark::DoNotOptimize(s.residual);
  }
  state.counters["sweeps/s"] = benchmark::Counter(double(state.iterations() * steps), benchmark::Counter::kIsRate);
  state.SetItemsProcessed(state.iterations() * kBatch);
}

// The fused element-wise kernels' CPU twins (kernels/fused_ops.h) against the unfused LibTorch sequences they
// would replace, on one [50, 512] float32 layer, 1 thread: dual propagation's dyad at α = ½, and the fixed-point
// sweep's epilogue (finish_ + max_abs_diff).
void BM_dyad(benchmark::State& state, const std::string& act, bool fused) {
  at::set_num_threads(1);
  torch::manual_seed(0);
  const torch::Tensor u = torch::randn({kBatch, 512}), f = torch::randn({kBatch, 512}) * 0.1;
  const Activation& rho = activation(act);
  const kernels::ActParams params = kernels::act_of(act);
  torch::Tensor d = torch::empty_like(u), s = torch::empty_like(u);
  for (auto _ : state) {
    if (fused) {
      kernels::dyad_update_out(u, f, 0.5, params, d, s);
    } else {
      torch::Tensor sp = rho.f(at::add(u, f, 0.5)), sm = rho.f(at::sub(u, f, 0.5));
      d = sp - sm;
      s = at::add(sm, d, 0.5);
    }
    void* out = s.data_ptr();
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations() * u.numel());
}

void BM_state(benchmark::State& state, const std::string& act, bool fused) {
  at::set_num_threads(1);
  torch::manual_seed(0);
  const Neuron neuron = Neuron::from_activation(activation(act));
  const torch::Tensor v0 = torch::randn({kBatch, 512}) * 3, s_old = torch::rand({kBatch, 512});
  const kernels::ActParams params = neuron.act_params();
  torch::Tensor v = v0.clone();
  for (auto _ : state) {
    v.copy_(v0);
    double r;
    if (fused) {
      r = kernels::state_update_(v, s_old, params);
    } else {
      neuron.finish_(v);
      r = max_abs_diff(v, s_old);
    }
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations() * v.numel());
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  const auto registered = rule_names();
  std::vector<std::string> rules;
  for (const auto& r : kKnownRules) {
    if (std::find(registered.begin(), registered.end(), r) == registered.end()) {
      std::fprintf(stderr, "micro_rules: rule '%s' is not registered in this build; skipped\n", r.c_str());
      continue;
    }
    rules.push_back(r);
  }
  for (const auto& r : registered)
    if (std::find(rules.begin(), rules.end(), r) == rules.end()) rules.push_back(r);
  for (const auto& r : rules)
    benchmark::RegisterBenchmark(("train_step/" + r).c_str(), BM_train_step, r)->Unit(benchmark::kMillisecond);
  for (const auto& s : solver_names())
    for (const std::string kernel : {"generic", "fused"}) {
      if (s != "fixed_point" && kernel == "fused") continue;  // only fixed_point has a fused path
      benchmark::RegisterBenchmark(("solver/" + s + "/" + kernel).c_str(), BM_solver, s, kernel)
          ->Arg(10)
          ->Unit(benchmark::kMillisecond);
    }

  for (const std::string act : {"relu", "sigmoid4", "tanh"})
    for (const bool fused : {false, true}) {
      const std::string tag = act + (fused ? "/fused_twin" : "/unfused");
      benchmark::RegisterBenchmark(("elementwise/dyad/" + tag).c_str(), BM_dyad, act, fused)
          ->Unit(benchmark::kMicrosecond);
      benchmark::RegisterBenchmark(("elementwise/state/" + tag).c_str(), BM_state, act, fused)
          ->Unit(benchmark::kMicrosecond);
    }

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
