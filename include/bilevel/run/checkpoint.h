// Training checkpoints: model parameters, optimizer state, training progress, every RNG state and the hash of the
// resolved config, in one LibTorch archive written atomically to checkpoints/epoch_NNNN.pt.
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace bilevel {

struct TrainProgress {
  int64_t epoch = 0;              // epochs completed
  int64_t best_epoch = 0;         // epoch with the best validation accuracy so far (0 = none)
  double best_val_accuracy = -1;  // its validation accuracy
  double best_test_accuracy = -1; // the test accuracy at that epoch (reported, never used for selection)
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

// Loads only the model parameters (for eval) from a checkpoint or a final/best model file.
void load_model(const std::filesystem::path& path, torch::nn::Module& model);
// Saves only the model parameters, atomically.
void save_model(const std::filesystem::path& path, torch::nn::Module& model);

// Every checkpoint file in `dir` (epoch_NNNN.pt), highest epoch first.
std::vector<std::filesystem::path> checkpoints_newest_first(const std::filesystem::path& dir);
// The newest checkpoint in `dir` (highest epoch), if any.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& dir);
std::filesystem::path checkpoint_path(const std::filesystem::path& dir, int64_t epoch);

}  // namespace bilevel
