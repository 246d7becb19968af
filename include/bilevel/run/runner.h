// Starting, resuming and evaluating runs: the run directory's life cycle around the Trainer.
//   start:  validate + load everything → create the directory → config.yaml, meta.yaml (running) → train →
//           final.pt, meta.yaml (completed | interrupted | failed)
//   resume: config.yaml → latest complete checkpoint → drop metrics rows after it → train to the end
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/run/run_dir.h"
#include "bilevel/train/trainer.h"

namespace bilevel {

struct RunOutcome {
  RunDir dir;
  std::string status;  // completed | interrupted | failed
  TrainProgress progress;
};

// `command_line` is recorded in meta.yaml. `on_created` is called with the new run directory before training
// (the CLI prints it on stdout).
RunOutcome start_run(const ExperimentConfig& cfg, const std::string& command_line,
                     const std::function<void(const RunDir&)>& on_created = {});
RunOutcome resume_run(const std::filesystem::path& dir, const std::string& command_line);

// Loss and accuracy on the test split of a finished (or interrupted) run, with final.pt, or a given checkpoint.
EvalResult eval_run(const std::filesystem::path& dir, const std::filesystem::path& checkpoint = {});

// The config a run directory holds.
ExperimentConfig run_config(const RunDir& dir);

}  // namespace bilevel
