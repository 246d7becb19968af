// results.csv: one row per entry and seed.
#include <algorithm>
#include <cmath>
#include <sstream>

#include "bilevel/run/metrics.h"
#include "report_detail.h"

namespace bilevel::bench {
namespace fs = std::filesystem;
using namespace detail;

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

}  // namespace bilevel::bench
