// The run directory: OUTPUT_ROOT/EXPERIMENT_NAME/YYYY-MM-DD_HH-MM-SS[_N]/ holding config.yaml, meta.yaml,
// metrics.csv, train.log, checkpoints/, best.pt and final.pt. An existing directory is never reused.
#pragma once

#include <filesystem>
#include <string>

namespace bilevel {

struct RunDir {
  std::filesystem::path root;

  // Creates a fresh directory (adds _1, _2, ... when the timestamped name exists).
  static RunDir create(const std::filesystem::path& output_root, const std::string& experiment_name);
  // Opens an existing run; throws UserError when `path` is not a run directory.
  static RunDir open(const std::filesystem::path& path);

  std::filesystem::path config() const { return root / "config.yaml"; }
  std::filesystem::path meta() const { return root / "meta.yaml"; }
  std::filesystem::path metrics() const { return root / "metrics.csv"; }
  std::filesystem::path log() const { return root / "train.log"; }
  std::filesystem::path checkpoints() const { return root / "checkpoints"; }
  std::filesystem::path final_model() const { return root / "final.pt"; }
  std::filesystem::path best_model() const { return root / "best.pt"; }
};

}  // namespace bilevel
