#include "bilevel/bench/report.h"

#include "bilevel/bench/expectations.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <numeric>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "bilevel/run/metrics.h"
#include "bilevel/util/atomic_file.h"

extern char** environ;

namespace bilevel::bench {
namespace fs = std::filesystem;

// ---- state.yaml ----

RunRecord* SuiteState::find(const std::string& entry, int64_t seed) {
  for (auto& r : runs)
    if (r.entry == entry && r.seed == seed) return &r;
  return nullptr;
}

SuiteState load_state(const fs::path& suite_dir) {
  const fs::path file = suite_dir / "state.yaml";
  if (!fs::exists(file))
    throw UserError(suite_dir.string() + ": not a benchmark suite directory (no state.yaml; `bilevel bench SUITE.yaml` "
                                         "creates one)");
  YAML::Node n;
  try {
    n = YAML::LoadFile(file.string());
  } catch (const YAML::Exception& e) {
    throw UserError(file.string() + ": unreadable: " + e.what());
  }
  SuiteState s;
  try {
    s.suite_file = n["suite_file"].as<std::string>();
    s.base_dir = n["base_dir"].as<std::string>();
    s.command_line = n["command_line"].as<std::string>("");
    s.created = n["created"].as<std::string>("");
    if (n["cli_overrides"])
      for (const auto& o : n["cli_overrides"]) s.cli_overrides.push_back(o.as<std::string>());
    for (const auto& r : n["runs"]) {
      RunRecord rec;
      rec.entry = r["entry"].as<std::string>();
      rec.seed = r["seed"].as<int64_t>();
      rec.run_dir = r["run_dir"].as<std::string>("");
      rec.status = r["status"].as<std::string>("pending");
      rec.exit_code = r["exit_code"].as<int>(0);
      rec.attempts = r["attempts"].as<int64_t>(0);
      rec.wall_seconds = r["wall_seconds"].as<double>(0.0);
      rec.peak_rss_kb = r["peak_rss_kb"].as<int64_t>(0);
      s.runs.push_back(rec);
    }
  } catch (const YAML::Exception& e) {
    throw UserError(file.string() + ": malformed: " + e.what());
  }
  return s;
}

void save_state(const fs::path& suite_dir, const SuiteState& s) {
  YAML::Node n;
  n["suite_file"] = s.suite_file;
  n["base_dir"] = s.base_dir;
  n["command_line"] = s.command_line;
  n["created"] = s.created;
  n["cli_overrides"] = YAML::Node(YAML::NodeType::Sequence);
  for (const auto& o : s.cli_overrides) n["cli_overrides"].push_back(o);
  n["runs"] = YAML::Node(YAML::NodeType::Sequence);
  for (const auto& r : s.runs) {
    YAML::Node x;
    x["entry"] = r.entry;
    x["seed"] = r.seed;
    x["run_dir"] = r.run_dir;
    x["status"] = r.status;
    x["exit_code"] = r.exit_code;
    x["attempts"] = r.attempts;
    x["wall_seconds"] = r.wall_seconds;
    x["peak_rss_kb"] = r.peak_rss_kb;
    n["runs"].push_back(x);
  }
  YAML::Emitter e;
  e << n;
  write_file_atomic(suite_dir / "state.yaml", std::string(e.c_str()) + "\n");
}

// ---- reading a run ----

namespace {

std::vector<std::string> split(const std::string& line, char sep) {
  std::vector<std::string> parts;
  std::string cur;
  std::stringstream ss(line);
  while (std::getline(ss, cur, sep)) parts.push_back(cur);
  if (!line.empty() && line.back() == sep) parts.emplace_back();
  return parts;
}

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
  t.header = split(line, ',');
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto cells = split(line, ',');
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

// ---- results.csv ----

namespace {

size_t max_layers(const std::vector<RunResult>& results) {
  size_t L = 0;
  for (const auto& r : results)
    if (r.last_probe) L = std::max(L, r.last_probe->layer_cosine.size());
  return L;
}

std::string num(const std::optional<double>& v) { return v && std::isfinite(*v) ? format_metric(*v) : ""; }
std::string num(double v) { return std::isfinite(v) ? format_metric(v) : ""; }

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace

std::string results_csv(const Suite& suite, const std::vector<RunResult>& results) {
  const size_t L = max_layers(results);
  std::vector<std::string> cols{"entry",         "algorithm",        "seed",
                                "status",        "exit_code",        "attempts",
                                "run_dir",       "device",           "epochs",
                                "final_test_accuracy", "best_epoch", "best_val_accuracy",
                                "test_accuracy_at_best_epoch", "median_epoch_seconds", "train_seconds",
                                "wall_seconds",  "peak_rss_mb",      "peak_device_mb",
                                "probe_first_epoch", "probe_first_cosine", "probe_first_rel_error"};
  for (size_t l = 1; l <= L; ++l) cols.push_back("probe_first_cosine_layer" + std::to_string(l));
  for (const char* c : {"probe_epoch", "probe_cosine", "probe_rel_error"}) cols.push_back(c);
  for (size_t l = 1; l <= L; ++l) {
    cols.push_back("probe_cosine_layer" + std::to_string(l));
    cols.push_back("probe_norm_ratio_layer" + std::to_string(l));
  }
  std::ostringstream os;
  for (size_t i = 0; i < cols.size(); ++i) os << (i ? "," : "") << cols[i];
  os << "\n";
  for (const auto& r : results) {
    const auto& rec = r.record;
    std::vector<std::string> v{rec.entry,
                               r.algorithm,
                               std::to_string(rec.seed),
                               rec.status,
                               std::to_string(rec.exit_code),
                               std::to_string(rec.attempts),
                               rec.run_dir,
                               r.device,
                               std::to_string(r.epochs),
                               num(r.final_test_accuracy),
                               r.best_epoch ? std::to_string(*r.best_epoch) : "",
                               num(r.best_val_accuracy),
                               num(r.test_accuracy_at_best),
                               num(r.median_epoch_seconds),
                               num(r.total_epoch_seconds),
                               rec.attempts > 0 ? num(rec.wall_seconds) : "",
                               rec.peak_rss_kb > 0 ? fixed(double(rec.peak_rss_kb) / 1024.0, 1) : "",
                               // Device memory of a child cannot be measured from outside; on CPU there is none.
                               r.device.empty() || r.device == "cpu" ? "n/a" : ""};
    auto probe_cells = [&](const std::optional<RunResult::Probe>& p, bool first) {
      v.push_back(p ? std::to_string(p->epoch) : "");
      v.push_back(p ? num(p->cosine) : "");
      v.push_back(p ? num(p->rel_error) : "");
      for (size_t l = 0; l < L; ++l) {
        const bool has = p && l < p->layer_cosine.size();
        v.push_back(has ? num(p->layer_cosine[l]) : "");
        if (!first) v.push_back(has ? num(p->layer_norm_ratio[l]) : "");
      }
    };
    probe_cells(r.first_probe, true);
    probe_cells(r.last_probe, false);
    for (size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i];
    os << "\n";
  }
  return os.str();
}

// ---- summary.md ----

namespace {

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

// Per-entry aggregates over its completed runs.
struct EntryStats {
  int total = 0, completed = 0;
  Stat final_acc, best_acc, best_epoch, epoch_s, train_s, wall_s, rss_mb, cos_first, cos_last, rel_last;
  std::vector<Stat> layer_cos, layer_ratio, layer_cos_first;
  std::string algorithm;
  bool cpu = true;
};

std::vector<EntryStats> aggregate(const Suite& suite, const std::vector<RunResult>& results) {
  std::vector<EntryStats> out(suite.entries.size());
  for (size_t i = 0; i < suite.entries.size(); ++i) {
    auto& e = out[i];
    e.algorithm = suite.entries[i].algorithm;
    for (const auto& r : results) {
      if (r.record.entry != suite.entries[i].name) continue;
      ++e.total;
      if (!r.algorithm.empty()) e.algorithm = r.algorithm;
      if (!r.device.empty() && r.device != "cpu") e.cpu = false;
      if (r.record.status != "completed") continue;
      ++e.completed;
      e.final_acc.add(r.final_test_accuracy);
      e.best_acc.add(r.test_accuracy_at_best);
      if (r.best_epoch) e.best_epoch.add(double(*r.best_epoch));
      e.epoch_s.add(r.median_epoch_seconds);
      e.train_s.add(r.total_epoch_seconds);
      e.wall_s.add(r.record.wall_seconds);
      if (r.record.peak_rss_kb > 0) e.rss_mb.add(double(r.record.peak_rss_kb) / 1024.0);
      if (r.first_probe) {
        e.cos_first.add(r.first_probe->cosine);
        const auto& p = *r.first_probe;
        if (e.layer_cos_first.size() < p.layer_cosine.size()) e.layer_cos_first.resize(p.layer_cosine.size());
        for (size_t l = 0; l < p.layer_cosine.size(); ++l) e.layer_cos_first[l].add(p.layer_cosine[l]);
      }
      if (r.last_probe) {
        const auto& p = *r.last_probe;
        e.cos_last.add(p.cosine);
        e.rel_last.add(p.rel_error);
        if (e.layer_cos.size() < p.layer_cosine.size()) {
          e.layer_cos.resize(p.layer_cosine.size());
          e.layer_ratio.resize(p.layer_cosine.size());
        }
        for (size_t l = 0; l < p.layer_cosine.size(); ++l) {
          e.layer_cos[l].add(p.layer_cosine[l]);
          e.layer_ratio[l].add(p.layer_norm_ratio[l]);
        }
      }
    }
  }
  return out;
}

std::string ratio(const Stat& x, const Stat& base) {
  if (x.empty() || base.empty() || !(base.mean() > 0)) return "–";
  const double r = x.mean() / base.mean();
  return fixed(r, r >= 100 ? 0 : r >= 10 ? 1 : 2) + "×";
}

}  // namespace

std::string summary_markdown(const Suite& suite, const SuiteState& state, const std::vector<RunResult>& results,
                             bool have_plots) {
  const auto stats = aggregate(suite, results);
  const int b = baseline_index(suite);
  const std::string base_name = b >= 0 ? suite.entries[b].name : "";
  static const EntryStats none;
  const EntryStats& base = b >= 0 ? stats[b] : none;

  std::ostringstream os;
  os << "# Benchmark suite `" << suite.name << "`\n\n";
  if (!suite.description.empty()) os << suite.description << "\n\n";
  os << "Suite file `" << state.suite_file << "`, started " << state.created << "; " << suite.entries.size()
     << " entries × " << suite.seeds.size() << " seed" << (suite.seeds.size() > 1 ? "s" : "") << " (";
  for (size_t i = 0; i < suite.seeds.size(); ++i) os << (i ? ", " : "") << suite.seeds[i];
  os << ").";
  if (!base_name.empty()) os << " Ratios are to the baseline entry `" << base_name << "` (mean over seeds).";
  os << "\n";
  if (!state.cli_overrides.empty()) {
    os << "Command-line overrides:";
    for (const auto& o : state.cli_overrides) os << " `" << o << "`";
    os << "\n";
  }
  os << "\nMean ± sample standard deviation over the completed runs of each entry. Test accuracy \"@ best val\" is "
        "the test accuracy at the epoch with the best validation accuracy (chosen on the validation split, never on "
        "the test set). Epoch time is the median `epoch_seconds` (training, probe and evaluation); peak RSS is the "
        "child process's maximum resident set size (ru_maxrss). Gradient alignment compares each rule's gradient "
        "with `"
     << suite.probe_reference << "`'s on a fixed probe batch, at the last probed epoch.\n\n";

  os << "| entry | algorithm | runs | test acc (final) | test acc @ best val | best epoch | epoch time (s) | × "
     << (base_name.empty() ? "baseline" : base_name)
     << " | train time (s) | wall time (s) | peak RSS (MB) | × " << (base_name.empty() ? "baseline" : base_name)
     << " | device mem | cosine (first) | cosine (last) | rel. error (last) |\n";
  os << "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (size_t i = 0; i < suite.entries.size(); ++i) {
    const auto& e = stats[i];
    os << "| " << suite.entries[i].name << (static_cast<int>(i) == b ? " (baseline)" : "") << " | " << e.algorithm
       << " | " << e.completed << "/" << e.total << " | " << e.final_acc.show(4) << " | " << e.best_acc.show(4)
       << " | " << e.best_epoch.show(1) << " | " << e.epoch_s.show(-1) << " | " << ratio(e.epoch_s, base.epoch_s)
       << " | " << e.train_s.show(-1) << " | " << e.wall_s.show(-1) << " | " << e.rss_mb.show(0) << " | "
       << ratio(e.rss_mb, base.rss_mb) << " | " << (e.cpu ? "n/a" : "not measured") << " | " << e.cos_first.show(4)
       << " | " << e.cos_last.show(4) << " | " << e.rel_last.show(4) << " |\n";
  }

  size_t L = 0;
  for (const auto& e : stats) L = std::max(L, e.layer_cos.size());
  if (L > 0) {
    os << "\n## Gradient alignment per layer (last probed epoch)\n\n"
          "Cosine similarity and norm ratio ‖g‖/‖g_ref‖ of each layer's gradient (weight and bias) with `"
       << suite.probe_reference << "`'s.\n\n| entry |";
    for (size_t l = 1; l <= L; ++l) os << " layer " << l << " cosine | layer " << l << " norm ratio |";
    os << "\n|---|";
    for (size_t l = 0; l < 2 * L; ++l) os << "---|";
    os << "\n";
    for (size_t i = 0; i < suite.entries.size(); ++i) {
      os << "| " << suite.entries[i].name << " |";
      for (size_t l = 0; l < L; ++l) {
        const auto& e = stats[i];
        os << " " << (l < e.layer_cos.size() ? e.layer_cos[l].show(4) : "–") << " | "
           << (l < e.layer_ratio.size() ? e.layer_ratio[l].show(3) : "–") << " |";
      }
      os << "\n";
    }
    os << "\nFirst probed epoch, cosine per layer:\n\n| entry |";
    for (size_t l = 1; l <= L; ++l) os << " layer " << l << " |";
    os << "\n|---|";
    for (size_t l = 0; l < L; ++l) os << "---|";
    os << "\n";
    for (size_t i = 0; i < suite.entries.size(); ++i) {
      os << "| " << suite.entries[i].name << " |";
      for (size_t l = 0; l < L; ++l)
        os << " " << (l < stats[i].layer_cos_first.size() ? stats[i].layer_cos_first[l].show(4) : "–") << " |";
      os << "\n";
    }
  }

  // Relaxation cost: one column per cost figure any entry reported, in the order first met.
  std::vector<std::string> cost_cols;
  for (const auto& r : results)
    for (const auto& kv : r.relaxation)
      if (std::find(cost_cols.begin(), cost_cols.end(), kv.first) == cost_cols.end()) cost_cols.push_back(kv.first);
  if (!cost_cols.empty()) {
    os << "\n## Relaxation cost\n\n"
          "Energy-based entries: sweeps per example of each phase (mean; `at_limit`: the fraction of examples that "
          "ended the phase on its step limit), the histogram of sweeps per example (fractions of examples), and "
          "`macs_ratio`, the multiply-adds of a step over backprop's on the same network with those sweeps (the "
          "epoch-time ratio an implementation without overhead would reach). Means over epochs and seeds.\n\n| entry |";
    for (const auto& c : cost_cols) os << " " << c << " |";
    os << "\n|---|";
    for (size_t c = 0; c < cost_cols.size(); ++c) os << "---|";
    os << "\n";
    for (const auto& entry : suite.entries) {
      std::vector<Stat> col(cost_cols.size());
      bool any = false;
      for (const auto& r : results) {
        if (r.record.entry != entry.name || r.record.status != "completed") continue;
        for (const auto& kv : r.relaxation) {
          const size_t i = size_t(std::find(cost_cols.begin(), cost_cols.end(), kv.first) - cost_cols.begin());
          col[i].add(kv.second);
          any = true;
        }
      }
      if (!any) continue;
      os << "| " << entry.name << " |";
      for (const auto& c : col) os << " " << (c.empty() ? "–" : c.show(c.mean() >= 1 ? 1 : 3)) << " |";
      os << "\n";
    }
  }

  if (!suite.expect.empty()) os << "\n" << expectations_markdown(check_expectations(suite, results));

  if (have_plots) {
    os << "\n## Plots\n\n"
          "![test accuracy against epoch](plots/accuracy_vs_epoch.png)\n\n"
          "![test accuracy against training time](plots/accuracy_vs_time.png)\n\n"
          "![gradient alignment per layer](plots/alignment_per_layer.png)\n";
  }

  os << "\n## Runs\n\n| entry | seed | status | run directory |\n|---|---|---|---|\n";
  for (const auto& r : results)
    os << "| " << r.record.entry << " | " << r.record.seed << " | " << r.record.status
       << (r.record.status == "failed" ? " (exit " + std::to_string(r.record.exit_code) + ")" : "") << " | "
       << (r.record.run_dir.empty() ? "–" : "`" + r.record.run_dir + "`") << " |\n";
  return os.str();
}

// ---- plots ----

std::string find_gnuplot() {
  if (const char* env = std::getenv("BILEVEL_GNUPLOT")) return env;
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    const fs::path p = fs::path(dir) / "gnuplot";
    if (::access(p.c_str(), X_OK) == 0) return p.string();
  }
  return "";
}

namespace {

// Runs `gnuplot SCRIPT` with its output in LOG; returns its exit status (-1 when it could not start).
int run_gnuplot(const std::string& gnuplot, const fs::path& script, const fs::path& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::string a0 = gnuplot, a1 = script.string();
  char* argv[] = {a0.data(), a1.data(), nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, gnuplot.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string quoted(const fs::path& p) {
  std::string s = p.string(), out = "'";
  for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

// Writes the data files and the script; returns the script's path, or "" when there is nothing to plot.
fs::path write_plot_files(const fs::path& dir, const Suite& suite, const std::vector<RunResult>& results) {
  // Curves: one block per entry (mean over its runs of each epoch's test accuracy and cumulative time).
  std::ostringstream curves;
  std::vector<std::string> curve_names;
  for (const auto& entry : suite.entries) {
    std::vector<Stat> acc, secs;
    for (const auto& r : results) {
      if (r.record.entry != entry.name) continue;
      if (acc.size() < r.curve_accuracy.size()) acc.resize(r.curve_accuracy.size()), secs.resize(r.curve_accuracy.size());
      for (size_t i = 0; i < r.curve_accuracy.size(); ++i) acc[i].add(r.curve_accuracy[i]), secs[i].add(r.curve_seconds[i]);
    }
    if (acc.empty()) continue;
    if (!curve_names.empty()) curves << "\n\n";
    curves << "# " << entry.name << ": epoch test_accuracy cumulative_seconds (means over seeds)\n";
    for (size_t i = 0; i < acc.size(); ++i)
      if (!acc[i].empty()) curves << i + 1 << " " << format_metric(acc[i].mean()) << " " << format_metric(secs[i].mean()) << "\n";
    curve_names.push_back(entry.name);
  }
  // Alignment: one row per entry, one column per layer (mean cosine at the last probed epoch).
  const auto stats = aggregate(suite, results);
  size_t L = 0;
  for (const auto& e : stats) L = std::max(L, e.layer_cos.size());
  std::ostringstream align;
  int align_rows = 0;
  align << "entry";
  for (size_t l = 1; l <= L; ++l) align << " layer_" << l;
  align << "\n";
  for (size_t i = 0; i < suite.entries.size(); ++i) {
    if (stats[i].layer_cos.empty()) continue;
    align << suite.entries[i].name;
    for (size_t l = 0; l < L; ++l)
      align << " " << (l < stats[i].layer_cos.size() && !stats[i].layer_cos[l].empty()
                           ? format_metric(stats[i].layer_cos[l].mean())
                           : "NaN");
    align << "\n";
    ++align_rows;
  }
  if (curve_names.empty() && align_rows == 0) return {};
  fs::create_directories(dir);
  write_file_atomic(dir / "curves.dat", curves.str());
  write_file_atomic(dir / "alignment.dat", align.str());

  std::string names;
  for (const auto& n : curve_names) names += (names.empty() ? "" : " ") + n;
  std::ostringstream gp;
  gp << "# Generated by `bilevel bench`; run `gnuplot plots.gp` in this folder's parent to redraw.\n"
     << "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
     << "  set terminal pngcairo size 960,600 noenhanced\n"
     << "} else {\n"
     << "  set terminal png size 960,600 noenhanced\n"
     << "}\n"
     << "set grid\nset key outside right\n"
     << "curves = " << quoted(dir / "curves.dat") << "\n"
     << "names = '" << names << "'\n";
  if (!curve_names.empty()) {
    gp << "set output " << quoted(dir / "accuracy_vs_epoch.png") << "\n"
       << "set title 'Suite " << suite.name << ": test accuracy against epoch (mean over seeds)'\n"
       << "set xlabel 'epoch'\nset ylabel 'test accuracy'\nset xtics 1\n"
       << "plot for [i=0:" << curve_names.size() - 1 << "] curves index i using 1:2 with linespoints title word(names, i+1)\n"
       << "set output " << quoted(dir / "accuracy_vs_time.png") << "\n"
       << "set title 'Suite " << suite.name << ": test accuracy against training time (cumulative epoch seconds)'\n"
       << "set xlabel 'seconds'\nset xtics autofreq\nset xrange [0:*]\n"
       << "plot for [i=0:" << curve_names.size() - 1 << "] curves index i using 3:2 with linespoints title word(names, i+1)\n";
  }
  if (align_rows > 0) {
    gp << "set output " << quoted(dir / "alignment_per_layer.png") << "\n"
       << "set title 'Suite " << suite.name << ": gradient cosine with " << suite.probe_reference
       << " per layer (last probed epoch)'\n"
       << "set xlabel 'entry'\nset ylabel 'cosine similarity'\nset xrange [*:*]\nset yrange [-1 < * < 0 : 1.05]\n"
       << "set style data histogram\nset style histogram cluster gap 1\nset style fill solid 0.8 border -1\n"
       << "set boxwidth 0.9\nset xtics rotate by -30\n"
       << "plot for [i=2:" << L + 1 << "] " << quoted(dir / "alignment.dat")
       << " using i:xtic(1) title columnheader(i)\n";
  }
  gp << "set output\n";
  write_file_atomic(dir / "plots.gp", gp.str());
  return dir / "plots.gp";
}

}  // namespace

std::vector<std::string> write_reports(const fs::path& suite_dir, const Suite& suite, const SuiteState& state,
                                       bool plots) {
  std::vector<std::string> warnings;
  std::vector<RunResult> results;
  for (const auto& rec : state.runs) results.push_back(read_run(suite_dir, rec));
  write_file_atomic(suite_dir / "results.csv", results_csv(suite, results));

  bool have_plots = false;
  if (plots) {
    const std::string gnuplot = find_gnuplot();
    if (gnuplot.empty()) {
      warnings.push_back("gnuplot not found (install gnuplot-nox): no plots");
    } else {
      try {
        const fs::path script = write_plot_files(suite_dir / "plots", suite, results);
        if (!script.empty()) {
          const int rc = run_gnuplot(gnuplot, script, suite_dir / "plots" / "gnuplot.log");
          if (rc == 0) have_plots = true;
          else
            warnings.push_back("gnuplot (" + gnuplot + ") failed with status " + std::to_string(rc) + "; see " +
                               (suite_dir / "plots" / "gnuplot.log").string());
        }
      } catch (const std::exception& e) {
        warnings.push_back(std::string("plots skipped: ") + e.what());
      }
    }
  }
  write_file_atomic(suite_dir / "summary.md", summary_markdown(suite, state, results, have_plots));
  return warnings;
}

}  // namespace bilevel::bench
