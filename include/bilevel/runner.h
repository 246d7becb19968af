// Starting, resuming and evaluating runs: the run directory's life cycle around the Trainer. The top of the
// library's layers, and the only file that sees them all: config (config/) → components (train/experiment.h:
// data, network, rule, optimizer, quantization) → data parallelism (dist/) → Trainer (train/trainer.h) → the run
// directory (run/: directory, lock, checkpoints, metrics, meta, signals). Nothing below includes it; run/ includes
// nothing from train/.
//   start:  validate + load everything → create the directory → config.yaml, meta.yaml (running) → train →
//           final.pt, meta.yaml (completed | interrupted | failed)
//   resume: lock → config.yaml → the newest checkpoint that loads and matches the config (or the one asked for)
//           → drop metrics rows after it → train to the end
// Both hold the run directory's lock (run/dir_lock.h) throughout. A write failure throws IoError after recording
// `failed` in meta.yaml (when it can still be written); a non-finite loss or gradient under
// train.on_nonfinite=stop ends the run with status `diverged`.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/run/run_dir.h"
#include "bilevel/train/experiment.h"
#include "bilevel/train/trainer.h"

namespace bilevel {

struct RunOutcome {
  RunDir dir;
  std::string status;  // completed | interrupted | diverged | failed
  TrainProgress progress;
};

// `command_line` is recorded in meta.yaml. `on_created` is called with the new run directory before training
// (the CLI prints it on stdout).
RunOutcome start_run(const ExperimentConfig& cfg, const std::string& command_line,
                     const std::function<void(const RunDir&)>& on_created = {});
// `checkpoint` (optional): resume from this file (a path, or a name in RUN_DIR/checkpoints) instead of the newest
// usable one; later checkpoints are renamed to FILE.superseded. Skipped unusable ones become FILE.skipped.
RunOutcome resume_run(const std::filesystem::path& dir, const std::string& command_line,
                      const std::filesystem::path& checkpoint = {});

// Loss and accuracy on the test split of a finished (or interrupted) run, with final.pt, or a given checkpoint.
EvalResult eval_run(const std::filesystem::path& dir, const std::string& checkpoint = {});

// The weights file a command names with `which`: empty = final.pt, or the newest checkpoint of a run that has not
// finished; "final" = final.pt; "best" = best.pt; otherwise a path, or a file name in RUN_DIR/checkpoints or RUN_DIR.
// Throws UserError naming what is missing. (resume, eval, export and the Python module share it.)
std::filesystem::path run_checkpoint(const RunDir& dir, const std::string& which);

// A run's experiment (config, data, network, rule) with the weights of final.pt (the latest checkpoint when the
// run has not finished) or of `checkpoint` (run_checkpoint's `which`), the network in eval mode; what eval_run evaluates. `used`, when
// given, receives the file the weights came from. Throws UserError when there is none.
Experiment load_run(const std::filesystem::path& dir, const std::string& checkpoint = {},
                    std::filesystem::path* used = nullptr);

// The config a run directory holds.
ExperimentConfig run_config(const RunDir& dir);

}  // namespace bilevel
