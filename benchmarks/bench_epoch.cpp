// Training-time ratio of learning rules against backprop on the same network, data and batches, in one process.
//
//   bench_epoch CONFIG.yaml VARIANT[,VARIANT...] [--batches N] [--reps R] [key=value ...]
//
// A variant is an algorithm name, optionally followed by its own overrides: `backprop`, `ep`, or
// `backprop+quantization.enabled=false` (the full-precision twin of a quantized config).
//
// For each repetition, every algorithm in turn (A B C A B C ...) trains N mini-batches from the same initial
// weights (the config's seed) — the gradient estimate plus the optimizer step, which is what an epoch costs
// besides evaluation. Reports the median time per batch, the projected epoch time, and the ratio of medians to
// the first algorithm (put backprop first). Interleaving keeps machine drift out of the ratios.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/data/batches.h"
#include "bilevel/train/experiment.h"
#include "bilevel/train/trainer.h"
#include "bilevel/util/error.h"

using namespace bilevel;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string p;
  while (std::getline(ss, p, sep))
    if (!p.empty()) out.push_back(p);
  return out;
}

// Seconds for `batches` training steps of `variant` from the config's initial weights.
// The data set is loaded once per distinct (data keys, seed) and shared by the variants.
double time_steps(const std::string& file, std::vector<std::string> overrides, const std::string& variant,
                  int64_t batches) {
  const auto parts = split(variant, '+');
  overrides.push_back("rule.name=" + parts.at(0));
  overrides.insert(overrides.end(), parts.begin() + 1, parts.end());
  ExperimentConfig cfg = load_config(file, overrides);
  check_experiment(cfg);
  static std::map<std::string, DataSplits> loaded;
  const std::string key = YAML::Dump(lookup(cfg.tree, "data")) + "\nseed: " + std::to_string(cfg.seed);
  auto it = loaded.find(key);
  if (it == loaded.end()) it = loaded.emplace(key, load_experiment_data(cfg)).first;
  Experiment x = build_experiment(cfg, it->second);
  Batches order(x.data.train, cfg.train.batch_size, true, cfg.seed, 0);
  const int64_t n = std::min(batches, order.count());
  std::vector<std::pair<torch::Tensor, torch::Tensor>> data;
  for (int64_t b = 0; b < n; ++b) data.push_back(order.get(b));  // gather outside the timed loop
  x.net->train();
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t b = 0; b < n; ++b) train_batch(x, 0, b, order.count(), cfg.optimizer.lr, data[b].first, data[b].second);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / double(n);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || std::string(argv[1]) == "--help") {
    std::fprintf(stderr, "usage: bench_epoch CONFIG.yaml VARIANT[,VARIANT...] [--batches N] [--reps R] [key=value ...]\n"
                         "  VARIANT = ALGO[+key=value...], e.g. backprop+quantization.enabled=false\n");
    return 2;
  }
  int64_t batches = 200, reps = 5;
  std::vector<std::string> overrides;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--batches" && i + 1 < argc) batches = std::stoll(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::stoll(argv[++i]);
    else overrides.push_back(a);
  }
  spdlog::set_level(spdlog::level::warn);
  try {
    ExperimentConfig cfg = load_config(argv[1], overrides);
    const auto algos = split(argv[2], ',');
    std::vector<std::vector<double>> times(algos.size());
    for (int64_t r = 0; r < reps + 1; ++r)
      for (size_t a = 0; a < algos.size(); ++a) {
        double t = time_steps(argv[1], overrides, algos[a], batches);
        if (r > 0) times[a].push_back(t);  // repetition 0 warms caches and allocators
      }
    Experiment probe = prepare(cfg);
    const double per_epoch = std::ceil(double(probe.data.train.size()) / double(cfg.train.batch_size));
    std::printf("config: %s  batch %lld  %lld train examples  threads %d  %lld batches x %lld reps\n", argv[1],
                static_cast<long long>(cfg.train.batch_size), static_cast<long long>(probe.data.train.size()),
                at::get_num_threads(), static_cast<long long>(batches), static_cast<long long>(reps));
    std::printf("%-40s %12s %14s %10s\n", "variant", "ms/batch", "epoch s (est)", "ratio");
    const double base = median(times[0]);
    for (size_t a = 0; a < algos.size(); ++a) {
      const double m = median(times[a]);
      std::printf("%-40s %12.3f %14.2f %10.2f\n", algos[a].c_str(), 1e3 * m, m * per_epoch, m / base);
    }
  } catch (const UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
