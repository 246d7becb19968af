// summary.md: per entry, mean ± std over seeds and ratios to the baseline; the study's expected figures.
#include <sstream>

#include "bilevel/bench/expectations.h"
#include "report_detail.h"

namespace bilevel::bench {
namespace fs = std::filesystem;
using namespace detail;

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
  // With a probe solver (quantized weights) the probe compares latent-weight gradients through two solvers.
  const std::string reference = "`" + suite.probe_reference + "`'s" +
                                (suite.probe_solver == "none"
                                     ? std::string()
                                     : " (latent-weight gradients ∂ℓ/∂θ: each entry's solver's backward against `" +
                                           suite.probe_solver + "`'s, probe_solver)");
  os << "\nMean ± sample standard deviation over the completed runs of each entry. Test accuracy \"@ best val\" is "
        "the test accuracy at the epoch with the best validation accuracy (chosen on the validation split, never on "
        "the test set). Epoch time is the median `epoch_seconds` (training, probe and evaluation); peak RSS is the "
        "child process's maximum resident set size (ru_maxrss). Gradient alignment compares each rule's gradient "
        "with "
     << reference << " on a fixed probe batch, at the last probed epoch.\n\n";

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
          "Cosine similarity and norm ratio ‖g‖/‖g_ref‖ of each layer's gradient (weight and bias) with "
       << reference << ".\n\n| entry |";
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

}  // namespace bilevel::bench
