// The `bilevel` subcommands. Each takes the arguments after its name and returns the process exit code.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "bilevel/bench/report.h"
#include "bilevel/bench/suite.h"

namespace bilevel::cli {

using Args = std::vector<std::string>;

// Whether the arguments ask for a command's help (--help or -h anywhere).
inline bool wants_help(const Args& args) {
  for (const auto& a : args)
    if (a == "--help" || a == "-h") return true;
  return false;
}

// The arguments of the commands that act on one run: RUN_DIR [--checkpoint WHICH] [-o FILE] (run_args.cpp).
// `with_output`: whether -o/--output is accepted. Throws UserError naming `command` for anything else.
struct RunArgs {
  std::string dir;
  std::string checkpoint;  // empty, best, final, a path or a name in RUN_DIR/checkpoints (runner.h run_checkpoint)
  std::string output;
};
RunArgs parse_run_args(const Args& args, const std::string& command, bool with_output = false);

int train(const Args& args);
int resume(const Args& args);
int eval(const Args& args);
int env(const Args& args);
int bench(const Args& args);
int export_model(const Args& args);
int summary(const Args& args);
// `bilevel train CONFIG -m key=a,b ...`: a multirun sweep (multirun.cpp).
int multirun(const std::string& config, const Args& overrides, const Args& options, const std::string& command_line);

// Suites: a new one from its text (suite_dir.cpp), and the loop over a suite directory's runs (suite_run.cpp),
// shared by `bench` and multirun sweeps.
// --launcher slurm (slurm_launcher.cpp).
struct SlurmOptions {
  std::string partition, time;  // --partition, --time (sbatch's own formats); empty = the cluster's defaults
  int64_t gpus_per_task = 0;    // --gpus-per-task
  int64_t ntasks_per_run = 1;   // --ntasks-per-run: ranks per run (through srun)
  int64_t max_parallel = 0;     // --max-parallel: array tasks at a time (0 = all)
  bool dry_run = false;         // --dry-run: print the sbatch script, submit nothing, write nothing
  int poll_seconds = 5;
};
struct SuiteRunOptions {
  bool verbose = false;
  bool plots = true;
  int jobs = 1;                // runs at a time (local)
  std::string launcher = "local";  // local | slurm
  SlurmOptions slurm;
};
// Parses the launcher options at args[i] (--launcher, --partition, ...), advancing i past a value; false when
// args[i] is none of them.
bool take_launcher_option(const Args& args, size_t& i, SuiteRunOptions& opt);
struct NewSuite {
  std::string text;                // the suite file's contents (written to SUITE_DIR/suite.yaml)
  std::string file;                // its name in messages and state.yaml
  std::filesystem::path base_dir;  // where relative config paths are resolved
  Args overrides;                  // command-line overrides for every run
  std::string folder = "bench";    // suites go to OUTPUT_ROOT/FOLDER/NAME/TIMESTAMP/
  std::string command_line;
};
int start_suite(const NewSuite& suite, const SuiteRunOptions& options);
int run_suite(const std::filesystem::path& dir, const bench::Suite& suite, bench::SuiteState& state,
              const SuiteRunOptions& options);
// "--jobs N": N in [1, 64], else UserError naming --jobs.
int parse_jobs(const std::string& value);
// The suite's runs as one Slurm job array: submit, follow, collect (or, with --dry-run, print the script).
std::string slurm_array_script(const std::filesystem::path& dir, const bench::Suite& suite,
                               const bench::SuiteState& state, const SlurmOptions& slurm);
int run_suite_on_slurm(const std::filesystem::path& dir, const bench::Suite& suite, bench::SuiteState& state,
                       const SuiteRunOptions& options);
// Records what the runs' directories hold in state.yaml (their directory and status) and writes the reports;
// returns 0 when every run completed (or diverged), else 1.
int collect_suite(const std::filesystem::path& dir, const bench::Suite& suite, bench::SuiteState& state,
                  const SuiteRunOptions& options);

// `bilevel eval --model FILE [--batch-size N] [--threads N]`: integer inference of an exported model.
int eval_model(const std::string& path, const Args& rest);

}  // namespace bilevel::cli
