// The training loop shared by every learning rule: epochs of shuffled mini-batches, the rule's gradient
// estimate, the optimizer step, evaluation on the validation and test splits, metrics rows, checkpoints,
// model selection on the validation split (never the test set).
#pragma once

#include <atomic>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "bilevel/run/checkpoint.h"
#include "bilevel/run/preemption.h"
#include "bilevel/run/run_dir.h"
#include "bilevel/train/experiment.h"

namespace bilevel {

struct EvalResult {
  double loss = 0;
  double accuracy = 0;
  int64_t count = 0;
  double seconds = 0;  // wall time of the forward passes and the loss
};

// Mean loss and accuracy of the rule's predictions over a data set.
EvalResult evaluate(LearningRule& rule, LayeredNet& net, const Dataset& data, int64_t batch_size,
                    torch::Device device);

// One training step on batch (xb, yb), batch `batch` of `batches` in 0-based `epoch`: zero the gradients, the
// quantization's forward map (when configured), the rule's gradient estimate, its backward through the weights'
// quantization, the optimizer step and the quantization's post-step. `lr` is the epoch's learning rate.
// `before_step` (optional) sees the rule's result before anything is stepped (e.g. to stop on a non-finite loss).
StepStats train_batch(Experiment& x, int64_t epoch, int64_t batch, int64_t batches, double lr, const torch::Tensor& xb,
                      const torch::Tensor& yb, const std::function<void(const StepStats&)>& before_step = {});


class Trainer {
 public:
  Trainer(Experiment& experiment, RunDir run);
  // The metrics.csv columns, in order.
  std::vector<std::string> columns() const;
  // Trains from `start` (epoch 0 for a new run; a positional checkpoint's progress continues inside its epoch) to
  // cfg.train.epochs. Returns the final progress; when a stop or a preemption was requested, returns early with
  // progress.epoch < epochs (after a preemption, progress.position is where the positional checkpoint stands).
  TrainProgress run(TrainProgress start);
  // After run(): whether it returned early because of a preemption (agreed by every rank).
  bool preempted() const { return preempted_; }

 private:
  // The stop flags every rank agrees on (kStopInterrupt, kStopPreempt; data_parallel.h).
  unsigned stop_flags(bool collective);
  // Σ over the ranks of an epoch's running sums (identity when training alone).
  EpochPosition reduced(const EpochPosition& local);
  // Evaluation split across the ranks, the results combined.
  EvalResult evaluate_split(const Dataset& data);
  // Writes the positional checkpoint of `progress` (inside epoch progress.epoch) and removes older ones.
  void save_position(TrainProgress progress);

  // Alignment of the rule's gradient with the reference rule's on the probe batch (NaN on epochs not probed).
  std::vector<double> run_probe(int64_t epoch);

  Experiment& x_;
  RunDir run_;
  bool writer_ = true;  // rank 0 (or alone): owns the run directory
  std::set<std::string> warned_;  // the rule's epoch warnings already logged (without their figures)
  bool preempted_ = false;
};

}  // namespace bilevel
