#include <algorithm>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "../epoch_timer.h"
#include "gpu_bench.h"

namespace bilevel::gpu_bench {
namespace {

using timing::median;
using torch::Tensor;

// Matrix-product FLOPs (2 per multiply-add; element-wise work not counted) of one training step on an MLP with
// widths n_0 (input), n_1, ..., n_L (output), batch B, output a state (mse), writing P = Σ_{l=1}^{L−1} n_l n_{l+1}
// (the products between states) and P_0 = n_0 n_1 (the input layer):
//
//   EP, one-sided, T free and K nudged sweeps of the fixed-point dynamics (energy/fixed_point_solver.h):
//     the input drive A_0 x once per batch:              2 B P_0
//     every sweep, each layer l ≥ 1 forward A_l s_l and feedback A_lᵀ s_{l+1}:  (T + K) · 4 B P
//     the weight gradients (LayeredEnergy::add_phi_grad_diff): one product on s_1⁺ − s_1⁰ for the input layer,
//     two (one per phase) for each layer above:          2 B P_0 + 4 B P
//     total  4 B P_0 + (4 (T + K) + 4) B P
//   backprop: forward 2 B (P_0 + P), weight gradients 2 B (P_0 + P), input gradients of layers l ≥ 1 2 B P:
//     total  4 B P_0 + 6 B P
double ep_step_flops(const std::vector<int64_t>& n, int64_t B, int64_t T, int64_t K) {
  double P = 0;
  for (size_t l = 1; l + 1 < n.size(); ++l) P += double(n[l]) * double(n[l + 1]);
  const double P0 = double(n[0]) * double(n[1]);
  return 4.0 * B * P0 + (4.0 * double(T + K) + 4.0) * B * P;
}
double backprop_step_flops(const std::vector<int64_t>& n, int64_t B) {
  double P = 0;
  for (size_t l = 1; l + 1 < n.size(); ++l) P += double(n[l]) * double(n[l + 1]);
  const double P0 = double(n[0]) * double(n[1]);
  return 4.0 * B * P0 + 6.0 * B * P;
}

}  // namespace

// 3. A large network: the device's measured float32 matrix-product throughput, and the share of it that an EP step
// sustains, from the step's count of product FLOPs.
void GpuBench::large_section() {
  progress("large");
  const std::string H = std::to_string(large_hidden), B = std::to_string(large_batch);
  rep.line("## Large network: EP's share of the measured matrix-product throughput (784-" + H + "-" + H +
           "-10, batch " + B + ")");
  rep.line();
  try {
    double t_mm = 0;
    {
      torch::NoGradGuard ng;
      const Tensor a = torch::randn({large_batch, large_hidden}).to(dev);
      const Tensor w = torch::randn({large_hidden, large_hidden}).to(dev);
      Tensor c = torch::empty({large_batch, large_hidden}, a.options());
      t_mm = clock.single([&] { at::mm_out(c, a, w); });
    }
    const double mm_flops = 2.0 * double(large_batch) * double(large_hidden) * double(large_hidden);
    const double peak = mm_flops / t_mm;
    const auto overrides = with_extra({"model.hidden=[" + H + "," + H + "]", "train.batch_size=" + B});
    ExperimentConfig base = load_config(opt.config, overrides);
    const int64_t T = base.get<int64_t>("solver.free_steps"), Kn = base.get<int64_t>("solver.nudged_steps");
    if (base.train.loss != "mse") throw std::runtime_error("the FLOP count assumes train.loss: mse (the output a state)");
    const auto times = timing::time_variants(opt.config, overrides,
                                             {"backprop", "ep", "ep+solver.kernel=compact+solver.tol=1e-4",
                                              "ep+solver.kernel=generic+solver.tol=1e-4"},
                                             large_batches, std::min<int64_t>(reps, 3));
    const std::vector<int64_t> widths{784, large_hidden, large_hidden, 10};
    rep.line("Throughput: `torch::mm` of [" + B + ", " + H + "] × [" + H + ", " + H + "] float32 (LibTorch's " +
             "default precision), " + fmt_time(t_mm) + " per product = **" + fmt_rate(peak) + "**. Steps as in the previous section (`" + opt.config + "`, T = " + std::to_string(T) +
             ", K = " + std::to_string(Kn) + ", solver.kernel=auto), " + std::to_string(large_batches) +
             " steps per repetition, median of " + std::to_string(std::min<int64_t>(reps, 3)) +
             ". FLOPs: the step's matrix products only (2 per multiply-add), counted from the dynamics: EP "
             "4·B·n₀n₁ + (4(T+K) + 4)·B·Σ_{l≥1} n_l n_{l+1}, backprop 4·B·n₀n₁ + 6·B·Σ_{l≥1} n_l n_{l+1}.");
    rep.line();
    rep.line("| rule | per step | GFLOP per step | sustained | share of mm throughput |");
    rep.line("|---|---|---|---|---|");
    // The last two: the compact relaxation (per-example stop, products over the examples still relaxing) against
    // the whole-batch path at the same tolerance; their FLOPs are the upper bound of T + K sweeps.
    const std::vector<std::pair<std::string, double>> rows_{
        {"backprop", backprop_step_flops(widths, large_batch)},
        {"ep", ep_step_flops(widths, large_batch, T, Kn)},
        {"ep, solver.kernel=compact, tol 1e-4", ep_step_flops(widths, large_batch, T, Kn)},
        {"ep, solver.kernel=generic, tol 1e-4", ep_step_flops(widths, large_batch, T, Kn)}};
    for (size_t v = 0; v < rows_.size(); ++v) {
      const double m = median(times[v]), rate = rows_[v].second / m;
      rep.line("| " + rows_[v].first + " | " + fmt_time(m) + " | " + num("%.4g", rows_[v].second / 1e9) + " | " +
               fmt_rate(rate) + " | " + num("%.1f%%", 100.0 * rate / peak) + " |");
    }
    rep.line();
  } catch (const std::exception& e) {
    rep.line(std::string("**Error in the large-network section:** ") + message_of(e));
    rep.line();
    status = 1;
  }
}

}  // namespace bilevel::gpu_bench
