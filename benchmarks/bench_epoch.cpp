// Training-time ratio of learning rules against backprop on the same network, data and batches, in one process.
//
//   bench_epoch CONFIG.yaml VARIANT[,VARIANT...] [--batches N] [--reps R] [--profile [TOP]] [key=value ...]
//
// A variant is an algorithm name, optionally followed by its own overrides: `backprop`, `ep`, or
// `backprop+quantization.enabled=false` (the full-precision twin of a quantized config).
//
// For each repetition, every algorithm in turn (A B C A B C ...) trains N mini-batches from the same initial
// weights (the config's seed) — the gradient estimate plus the optimizer step, which is what an epoch costs
// besides evaluation. Reports the median time per batch, the projected epoch time, and the ratio of medians to
// the first algorithm (put backprop first). Interleaving keeps machine drift out of the ratios.
// The timing loop is benchmarks/epoch_timer.h (shared with bench_gpu). --profile then runs each variant's N steps
// once more under LibTorch's CPU profiler and prints its TOP (default 25) operators by self time and the library's
// phases (op_profile.h): where the time goes, for one variant against another (--profile-shapes: operators told
// apart by their inputs' shapes too).
#include <spdlog/spdlog.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "bilevel/util/error.h"
#include "epoch_timer.h"
#include "op_profile.h"

using namespace bilevel;
using timing::median;
using timing::split;

int main(int argc, char** argv) {
  if (argc < 3 || std::string(argv[1]) == "--help") {
    std::fprintf(stderr, "usage: bench_epoch CONFIG.yaml VARIANT[,VARIANT...] [--batches N] [--reps R]\n"
                         "                   [--profile[-shapes] [TOP]] [key=value ...]\n"
                         "  VARIANT = ALGO[+key=value...], e.g. backprop+quantization.enabled=false\n");
    return 2;
  }
  int64_t batches = 200, reps = 5, profile_top = 0;
  bool profile_shapes = false;
  std::vector<std::string> overrides;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--batches" && i + 1 < argc) batches = std::stoll(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::stoll(argv[++i]);
    else if (a == "--profile" || a == "--profile-shapes") {
      profile_top = 25;
      profile_shapes = a == "--profile-shapes";
      if (i + 1 < argc && std::isdigit(static_cast<unsigned char>(argv[i + 1][0]))) profile_top = std::stoll(argv[++i]);
    }
    else overrides.push_back(a);
  }
  spdlog::set_level(spdlog::level::warn);
  try {
    ExperimentConfig cfg = load_config(argv[1], overrides);
    const auto algos = split(argv[2], ',');
    const auto times = timing::time_variants(argv[1], overrides, algos, batches, reps);
    const int64_t train_size = timing::data_of(cfg).train.size();  // already loaded by the timed variants
    const double per_epoch = std::ceil(double(train_size) / double(cfg.train.batch_size));
    std::printf("config: %s  batch %lld  %lld train examples  threads %d  %lld batches x %lld reps\n", argv[1],
                static_cast<long long>(cfg.train.batch_size), static_cast<long long>(train_size),
                at::get_num_threads(), static_cast<long long>(batches), static_cast<long long>(reps));
    std::printf("%-40s %12s %14s %10s\n", "variant", "ms/batch", "epoch s (est)", "ratio");
    const double base = median(times[0]);
    for (size_t a = 0; a < algos.size(); ++a) {
      const double m = median(times[a]);
      std::printf("%-40s %12.3f %14.2f %10.2f\n", algos[a].c_str(), 1e3 * m, m * per_epoch, m / base);
    }
    for (size_t a = 0; profile_top > 0 && a < algos.size(); ++a) {
      timing::OpProfile p;
      timing::time_steps(argv[1], overrides, algos[a], batches,
                         [&](const std::function<void()>& steps) { p = timing::profile_ops(steps, profile_shapes); });
      std::printf("\nprofile of %s (%lld steps):\n", algos[a].c_str(), static_cast<long long>(batches));
      timing::print_op_profile(p, size_t(profile_top), batches);
    }
  } catch (const UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  }
  return 0;
}
