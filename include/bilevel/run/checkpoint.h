// Training checkpoints: model parameters, optimizer state, training progress, every RNG state and the hash of the
// resolved config, in one LibTorch archive written atomically to checkpoints/epoch_NNNN.pt (at the end of epoch
// NNNN) or checkpoints/epoch_NNNN_batch_BBBBBB.pt (NNNN epochs done and BBBBBB batches of the next: a positional
// checkpoint, written on preemption and every checkpoint.every_batches batches, with the epoch's running sums so
// that the resumed epoch's metrics row equals an uninterrupted one). Checkpoints written before positions existed
// load with position 0.
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace bilevel {

// Where a run stands inside the epoch after the completed ones: batches done and what the metrics row sums so far.
struct EpochPosition {
  int64_t batch = 0;                       // batches of the current epoch already trained (0 = at its start)
  double loss_sum = 0;                     // Σ of the training loss over those batches' examples
  int64_t correct = 0, seen = 0;           // correctly classified and seen examples
  std::vector<double> diagnostic_sums;     // the rule's diagnostics summed over those batches, in column order
  std::vector<torch::Tensor> quant_codes;  // the weights' codes at the epoch's start (quantization.h), per layer
};

struct TrainProgress {
  int64_t epoch = 0;              // epochs completed
  int64_t best_epoch = 0;         // epoch with the best validation accuracy so far (0 = none)
  double best_val_accuracy = -1;  // its validation accuracy
  double best_test_accuracy = -1; // the test accuracy at that epoch (reported, never used for selection)
  EpochPosition position;         // inside epoch `epoch` (0-based), for positional checkpoints
};

struct CheckpointHeader {
  TrainProgress progress;
  std::string config_hash;
};

// Writes a checkpoint atomically.
void save_checkpoint(const std::filesystem::path& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                     const TrainProgress& progress, const std::string& config_hash);

// Restores model, optimizer and the global CPU RNG; returns the progress. Throws UserError naming the file when it
// is unreadable, does not fit the model, or its config hash differs from `expected_hash` (non-empty). After a
// failure the model and optimizer may be partly overwritten.
TrainProgress load_checkpoint(const std::filesystem::path& path, torch::nn::Module& model,
                              torch::optim::Optimizer& optimizer, const std::string& expected_hash);

// The same checkpoint as bytes in memory, and its restoration (data parallelism: rank 0's state for every rank).
std::string checkpoint_bytes(torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                             const TrainProgress& progress, const std::string& config_hash);
TrainProgress load_checkpoint_bytes(const std::string& bytes, torch::nn::Module& model,
                                    torch::optim::Optimizer& optimizer, const std::string& expected_hash);

// Loads only the model parameters (for eval) from a checkpoint or a final/best model file.
void load_model(const std::filesystem::path& path, torch::nn::Module& model);
// Saves only the model parameters, atomically.
void save_model(const std::filesystem::path& path, torch::nn::Module& model);

// Every checkpoint file in `dir` (epoch_NNNN.pt and epoch_NNNN_batch_BBBBBB.pt), latest position first.
std::vector<std::filesystem::path> checkpoints_newest_first(const std::filesystem::path& dir);
// The newest checkpoint in `dir` (highest epoch), if any.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& dir);
std::filesystem::path checkpoint_path(const std::filesystem::path& dir, int64_t epoch);
// The positional checkpoint after `batch` batches of the epoch that follows `epoch` completed ones.
std::filesystem::path checkpoint_path(const std::filesystem::path& dir, int64_t epoch, int64_t batch);
// Removes the positional checkpoints in `dir` older than `kept` (a checkpoint just written): a newer
// checkpoint supersedes them. Epoch checkpoints are never removed.
void remove_older_positional_checkpoints(const std::filesystem::path& dir, const std::filesystem::path& kept);

}  // namespace bilevel
