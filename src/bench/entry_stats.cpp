// Per-entry statistics over seeds (report_detail.h).
#include <cstdio>

#include "report_detail.h"

namespace bilevel::bench {
namespace fs = std::filesystem;

namespace detail {

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

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


}  // namespace detail

}  // namespace bilevel::bench
