// Divergence: a non-finite loss or gradient in a training step. train.on_nonfinite says what happens:
//   stop (default)  the run ends at that batch, before the optimizer step, with status `diverged` (exit code 4);
//                   its checkpoints, best model and metrics rows stay as the last good epoch left them
//   warn            a warning (once per epoch) and training goes on
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "bilevel/config/config.h"
#include "bilevel/nn/layered_net.h"
#include "bilevel/rules/learning_rule.h"

namespace bilevel {

// Thrown by NonfiniteGuard::check under train.on_nonfinite=stop. epoch and batch are 1-based.
class DivergedError : public std::runtime_error {
 public:
  DivergedError(int64_t epoch, int64_t batch, const std::string& what);
  int64_t epoch() const { return epoch_; }
  int64_t batch() const { return batch_; }

 private:
  int64_t epoch_, batch_;
};

class NonfiniteGuard {
 public:
  explicit NonfiniteGuard(const ExperimentConfig& cfg);
  // Checks one step's loss and the gradients it left in the parameters; `epoch` and `batch` are 0-based.
  void check(const StepStats& step, LayeredNet& net, int64_t epoch, int64_t batch);

 private:
  bool stop_ = true;
  int64_t warned_epoch_ = -1;
};

}  // namespace bilevel
