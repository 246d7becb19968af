// read_run: the figures of one run directory (meta.yaml, metrics.csv).
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <sstream>

#include "bilevel/bench/report.h"
#include "bilevel/run/metrics.h"
#include "bilevel/util/text.h"

namespace bilevel::bench {
namespace fs = std::filesystem;

// ---- reading a run ----

namespace {

using text::split_fields;

double parse_double(const std::string& s) {
  if (s.empty()) return std::nan("");
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  return end == s.c_str() ? std::nan("") : v;
}

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<double>> rows;
  int column(const std::string& name) const {
    for (size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return static_cast<int>(i);
    return -1;
  }
};

Table read_metrics(const fs::path& path) {
  Table t;
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return t;
  t.header = split_fields(line, ',');
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto cells = split_fields(line, ',');
    if (cells.size() != t.header.size()) continue;  // a torn last line
    std::vector<double> row;
    for (const auto& c : cells) row.push_back(parse_double(c));
    t.rows.push_back(std::move(row));
  }
  return t;
}

// The relaxation-cost columns (energy/sweep_stats.h) the summary reports.
bool is_relaxation_column(const std::string& name) {
  for (const char* phase : {"free_", "nudged_"})
    if (name.rfind(phase, 0) == 0 && (name.find("_sweeps") != std::string::npos || name.find("_at_limit") != std::string::npos))
      return true;
  return name == "macs_ratio";
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

RunResult read_run(const fs::path& suite_dir, const RunRecord& record) {
  RunResult r;
  r.record = record;
  if (record.run_dir.empty()) return r;
  const fs::path dir = suite_dir / record.run_dir;
  try {
    if (fs::exists(dir / "meta.yaml")) {
      const YAML::Node meta = YAML::LoadFile((dir / "meta.yaml").string());
      r.device = meta["device"].as<std::string>("");
      if (const auto ms = meta["model_selection"]) {
        if (ms["best_epoch"]) r.best_epoch = ms["best_epoch"].as<int64_t>();
        if (ms["best_val_accuracy"]) r.best_val_accuracy = ms["best_val_accuracy"].as<double>();
        if (ms["test_accuracy_at_best_epoch"]) r.test_accuracy_at_best = ms["test_accuracy_at_best_epoch"].as<double>();
      }
    }
    if (fs::exists(dir / "config.yaml")) {
      const YAML::Node cfg = YAML::LoadFile((dir / "config.yaml").string());
      r.algorithm = cfg["rule"]["name"].as<std::string>("");
    }
  } catch (const YAML::Exception&) {
    // A half-written run: report what metrics.csv holds.
  }
  const Table t = read_metrics(dir / "metrics.csv");
  r.epochs = static_cast<int64_t>(t.rows.size());
  if (t.rows.empty()) return r;
  const int acc = t.column("test_accuracy"), secs = t.column("epoch_seconds");
  if (acc >= 0) r.final_test_accuracy = t.rows.back()[acc];
  if (secs >= 0) {
    std::vector<double> s;
    double total = 0;
    for (const auto& row : t.rows) s.push_back(row[secs]), total += row[secs];
    r.median_epoch_seconds = median(s);
    r.total_epoch_seconds = total;
  }
  double cumulative = 0;
  for (const auto& row : t.rows) {
    cumulative += secs >= 0 ? row[secs] : 0.0;
    r.curve_accuracy.push_back(acc >= 0 ? row[acc] : std::nan(""));
    r.curve_seconds.push_back(cumulative);
  }
  for (size_t c = 0; c < t.header.size(); ++c) {
    const std::string& name = t.header[c];
    if (!is_relaxation_column(name)) continue;
    std::vector<double> v;
    for (const auto& row : t.rows)
      if (std::isfinite(row[c])) v.push_back(row[c]);
    if (!v.empty()) r.relaxation.emplace_back(name, std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()));
  }
  const int cos = t.column("probe_cosine"), rel = t.column("probe_rel_error"), ep = t.column("epoch");
  if (cos >= 0 && rel >= 0) {
    auto probe_at = [&](const std::vector<double>& row) {
      RunResult::Probe p;
      p.epoch = ep >= 0 ? static_cast<int64_t>(row[ep]) : 0;
      p.cosine = row[cos], p.rel_error = row[rel];
      for (int l = 1;; ++l) {
        const int c = t.column("probe_cosine_layer" + std::to_string(l));
        const int n = t.column("probe_norm_ratio_layer" + std::to_string(l));
        if (c < 0 || n < 0) break;
        p.layer_cosine.push_back(row[c]);
        p.layer_norm_ratio.push_back(row[n]);
      }
      return p;
    };
    for (const auto& row : t.rows)
      if (std::isfinite(row[cos])) {
        if (!r.first_probe) r.first_probe = probe_at(row);
        r.last_probe = probe_at(row);
      }
  }
  return r;
}

}  // namespace bilevel::bench
