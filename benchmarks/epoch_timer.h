// Training-step timing shared by the benchmark programs (bench_epoch.cpp, bench_gpu.cpp): a variant of a config is
// an algorithm name with optional overrides of its own (`backprop`, `ep+solver.kernel=generic`), built from the
// config's initial weights (its seed) and timed over N mini-batches of one shuffled order: the gradient estimate plus
// the optimizer step (train_batch), with each batch's copy to the experiment's device, which is what an epoch costs
// besides evaluation. Variants are timed interleaved (A B C A B C ...) so machine drift stays out of their ratios;
// the first repetition warms caches, allocators and (on a GPU) the libraries' handles, and is dropped.
// On a CUDA device the timed loop ends with torch::cuda::synchronize(), so queued kernels are counted.
#pragma once

#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/data/batches.h"
#include "bilevel/train/experiment.h"
#include "bilevel/train/trainer.h"

namespace bilevel::timing {

// The middle element (the upper one of the two for an even count); 0 for none.
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// Non-empty pieces of s between separators.
inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string p;
  while (std::getline(ss, p, sep))
    if (!p.empty()) out.push_back(p);
  return out;
}

// The config of `variant` (ALGO[+key=value...]) of `file` with `overrides` (the variant's own overrides last).
inline ExperimentConfig variant_config(const std::string& file, std::vector<std::string> overrides,
                                       const std::string& variant) {
  const auto parts = split(variant, '+');
  overrides.push_back("rule.name=" + parts.at(0));
  overrides.insert(overrides.end(), parts.begin() + 1, parts.end());
  return load_config(file, overrides);
}

// The data set of cfg, loaded once per distinct (data keys, seed) in this process and shared by every config that
// names the same data.
inline const DataSplits& data_of(const ExperimentConfig& cfg) {
  static std::map<std::string, DataSplits> loaded;
  const std::string key = YAML::Dump(lookup(cfg.tree, "data")) + "\nseed: " + std::to_string(cfg.seed);
  auto it = loaded.find(key);
  if (it == loaded.end()) it = loaded.emplace(key, load_experiment_data(cfg)).first;
  return it->second;
}

// Runs a block of code (the timed steps) inside something else: a profiler (op_profile.h).
using Around = std::function<void(const std::function<void()>&)>;

// Seconds per training step over `batches` steps (fewer when the training split has fewer batches) of `variant`
// from the config's initial weights (data from data_of); the steps run inside `around` when it is given.
inline double time_steps(const std::string& file, const std::vector<std::string>& overrides,
                         const std::string& variant, int64_t batches, const Around& around = {}) {
  ExperimentConfig cfg = variant_config(file, overrides, variant);
  check_experiment(cfg);
  Experiment x = build_experiment(cfg, data_of(cfg));
  Batches order(x.data.train, cfg.train.batch_size, true, cfg.seed, 0);
  const int64_t n = std::min(batches, order.count());
  std::vector<std::pair<torch::Tensor, torch::Tensor>> data;
  for (int64_t b = 0; b < n; ++b) data.push_back(order.get(b));  // gather outside the timed loop
  x.net->train();
  const bool cuda = x.device.is_cuda();
  if (cuda) torch::cuda::synchronize();
  const auto t0 = std::chrono::steady_clock::now();
  const auto steps = [&] {
    for (int64_t b = 0; b < n; ++b) {
      const torch::Tensor xb = data[b].first.to(x.device), yb = data[b].second.to(x.device);
      train_batch(x, 0, b, order.count(), cfg.optimizer.lr, xb, yb);
    }
    if (cuda) torch::cuda::synchronize();
  };
  if (around) around(steps);
  else steps();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / double(n);
}

// times[v] = the `reps` measurements (seconds per step) of variants[v], after one dropped warm-up repetition.
inline std::vector<std::vector<double>> time_variants(const std::string& file, const std::vector<std::string>& overrides,
                                                      const std::vector<std::string>& variants, int64_t batches,
                                                      int64_t reps) {
  std::vector<std::vector<double>> times(variants.size());
  for (int64_t r = 0; r < reps + 1; ++r)
    for (size_t v = 0; v < variants.size(); ++v) {
      const double t = time_steps(file, overrides, variants[v], batches);
      if (r > 0) times[v].push_back(t);
    }
  return times;
}

}  // namespace bilevel::timing
