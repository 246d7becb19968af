// Internal to the bench's reports (src/bench/*.cpp): per-entry statistics over seeds, shared by summary.md and the
// plots, and the plots' files. Not installed.
#pragma once

#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "bilevel/bench/report.h"

namespace bilevel::bench::detail {

// v with `digits` decimals.
std::string fixed(double v, int digits);

struct Stat {
  std::vector<double> v;
  void add(const std::optional<double>& x) {
    if (x && std::isfinite(*x)) v.push_back(*x);
  }
  bool empty() const { return v.empty(); }
  double mean() const {
    double s = 0;
    for (double x : v) s += x;
    return v.empty() ? std::nan("") : s / double(v.size());
  }
  double stddev() const {
    if (v.size() < 2) return 0;
    const double m = mean();
    double s = 0;
    for (double x : v) s += (x - m) * (x - m);
    return std::sqrt(s / double(v.size() - 1));  // sample standard deviation over seeds
  }
  // digits < 0: about three significant digits (times span from milliseconds to hours).
  std::string show(int digits) const {
    if (v.empty()) return "–";
    if (digits < 0) {
      const double m = std::fabs(mean());
      digits = m >= 100 ? 0 : m >= 10 ? 1 : m >= 1 ? 2 : m >= 0.1 ? 3 : 4;
    }
    std::string s = fixed(mean(), digits);
    if (v.size() > 1) s += " ± " + fixed(stddev(), digits);
    return s;
  }
};

struct EntryStats {
  int total = 0, completed = 0;
  Stat final_acc, best_acc, best_epoch, epoch_s, train_s, wall_s, rss_mb, cos_first, cos_last, rel_last;
  std::vector<Stat> layer_cos, layer_ratio, layer_cos_first;
  std::string algorithm;
  bool cpu = true;
};

// Per-entry aggregates over its completed runs.
std::vector<EntryStats> aggregate(const Suite& suite, const std::vector<RunResult>& results);
// x / base as "1.23×" (about three significant digits), "–" when either is missing.
std::string ratio(const Stat& x, const Stat& base);

// Writes the plots' data files and gnuplot script under dir; returns the script's path, or "" when there is
// nothing to plot.
std::filesystem::path write_plot_files(const std::filesystem::path& dir, const Suite& suite,
                                       const std::vector<RunResult>& results);
// Runs `gnuplot SCRIPT` with its output in LOG; returns its exit status (-1 when it could not start).
int run_gnuplot(const std::string& gnuplot, const std::filesystem::path& script, const std::filesystem::path& log);

}  // namespace bilevel::bench::detail
