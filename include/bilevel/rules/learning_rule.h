// A learning rule estimates the outer gradient dℓ(s*(θ), y)/dθ for one batch (Zach 2021's bilevel view: rules
// differ only in how they differentiate through the inner problem s*(θ)). A new algorithm is one subclass plus
// one line in src/rules/registry.cpp.
#pragma once

#include <torch/types.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/nn/layered_net.h"
#include "bilevel/nn/objective.h"

namespace bilevel {

struct StepStats {
  double loss_sum = 0.0;  // Σ over the batch of ℓ at the state the rule trained from (free phase / forward pass)
  int64_t correct = 0;    // correctly classified examples in the batch
  // A rule may leave loss_sum and correct where it computed them instead of reading them on the host (on a GPU a
  // read waits for the step): a float64 tensor [Σℓ, correct] on the batch's device. resolve() reads it into
  // loss_sum and correct (one host read) and clears it; the trainer resolves every step (train_batch).
  torch::Tensor pending;
  // Diagnostics left on the device the same way (one-element tensors), read in the same transfer by resolve().
  std::vector<std::pair<std::string, torch::Tensor>> pending_diagnostics;
  StepStats& resolve();
  // Diagnostics averaged over the epoch's batches into metrics.csv columns (see diagnostic_columns()).
  std::map<std::string, double> diagnostics;
};

class LearningRule {
 public:
  virtual ~LearningRule() = default;
  virtual std::string name() const = 0;
  // Writes the batch-mean gradient estimate into each parameter's grad() (the trainer zeroes them before and
  // steps the optimizer after). x: [B, C, H, W]; y: int64 [B].
  virtual StepStats train_step(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) = 0;
  // The output s_L the rule's network produces for x at inference (feedforward pass, or the free equilibrium).
  virtual torch::Tensor predict(LayeredNet& net, const torch::Tensor& x) = 0;
  // Names of the diagnostics train_step reports, in column order.
  virtual std::vector<std::string> diagnostic_columns() const { return {}; }
  // Warnings about an epoch whose diagnostics (epoch means, in diagnostic_columns() order) say the rule cannot
  // learn with its settings; the trainer logs each distinct one once per run.
  virtual std::vector<std::string> epoch_warnings(const std::vector<double>& diagnostics) const {
    (void)diagnostics;
    return {};
  }
  const Objective& objective() const { return *objective_; }

  // Called by the trainer before each train_step: the 0-based epoch and batch. A rule that needs randomness
  // (e.g. EP's random β sign) derives it from step_seed(), so a resumed run draws the same numbers with no
  // rule state in the checkpoint.
  void begin_batch(int64_t seed, int64_t epoch, int64_t batch) { seed_ = seed, epoch_ = epoch, batch_ = batch; }
  // A 64-bit value that depends only on (seed, epoch, batch) (splitmix64 mixing).
  uint64_t step_seed() const;

 protected:
  explicit LearningRule(std::unique_ptr<Objective> objective) : objective_(std::move(objective)) {}
  std::unique_ptr<Objective> objective_;
  int64_t seed_ = 0, epoch_ = 0, batch_ = 0;
};

// Builds the rule named by cfg.rule.name with its hyperparameters.
std::unique_ptr<LearningRule> make_rule(const ExperimentConfig& cfg);
// Every registered name (what rule.name accepts).
std::vector<std::string> rule_names();

}  // namespace bilevel
