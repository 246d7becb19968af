#include "bilevel/train/divergence.h"

#include <spdlog/spdlog.h>

#include <cmath>

namespace bilevel {

DivergedError::DivergedError(int64_t epoch, int64_t batch, const std::string& what)
    : std::runtime_error(what), epoch_(epoch), batch_(batch) {}

NonfiniteGuard::NonfiniteGuard(const ExperimentConfig& cfg)
    : stop_(cfg.get<std::string>("train.on_nonfinite") == "stop") {}

void NonfiniteGuard::check(const StepStats& step, LayeredNet& net, int64_t epoch, int64_t batch) {
  std::string what;
  if (!std::isfinite(step.loss_sum)) {
    what = "loss";
  } else {
    // A sum is non-finite when any element is (or when finite elements overflow float32, ~1e38, which is
    // divergence too); one read-only pass, ~30x cheaper than isfinite().all() on LibTorch 1.13's CPU kernels
    // (31 µs against 945 µs per check for a 784-512-10 MLP, one thread).
    const auto params = net->named_parameters();
    for (const auto& p : params) {
      const auto& g = p.value().grad();
      if (g.defined() && !std::isfinite(g.sum().item<double>())) {
        what = "gradient of " + p.key();
        break;
      }
    }
  }
  if (what.empty()) return;
  const std::string message =
      "non-finite " + what + " at epoch " + std::to_string(epoch + 1) + ", batch " + std::to_string(batch + 1);
  if (stop_) throw DivergedError(epoch + 1, batch + 1, "diverged: " + message);
  if (warned_epoch_ != epoch) {
    warned_epoch_ = epoch;
    spdlog::warn("{}; training goes on (train.on_nonfinite=warn); check the learning rate", message);
  }
}

}  // namespace bilevel
