// Expected figures of a study (Suite::expect): each names an entry, a metric and a range; after the runs the bench
// compares the mean over the entry's completed seeds with the range and says PASS or FAIL (an expectation with no
// completed run fails: "no result"). `bilevel bench` exits 1 when one fails; summary.md lists them all.
//
// Metrics (bench::expectation_metrics()):
//   test_accuracy          the final epoch's test accuracy (a fraction in [0, 1])
//   test_accuracy_at_best  the test accuracy at the epoch chosen on the validation split
//   best_val_accuracy      that epoch's validation accuracy
//   epoch_time_ratio       the entry's median epoch time over the baseline entry's (the means over seeds)
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "bilevel/bench/report.h"
#include "bilevel/bench/suite.h"

namespace bilevel::bench {

struct ExpectationCheck {
  Expectation expected;
  std::optional<double> value;  // the mean over the completed seeds; empty when none completed
  int seeds = 0;                // completed runs behind the value
  bool pass = false;
};

std::vector<ExpectationCheck> check_expectations(const Suite& suite, const std::vector<RunResult>& results);
// "PASS  ENTRY METRIC = VALUE (N seeds), expected [MIN, MAX]; NOTE", for the log.
std::string expectation_line(const ExpectationCheck& c);
// A markdown section ("## Expected figures" and a table); empty when the suite expects nothing.
std::string expectations_markdown(const std::vector<ExpectationCheck>& checks);

}  // namespace bilevel::bench
