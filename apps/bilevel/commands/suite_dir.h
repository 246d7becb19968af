// A suite directory as bilevel bench finds it and leaves it (suite_dir.cpp): which entry a record names, the run
// directory of each record (also one the bench started but did not record), a run's status in its meta.yaml, and the
// suite's reports with its expected figures. A new suite directory (start_suite) and what the runs' directories hold
// (collect_suite) are declared in commands.h.
#pragma once

#include <filesystem>
#include <string>

#include "bilevel/bench/report.h"
#include "bilevel/bench/suite.h"

namespace bilevel::cli {

// The suite's entry called `name`; UserError when state.yaml names one the suite does not have.
const bench::SuiteEntry& entry_named(const bench::Suite& suite, const std::string& name);

// The status in RUN_DIR/meta.yaml ("" when it cannot be read).
std::string meta_status(const std::filesystem::path& run_dir);

// A record without a run directory gets the newest one under `parent` (runs/ENTRY/ENTRY_seedS/), relative to the
// suite directory `dir`: a run the bench started but did not record (killed between the child creating it and
// state.yaml being written).
void find_run_dir(bench::RunRecord& rec, const std::filesystem::path& parent, const std::filesystem::path& dir);

// Writes the reports; with `check`, checks the study's expected figures (bench/expectations.h), logging PASS or
// FAIL for each. Returns whether every expectation holds (true when the suite has none or nothing is checked).
bool report_suite(const std::filesystem::path& dir, const bench::Suite& suite, const bench::SuiteState& state,
                  bool plots, bool check = true);

}  // namespace bilevel::cli
