// bench_gpu's timing of one call: repeated until a repetition lasts long enough to time, the median over
// repetitions, two calls interleaved so that the machine's drift stays out of their ratio. On a CUDA device each
// timed stretch ends with a synchronisation, so queued kernels are counted.
#pragma once

#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "../epoch_timer.h"

namespace bilevel::gpu_bench {

struct Clock {
  bool cuda = false;
  int64_t reps = 3;
  double target_s = 0.02;  // seconds of calls per repetition
  void sync() const {
    if (cuda) torch::cuda::synchronize();
  }
  double seconds_of(const std::function<void()>& fn, int64_t iters) const {
    sync();
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iters; ++i) fn();
    sync();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  // Calls per repetition so that one repetition of fn lasts about target_s (after one warm-up call).
  int64_t iterations(const std::function<void()>& fn) const {
    seconds_of(fn, 1);
    const double one = std::max(seconds_of(fn, 1), 1e-7);
    return std::clamp<int64_t>(int64_t(target_s / one), 1, 20000);
  }
  // Median seconds per call of a and of b over `reps` repetitions, a and b interleaved.
  std::pair<double, double> pair(const std::function<void()>& a, const std::function<void()>& b) const {
    const int64_t na = iterations(a), nb = iterations(b);
    std::vector<double> ta, tb;
    for (int64_t r = 0; r < reps; ++r) {
      ta.push_back(seconds_of(a, na) / double(na));
      tb.push_back(seconds_of(b, nb) / double(nb));
    }
    return {timing::median(ta), timing::median(tb)};
  }
  double single(const std::function<void()>& a) const {
    const int64_t n = iterations(a);
    std::vector<double> t;
    for (int64_t r = 0; r < reps; ++r) t.push_back(seconds_of(a, n) / double(n));
    return timing::median(t);
  }
};

}  // namespace bilevel::gpu_bench
