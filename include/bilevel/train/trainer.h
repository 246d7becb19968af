// The training loop shared by every learning rule: epochs of shuffled mini-batches, the rule's gradient
// estimate, the optimizer step, evaluation on the validation and test splits, metrics rows, checkpoints,
// model selection on the validation split (never the test set).
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "bilevel/run/checkpoint.h"
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

// Set by SIGINT/SIGTERM handlers; the trainer stops after the current batch.
std::atomic<bool>& stop_requested();

class Trainer {
 public:
  Trainer(Experiment& experiment, RunDir run);
  // The metrics.csv columns, in order.
  std::vector<std::string> columns() const;
  // Trains from `start` (epoch 0 for a new run) to cfg.train.epochs. Returns the final progress; when a stop was
  // requested, returns early with progress.epoch < epochs.
  TrainProgress run(TrainProgress start);

 private:
  // Alignment of the rule's gradient with the reference rule's on the probe batch (NaN on epochs not probed).
  std::vector<double> run_probe(int64_t epoch);

  Experiment& x_;
  RunDir run_;
};

}  // namespace bilevel
