#include "bilevel/bench/report.h"

#include "bilevel/util/atomic_file.h"
#include "report_detail.h"

namespace bilevel::bench {
namespace fs = std::filesystem;
using namespace detail;

std::vector<std::string> write_reports(const fs::path& suite_dir, const Suite& suite, const SuiteState& state,
                                       bool plots, std::vector<RunResult>* results_out) {
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
  if (results_out) *results_out = std::move(results);
  return warnings;
}

}  // namespace bilevel::bench
