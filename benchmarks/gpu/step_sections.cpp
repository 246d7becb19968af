#include <cmath>
#include <exception>
#include <string>
#include <vector>

#include "../epoch_timer.h"
#include "gpu_bench.h"

namespace bilevel::gpu_bench {

using timing::median;

std::vector<std::string> GpuBench::with_extra(std::vector<std::string> o) const {
  const std::vector<std::string> dev_override{"train.device=" + opt.device};
  o.insert(o.end(), dev_override.begin(), dev_override.end());
  o.insert(o.end(), opt.overrides.begin(), opt.overrides.end());  // the user's last: they win
  return o;
}

// 2. The time per training step of EP, its variants, dual propagation and quantized backprop against backprop on
// the classic network.
void GpuBench::epoch_section() {
  progress("epoch");
  rep.line("## Training step time against backprop (784-512-10, T = 30, K = 10, batch 50)");
  rep.line();
  try {
    const auto overrides = with_extra({"model.hidden=[512]", "train.batch_size=50", "solver.free_steps=30",
                                       "solver.nudged_steps=10"});
    const std::vector<std::string> variants{
        "backprop",
        "ep",
        "ep+solver.kernel=generic",
        "ep_symmetric",
        "dual_prop+rule.alpha=0.5+rule.beta=0.1+rule.inference=closed_form",
        "backprop+quantization.enabled=true+quantization.weights.quantizer=uniform+quantization.weights.bits=4+"
        "quantization.weights.solver=lsq+quantization.weights.granularity=per_channel+"
        "quantization.activations.quantizer=uniform+quantization.activations.bits=4+"
        "quantization.activations.solver=lsq"};
    const std::vector<std::string> labels{"backprop",
                                          "ep (solver.kernel=auto)",
                                          "ep (solver.kernel=generic)",
                                          "ep_symmetric",
                                          "dual_prop (α = ½, β = 0.1, closed form)",
                                          "backprop, 4-bit LSQ weights and activations"};
    ExperimentConfig base = load_config(opt.config, overrides);
    const auto times = timing::time_variants(opt.config, overrides, variants, batches, reps);
    const int64_t train_size = timing::data_of(base).train.size();
    const double per_epoch = std::ceil(double(train_size) / double(base.train.batch_size));
    rep.line("`" + opt.config + "` with `model.hidden=[512] train.batch_size=50 solver.free_steps=30 "
             "solver.nudged_steps=10 train.device=" + opt.device + "`, each variant's own overrides below; " +
             std::to_string(batches) + " training steps (gradient estimate + optimizer step, with each batch's "
             "copy to the device) per repetition, variants interleaved, median of " + std::to_string(reps) +
             " (after a dropped warm-up). The epoch estimate is that × " + num("%.0f", per_epoch) +
             " batches (evaluation not included). Targets on a GPU: ep ≤ " + num("%.0f", kEpMaxRatio) +
             "× backprop, dual_prop ≤ " + num("%.1f", kDualPropMaxRatio) + "×.");
    rep.line();
    rep.line("| variant | overrides | per step | epoch (est.) | × backprop | target | verdict |");
    rep.line("|---|---|---|---|---|---|---|");
    const double bp = median(times[0]);
    for (size_t v = 0; v < variants.size(); ++v) {
      const double m = median(times[v]), ratio = m / bp;
      double target = 0;
      if (variants[v] == "ep") target = kEpMaxRatio;
      if (variants[v].rfind("dual_prop", 0) == 0) target = kDualPropMaxRatio;
      const bool ok = ratio <= target;
      if (on_gpu && target > 0) {
        ++judged;
        misses += !ok;
      }
      auto parts = timing::split(variants[v], '+');
      std::string ov = "rule.name=" + parts[0];
      for (size_t i = 1; i < parts.size(); ++i) ov += " " + parts[i];
      rep.line("| " + labels[v] + " | `" + ov + "` | " + fmt_time(m) + " | " + fmt_time(m * per_epoch) + " | " +
               num("%.2f", ratio) + " | " + (target > 0 ? num("≤ %.1f", target) : "—") + " | " +
               verdict(on_gpu && target > 0, ok) + " |");
    }
    rep.line();
  } catch (const std::exception& e) {
    rep.line(std::string("**Error in the epoch section:** ") + message_of(e));
    rep.line();
    status = 1;
  }
}

// 2b. EP at every depth: each depth config's rule against backprop on the same network (the targets of
// docs/results/ep-depth.md, the same on every device).
void GpuBench::depth_section() {
  progress("depth");
  rep.line("## EP at every depth: each config's rule against backprop on the same network");
  rep.line();
  struct DepthCase {
    std::string label, config;
    std::vector<std::string> overrides;
    std::string rule;
    double target;
  };
  const std::vector<DepthCase> depth_cases{
      {"784-512-512-10", "configs/fmnist_mlp_ep_deep.yaml", {}, "ep_symmetric", 3.0},
      {"784-512-512-512-10", "configs/fmnist_mlp_ep_deep.yaml", {"model.hidden=[512,512,512]"}, "ep_symmetric", 3.0},
      {"784-2048-2048-10", "configs/fmnist_mlp_ep_wide.yaml", {}, "ep_symmetric", 5.0},
      {"conv 16-32", "configs/fmnist_conv_ep.yaml", {}, "ep_symmetric", 2.5},
      {"784-512-512-10, dual propagation", "configs/fmnist_mlp_ep_deep.yaml", {}, "dual_prop", 1.1}};
  rep.line("Each config as shipped (its solver, sweeps and order), " + std::to_string(batches) +
           " training steps per repetition, the rule and backprop interleaved, median of " + std::to_string(reps) +
           ".");
  rep.line();
  rep.line("| network | config | rule | per step | backprop | × backprop | target | verdict |");
  rep.line("|---|---|---|---|---|---|---|---|");
  for (const auto& c : depth_cases) {
    try {
      const auto overrides = with_extra(c.overrides);
      const auto times = timing::time_variants(c.config, overrides, {"backprop", c.rule}, batches, reps);
      const double bp = median(times[0]), m = median(times[1]), ratio = m / bp;
      const bool ok = ratio <= c.target;
      if (on_gpu) {
        ++judged;
        misses += !ok;
      }
      rep.line("| " + c.label + " | `" + c.config + "` | " + c.rule + " | " + fmt_time(m) + " | " + fmt_time(bp) +
               " | " + num("%.2f", ratio) + " | " + num("≤ %.1f", c.target) + " | " + verdict(on_gpu, ok) + " |");
    } catch (const std::exception& e) {
      rep.line("| " + c.label + " | `" + c.config + "` | " + c.rule + " | error: " + message_of(e) + " | | | | |");
      status = 1;
    }
  }
  rep.line();
}

}  // namespace bilevel::gpu_bench
