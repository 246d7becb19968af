// Everything one run needs, built from a validated config: data, network, learning rule and optimizer.
// prepare() does every check that can fail on user input before anything is written.
#pragma once

#include <memory>

#include "bilevel/config/config.h"
#include "bilevel/data/dataset.h"
#include "bilevel/nn/layered_net.h"
#include "bilevel/quant/quantization.h"
#include "bilevel/rules/learning_rule.h"
#include "bilevel/train/optim.h"

namespace bilevel {

class DataParallel;

// train.probe_solver's solver, or null for none; a ConfigError at that key for an unknown name, for a run without
// quantized weights, or where it or the run's solver keeps no latent.
std::unique_ptr<WeightSolver> make_probe_solver(const ExperimentConfig& cfg);

struct Experiment {
  ExperimentConfig cfg;
  DataSplits data;
  LayeredNet net{nullptr};
  std::unique_ptr<LearningRule> rule;
  std::unique_ptr<LearningRule> probe_reference;  // when train.probe_every > 0
  std::unique_ptr<WeightSolver> probe_solver;     // and train.probe_solver names one (quantized runs)
  Quantization quant{nullptr};  // quantization.enabled: the network's submodule "quant"
  Optimizer optimizer;
  torch::Device device{torch::kCPU};
  // Set when this process is one rank of several (bilevel/dist/data_parallel.h); null when it trains alone.
  std::shared_ptr<DataParallel> dist;
};

// prepare() = check_experiment + load_experiment_data + build_experiment: seeds every RNG, applies determinism and
// thread settings, checks data files, loads the data, builds the network (initialised from cfg.seed), the rule and
// the optimizer. Throws ConfigError / DataError before anything is written.
Experiment prepare(const ExperimentConfig& cfg);

// Every check that needs no data: the rule and the probe's reference rule build, quantization, the memory bound,
// the data files exist.
void check_experiment(const ExperimentConfig& cfg);
// The data set cfg.data names, split (validation from cfg.seed).
DataSplits load_experiment_data(const ExperimentConfig& cfg);
// Network, rule, quantization and optimizer for cfg on data already loaded (for the same cfg.data and cfg.seed:
// e.g. several variants of one config timed on one copy of the data, benchmarks/bench_epoch.cpp).
Experiment build_experiment(const ExperimentConfig& cfg, const DataSplits& data);

// Seeds LibTorch's global RNG and applies cfg.deterministic and cfg.train.threads.
void apply_runtime_settings(const ExperimentConfig& cfg);

}  // namespace bilevel
