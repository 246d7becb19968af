// A benchmark suite's directory and results:
//
//   OUTPUT_ROOT/bench/SUITE_NAME/YYYY-MM-DD_HH-MM-SS/
//     suite.yaml     the suite file as it was when the suite started (what --resume runs)
//     state.yaml     the suite's source, command-line overrides, and one record per entry and seed: its run
//                    directory, status, exit code, attempts, wall time and peak host RSS (rewritten atomically
//                    after every change, so an interrupted suite resumes where it stopped)
//     bench.log      the bench's own log
//     runs/ENTRY/ENTRY_seedS/TIMESTAMP/   each child run's ordinary run directory
//     results.csv    one row per entry and seed
//     summary.md     per entry: mean ± std over seeds, ratios to the baseline entry
//     plots/         gnuplot scripts, data files and PNGs (when gnuplot is installed)
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "bilevel/bench/suite.h"

namespace bilevel::bench {

// What the bench knows about one (entry, seed) run besides its run directory.
struct RunRecord {
  std::string entry;
  int64_t seed = 0;
  std::string run_dir;       // relative to the suite directory; "" until the child printed it
  std::string status = "pending";  // pending | running | completed | interrupted | diverged | failed
  int exit_code = 0;         // of the last attempt (-N: killed by signal N)
  int64_t attempts = 0;      // child processes started for it (train, then resumes)
  double wall_seconds = 0;   // summed over attempts
  int64_t peak_rss_kb = 0;   // max over attempts (ru_maxrss); 0 = unknown
};

struct SuiteState {
  std::string suite_file;    // as given on the command line
  std::string base_dir;      // where its relative config paths were resolved
  std::string command_line;
  std::string created;
  std::vector<std::string> cli_overrides;
  std::vector<RunRecord> runs;  // seed-major: every entry for the first seed, then the next seed, ...

  RunRecord* find(const std::string& entry, int64_t seed);
};

SuiteState load_state(const std::filesystem::path& suite_dir);
void save_state(const std::filesystem::path& suite_dir, const SuiteState& state);

// Figures read from a run directory (meta.yaml, metrics.csv) plus its record.
struct RunResult {
  RunRecord record;
  std::string algorithm;
  std::string device;
  int64_t epochs = 0;  // rows in metrics.csv
  std::optional<double> final_test_accuracy;
  std::optional<int64_t> best_epoch;  // chosen on the validation split (meta.yaml model_selection)
  std::optional<double> best_val_accuracy, test_accuracy_at_best;
  std::optional<double> median_epoch_seconds, total_epoch_seconds;
  // Gradient alignment with the probe's reference on the fixed probe batch: the first and last probed epochs.
  struct Probe {
    int64_t epoch = 0;
    double cosine = 0, rel_error = 0;
    std::vector<double> layer_cosine, layer_norm_ratio;
  };
  std::optional<Probe> first_probe, last_probe;
  // The relaxation's cost columns of the EP family (energy/sweep_stats.h: free_sweeps, nudged_sweeps, their
  // at_limit fractions and histograms, macs_ratio), each the mean over the run's epochs; empty for other rules.
  std::vector<std::pair<std::string, double>> relaxation;
  // Test accuracy per epoch and the cumulative epoch_seconds at its end (for the plots).
  std::vector<double> curve_accuracy, curve_seconds;
};

// Reads what a run directory holds; missing files leave the figures empty.
RunResult read_run(const std::filesystem::path& suite_dir, const RunRecord& record);

// results.csv, summary.md and (when gnuplot is available) plots/. Written atomically. Returns warnings
// (e.g. gnuplot missing or failing), never throws for plotting problems. `results`, when given, receives the
// runs' figures the reports were written from (read_run of every record, in state order).
std::vector<std::string> write_reports(const std::filesystem::path& suite_dir, const Suite& suite,
                                       const SuiteState& state, bool plots = true,
                                       std::vector<RunResult>* results = nullptr);

std::string results_csv(const Suite& suite, const std::vector<RunResult>& results);
std::string summary_markdown(const Suite& suite, const SuiteState& state, const std::vector<RunResult>& results,
                             bool have_plots);

// The gnuplot executable: $BILEVEL_GNUPLOT when set (empty = none), else `gnuplot` on PATH; "" when missing.
std::string find_gnuplot();

}  // namespace bilevel::bench
