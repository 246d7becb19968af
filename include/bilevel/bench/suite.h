// Benchmark suites: a YAML file listing entries (a config plus overrides) and seeds; `bilevel bench` runs every
// entry with every seed as an ordinary run and compares them (see docs/bench.md for the format).
//
// Child runs get their overrides in this order (later wins):
//   probe settings (train.probe_every / train.probe_reference / train.probe_solver from the suite) → the suite's `overrides` →
//   the entry's `overrides` → command-line overrides → seed, experiment.name, output.root (set by the bench).
// so `bilevel bench SUITE.yaml train.probe_every=0` turns the probe off.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/util/error.h"

namespace bilevel::bench {

// An override as written in the suite file, with where it was written (for error messages).
struct SuiteOverride {
  std::string text;
  Location where;
};

struct SuiteEntry {
  std::string name;         // unique within the suite; names the entry's folder under runs/
  std::string config;       // as written in the suite file
  std::filesystem::path config_path;  // resolved (absolute)
  std::vector<SuiteOverride> overrides;
  Location where;           // the entry's position in the suite file
  Location config_where;    // the `config:` value's position
  std::string algorithm;    // rule.name after every override (filled by validate_suite)
};

// An expected figure of a study (`expect:` in the suite): the mean over seeds of one entry's metric must lie in
// [min, max]; the bench prints PASS or FAIL for each and exits 1 when one fails. Metrics (bench/expectations.h):
// test_accuracy (final), test_accuracy_at_best, best_val_accuracy (fractions in [0, 1]), epoch_time_ratio (the
// entry's median epoch time over the baseline entry's).
struct Expectation {
  std::string entry;
  std::string metric;
  double min = -1e300, max = 1e300;
  std::string note;  // e.g. the paper's own figure, printed beside ours
  Location where;
};

struct Suite {
  std::string name;
  std::string description;
  std::string file;                     // the suite file as named (for messages)
  std::filesystem::path base_dir;       // where relative config paths are looked up first
  std::vector<int64_t> seeds{0};
  std::string baseline;                 // entry name; "" = the first entry whose algorithm is backprop
  int64_t probe_every = 1;              // 0 = no gradient probe
  std::string probe_reference = "backprop";
  std::string probe_solver = "none";    // train.probe_solver: latent-weight gradients through two solvers' backward
  std::string output_root = "runs";     // suites go to OUTPUT_ROOT/bench/NAME/TIMESTAMP/
  std::vector<SuiteOverride> overrides;  // applied to every entry
  std::vector<SuiteEntry> entries;
  std::vector<Expectation> expect;
  Location probe_where;                 // where the last of the probe settings was set (or the file)
};

// Parses a suite from YAML text. `file` names it in messages; relative config paths are resolved against
// `base_dir` first, then the current directory. Throws ConfigError naming the file, line and key.
Suite parse_suite(const std::string& text, const std::string& file, const std::filesystem::path& base_dir);
// The metrics an expectation may name (defined with their meaning in bench/expectations.h).
std::vector<std::string> expectation_metrics();
// Reads and parses a suite file (base_dir = the file's folder).
Suite load_suite(const std::string& file);

// Splits command-line overrides: `output.root=DIR` becomes the suite's output root (returned through
// `output_root`, unchanged when absent); `seed` and `experiment.name` are refused (the bench sets them).
std::vector<std::string> split_cli_overrides(const std::vector<std::string>& args, std::string& output_root);

// The overrides of one child run (see the order above). `runs_root` is SUITE_DIR/runs.
std::vector<std::string> run_overrides(const Suite& suite, const SuiteEntry& entry, int64_t seed,
                                       const std::vector<std::string>& cli_overrides,
                                       const std::filesystem::path& runs_root);
// experiment.name of a child run: ENTRY_seedS.
std::string run_name(const SuiteEntry& entry, int64_t seed);
// Where the child run's directory goes: runs_root/ENTRY/ENTRY_seedS/TIMESTAMP/.
std::filesystem::path run_parent(const std::filesystem::path& runs_root, const SuiteEntry& entry, int64_t seed);

// Validates every entry (its config + overrides through load_config, its learning rule and the probe's
// reference rule through make_rule, its data files) before anything runs; fills entry.algorithm and resolves
// the baseline. Errors name the suite file, line and key. Returns warnings (e.g. entries that differ in
// architecture, data or epochs, which breaks "equal terms").
std::vector<std::string> validate_suite(Suite& suite, const std::vector<std::string>& cli_overrides);

// The baseline entry's index, or -1 when the suite has none.
int baseline_index(const Suite& suite);

}  // namespace bilevel::bench
