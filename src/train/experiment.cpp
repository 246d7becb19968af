#include "bilevel/train/experiment.h"

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include <filesystem>

#include "bilevel/rules/registry.h"
#include "bilevel/train/memory_estimate.h"
#include "bilevel/util/cublas_env.h"
#include "bilevel/util/threads.h"

namespace bilevel {

void apply_runtime_settings(const ExperimentConfig& cfg) {
  // Before anything touches a CUDA device: cuBLAS reads CUBLAS_WORKSPACE_CONFIG when its handle is created, and
  // without it throws at the first product in deterministic mode.
  apply_cublas_workspace_config(cfg.deterministic);
  torch::manual_seed(static_cast<uint64_t>(cfg.seed));
  at::globalContext().setDeterministicAlgorithms(cfg.deterministic, false);
  // 0 = OMP_NUM_THREADS when set (the test runner sets 1 so parallel tests do not oversubscribe the cores), else
  // the CPUs this process may run on (affinity mask and cgroup quota, e.g. what Slurm grants), for both pools.
  apply_cpu_threads(static_cast<int>(cfg.train.threads));
}

std::unique_ptr<WeightSolver> make_probe_solver(const ExperimentConfig& cfg) {
  const std::string name = cfg.get<std::string>("train.probe_solver");
  if (name == "none") return nullptr;
  if (!cfg.get<bool>("quantization.enabled"))
    cfg.fail("train.probe_solver", "compares latent-weight gradients, and this run has none "
                                   "(quantization.enabled: false)");
  auto solver = make_weight_solver(name, cfg, "train.probe_solver");
  const auto no_latent = [&](const std::string& which) {
    cfg.fail("train.probe_solver", "solver " + which + " keeps no latent weights, so it has no latent gradient to compare");
  };
  if (!solver->uses_latent()) no_latent(name);
  const std::string own = cfg.get<std::string>("quantization.weights.solver");
  if (own != name && !make_weight_solver(own, cfg, "quantization.weights.solver")->uses_latent())
    no_latent(own + " (quantization.weights.solver)");
  return solver;
}

void check_experiment(const ExperimentConfig& cfg) {
  if (cfg.train.device == "cuda" && !torch::cuda::is_available())
    cfg.fail("train.device", "cuda requested but no CUDA device is available");
  // Cheap checks first, so a typo fails before the data set is read.
  make_rule(cfg);
  if (cfg.get<int64_t>("train.probe_every") > 0) {
    make_rule(with_rule(cfg, cfg.get<std::string>("train.probe_reference")));
    make_probe_solver(cfg);
  }
  validate_quantization(cfg);
  check_memory(cfg);  // before anything is allocated
  for (const auto& f : required_files(cfg.data))
    if (!std::filesystem::exists(f))
      cfg.fail("data.root", "data file " + f + " does not exist (for data.name: " + cfg.data.name +
                                (cfg.data.name == "fashion_mnist" ? "; install Debian's dataset-fashion-mnist" : "") + ")");
  if (cfg.model.kind == "conv" && cfg.model.channels.empty())
    cfg.fail("model.channels", "a conv model needs at least one conv block");
}

DataSplits load_experiment_data(const ExperimentConfig& cfg) { return load_data(cfg.data, cfg.seed); }

Experiment build_experiment(const ExperimentConfig& cfg, const DataSplits& data) {
  Experiment e;
  e.cfg = cfg;
  if (cfg.train.device == "cuda") e.device = torch::Device(torch::kCUDA);
  e.rule = make_rule(cfg);
  if (cfg.get<int64_t>("train.probe_every") > 0)
    e.probe_reference = make_rule(with_rule(cfg, cfg.get<std::string>("train.probe_reference")));
  e.data = data;
  apply_runtime_settings(cfg);
  try {
    e.net = LayeredNet(cfg.model, e.data.train.example_shape(), e.data.train.num_classes,
                       e.rule->objective().activate_output());
  } catch (const std::invalid_argument& err) {
    const std::string what = err.what();
    if (what.rfind("model.layer_gains", 0) == 0) cfg.fail("model.layer_gains", what);
    cfg.fail(cfg.model.kind == "conv" ? "model.channels" : "model.hidden", what);
  }
  if (cfg.get<bool>("quantization.enabled")) {
    e.quant = Quantization(cfg, e.net);
    e.net->register_module("quant", e.quant);
  }
  if (e.probe_reference) e.probe_solver = make_probe_solver(cfg);
  e.net->to(e.device);
  e.optimizer = make_optimizer(cfg, e.net, e.quant.is_empty() ? nullptr : e.quant.get());
  return e;
}

Experiment prepare(const ExperimentConfig& cfg) {
  check_experiment(cfg);
  return build_experiment(cfg, load_experiment_data(cfg));
}

}  // namespace bilevel
