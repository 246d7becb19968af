#include "bilevel/energy/sweep_stats.h"

#include <array>
#include <cmath>

#include "bilevel/nn/layered_net.h"

namespace bilevel {

namespace {

struct Bucket {
  int64_t hi;  // inclusive upper bound of sweeps (−1: no bound)
  const char* suffix;
};
constexpr std::array<Bucket, 6> kBuckets = {{{4, "_sweeps_1_4"},
                                             {8, "_sweeps_5_8"},
                                             {16, "_sweeps_9_16"},
                                             {32, "_sweeps_17_32"},
                                             {64, "_sweeps_33_64"},
                                             {-1, "_sweeps_65_up"}}};

size_t bucket_of(int64_t sweeps) {
  for (size_t i = 0; i + 1 < kBuckets.size(); ++i)
    if (sweeps <= kBuckets[i].hi) return i;
  return kBuckets.size() - 1;
}

}  // namespace

std::vector<std::string> sweep_columns(const std::string& phase) {
  std::vector<std::string> c{phase + "_sweeps", phase + "_at_limit"};
  for (const auto& b : kBuckets) c.push_back(phase + b.suffix);
  return c;
}

double mean_sweeps(const std::vector<const SolveStats*>& solves, int64_t batch) {
  if (solves.empty() || batch <= 0) return 0.0;
  double total = 0.0;
  for (const SolveStats* s : solves)
    total += s->row_steps.defined() ? double(s->row_steps.sum().item<int64_t>()) : double(s->steps * batch);
  return total / double(batch * int64_t(solves.size()));
}

void add_sweep_diagnostics(const std::string& phase, const std::vector<const SolveStats*>& solves, int64_t batch,
                           int64_t max_steps, double tol, std::map<std::string, double>& out) {
  std::array<double, kBuckets.size()> hist{};
  double at_limit = 0.0, examples = 0.0;
  for (const SolveStats* s : solves) {
    if (s->row_steps.defined()) {
      const torch::Tensor steps = s->row_steps.to(torch::kCPU, torch::kLong).contiguous();
      const int64_t* p = steps.data_ptr<int64_t>();
      for (int64_t i = 0; i < steps.numel(); ++i) hist[bucket_of(p[i])] += 1.0;
      examples += double(steps.numel());
    } else {
      hist[bucket_of(s->steps)] += double(batch);
      examples += double(batch);
    }
    if (s->at_limit >= 0) {
      at_limit += double(s->at_limit);
    } else {
      // A whole-batch path: every example ran `steps`; it stopped on the limit unless the batch's last change
      // met the criterion (for the whole batch at once, so every example or none).
      const bool met = tol > 0.0 ? s->residual < tol : s->residual == 0.0;
      if (s->steps >= max_steps && !met) at_limit += double(batch);
    }
  }
  const double n = examples > 0.0 ? examples : 1.0;
  out[phase + "_sweeps"] = mean_sweeps(solves, batch);
  out[phase + "_at_limit"] = at_limit / n;
  for (size_t i = 0; i < kBuckets.size(); ++i) out[phase + kBuckets[i].suffix] = hist[i] / n;
}

double backprop_step_macs(const LayeredEnergy& energy) {
  double all = 0.0;
  for (size_t l = 0; l < energy.num_layers(); ++l) all += double(layer_macs(energy.layer(l)));
  return 3.0 * all - double(layer_macs(energy.layer(0)));
}

double ep_step_macs(const LayeredEnergy& energy, double free_sweeps, double nudged_sweeps, int64_t nudged_phases) {
  const int64_t S = energy.num_states();
  const double m0 = double(layer_macs(energy.layer(0)));
  double coupling = 0.0;  // the layers between states, which are also every weight gradient above the input layer
  for (int64_t l = 1; l < S; ++l) coupling += double(layer_macs(energy.layer(size_t(l))));
  const double readout = energy.output_is_state() ? 0.0 : double(layer_macs(energy.layer(energy.num_layers() - 1)));
  const double sweeps = free_sweeps + double(nudged_phases) * nudged_sweeps;
  return m0 + sweeps * 2.0 * coupling + double(nudged_phases) * nudged_sweeps * 2.0 * readout + m0 +
         2.0 * coupling + 2.0 * readout;
}

}  // namespace bilevel
