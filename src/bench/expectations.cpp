#include "bilevel/bench/expectations.h"

#include <cmath>
#include <cstdio>
#include <sstream>

namespace bilevel::bench {
namespace {

// Every metric an expectation may name, with the run figure it reads (epoch_time_ratio: the median epoch time,
// divided by the baseline's in check_expectations).
struct Metric {
  const char* name;
  std::optional<double> RunResult::*field;
};
constexpr Metric kMetrics[] = {{"test_accuracy", &RunResult::final_test_accuracy},
                               {"test_accuracy_at_best", &RunResult::test_accuracy_at_best},
                               {"best_val_accuracy", &RunResult::best_val_accuracy},
                               {"epoch_time_ratio", &RunResult::median_epoch_seconds}};

std::optional<double> metric_of(const RunResult& r, const std::string& metric) {
  for (const Metric& m : kMetrics)
    if (metric == m.name) return r.*m.field;
  return std::nullopt;
}

// The mean of `metric` over the entry's completed runs, and how many there were.
std::pair<std::optional<double>, int> mean_of(const std::vector<RunResult>& results, const std::string& entry,
                                              const std::string& metric) {
  double sum = 0;
  int n = 0;
  for (const auto& r : results) {
    if (r.record.entry != entry || r.record.status != "completed") continue;
    const auto v = metric_of(r, metric);
    if (!v || !std::isfinite(*v)) continue;
    sum += *v, ++n;
  }
  if (n == 0) return {std::nullopt, 0};
  return {sum / n, n};
}

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4g", v);
  return buf;
}

std::string range(const Expectation& x) {
  const bool lo = x.min > -1e299, hi = x.max < 1e299;
  if (lo && hi) return "[" + number(x.min) + ", " + number(x.max) + "]";
  return lo ? "≥ " + number(x.min) : "≤ " + number(x.max);
}

}  // namespace

std::vector<std::string> expectation_metrics() {
  std::vector<std::string> names;
  for (const Metric& m : kMetrics) names.push_back(m.name);
  return names;
}

std::vector<ExpectationCheck> check_expectations(const Suite& suite, const std::vector<RunResult>& results) {
  std::vector<ExpectationCheck> out;
  const int b = baseline_index(suite);
  for (const auto& x : suite.expect) {
    ExpectationCheck c;
    c.expected = x;
    auto [value, n] = mean_of(results, x.entry, x.metric);
    if (value && x.metric == "epoch_time_ratio") {
      const auto base = b >= 0 ? mean_of(results, suite.entries[size_t(b)].name, x.metric).first : std::nullopt;
      value = base && *base > 0 ? std::optional<double>(*value / *base) : std::nullopt;
    }
    c.value = value;
    c.seeds = n;
    c.pass = value && *value >= x.min && *value <= x.max;
    out.push_back(std::move(c));
  }
  return out;
}

std::string expectation_line(const ExpectationCheck& c) {
  const Expectation& x = c.expected;
  std::string s = std::string(c.pass ? "PASS" : "FAIL") + "  " + x.entry + " " + x.metric + " = " +
                  (c.value ? number(*c.value) + " (" + std::to_string(c.seeds) + " seed" + (c.seeds > 1 ? "s" : "") + ")"
                           : std::string("no result")) +
                  ", expected " + range(x);
  if (!x.note.empty()) s += "; " + x.note;
  return s;
}

std::string expectations_markdown(const std::vector<ExpectationCheck>& checks) {
  if (checks.empty()) return "";
  std::ostringstream os;
  int passed = 0;
  for (const auto& c : checks) passed += c.pass;
  os << "## Expected figures\n\n" << passed << " of " << checks.size() << " pass.\n\n";
  os << "| entry | metric | ours (mean over seeds) | expected | | note |\n|---|---|---|---|---|---|\n";
  for (const auto& c : checks)
    os << "| " << c.expected.entry << " | " << c.expected.metric << " | "
       << (c.value ? number(*c.value) + " (" + std::to_string(c.seeds) + ")" : std::string("no result")) << " | "
       << range(c.expected) << " | " << (c.pass ? "PASS" : "**FAIL**") << " | " << c.expected.note << " |\n";
  os << "\n";
  return os.str();
}

}  // namespace bilevel::bench
