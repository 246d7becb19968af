#include "bilevel/train/experiment.h"

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/utils.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "bilevel/rules/registry.h"
#include "bilevel/train/memory_estimate.h"
#include "bilevel/util/threads.h"

namespace bilevel {

void apply_runtime_settings(const ExperimentConfig& cfg) {
  torch::manual_seed(static_cast<uint64_t>(cfg.seed));
  at::globalContext().setDeterministicAlgorithms(cfg.deterministic, false);
  // LibTorch's OpenMP default can be a single thread (it is on Debian's build here). 0 means OMP_NUM_THREADS
  // when set (the test runner sets 1 so parallel tests do not oversubscribe the cores), else every core.
  int threads = static_cast<int>(cfg.train.threads);
  if (threads == 0) {
    const char* omp = std::getenv("OMP_NUM_THREADS");
    threads = omp && std::atoi(omp) > 0 ? std::atoi(omp) : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  set_cpu_threads(threads);
}

Experiment prepare(const ExperimentConfig& cfg) {
  Experiment e;
  e.cfg = cfg;
  if (cfg.train.device == "cuda") {
    if (!torch::cuda::is_available()) cfg.fail("train.device", "cuda requested but no CUDA device is available");
    e.device = torch::Device(torch::kCUDA);
  }
  // Cheap checks first, so a typo fails before the data set is read.
  e.rule = make_rule(cfg);
  if (cfg.get<int64_t>("train.probe_every") > 0) {
    ExperimentConfig ref = cfg;
    ref.train.algorithm = cfg.get<std::string>("train.probe_reference");
    e.probe_reference = make_rule(ref);
  }
  check_memory(cfg);  // before anything is allocated
  for (const auto& f : required_files(cfg.data))
    if (!std::filesystem::exists(f))
      cfg.fail("data.root", "data file " + f + " does not exist (for data.name: " + cfg.data.name +
                                (cfg.data.name == "fashion_mnist" ? "; install Debian's dataset-fashion-mnist" : "") + ")");
  e.data = load_data(cfg.data, cfg.seed);
  if (cfg.model.kind == "conv" && cfg.model.channels.empty())
    cfg.fail("model.channels", "a conv model needs at least one conv block");
  apply_runtime_settings(cfg);
  try {
    e.net = LayeredNet(cfg.model, e.data.train.example_shape(), e.data.train.num_classes,
                       e.rule->objective().activate_output());
  } catch (const std::invalid_argument& err) {
    cfg.fail(cfg.model.kind == "conv" ? "model.channels" : "model.hidden", err.what());
  }
  e.net->to(e.device);
  e.optimizer = make_optimizer(cfg, e.net);
  return e;
}

}  // namespace bilevel
