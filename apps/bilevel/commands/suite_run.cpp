// bilevel bench's runs on this machine (run_suite): every run of a suite directory's state not done yet, --jobs N at
// a time, each a child process (child_run.h); state.yaml and the partial reports after every run, the full reports
// and the expected figures at the end.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include "bilevel/bench/report.h"
#include "bilevel/bench/suite.h"
#include "bilevel/util/log.h"
#include "bilevel/util/threads.h"
#include "child_run.h"
#include "commands.h"
#include "suite_dir.h"

namespace bilevel::cli {
namespace {

namespace fs = std::filesystem;
using namespace bilevel::bench;

std::string duration(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm %02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh %02dm", int(s) / 3600, (int(s) % 3600) / 60);
  return buf;
}

// Estimated seconds of the runs not yet done: each entry's mean measured run time, else the mean over entries.
double eta(const SuiteState& state, size_t from) {
  std::map<std::string, std::pair<double, int>> per_entry;
  double all = 0;
  int n_all = 0;
  for (const auto& r : state.runs)
    if (r.status == "completed" && r.wall_seconds > 0) {
      auto& p = per_entry[r.entry];
      p.first += r.wall_seconds, ++p.second;
      all += r.wall_seconds, ++n_all;
    }
  if (n_all == 0) return -1;
  double total = 0;
  for (size_t i = from; i < state.runs.size(); ++i) {
    const auto& r = state.runs[i];
    if (r.status == "completed") continue;
    auto it = per_entry.find(r.entry);
    total += it != per_entry.end() ? it->second.first / it->second.second : all / n_all;
  }
  return total;
}


// The status a child's exit code gives its run: completed; diverged (a result, not a failure: the suite goes on);
// interrupted (130, a signal, or 75: preempted; the next attempt resumes it mid-epoch); else failed.
std::string status_of_exit(int exit_code) {
  if (exit_code == 0) return "completed";
  if (exit_code == 4) return "diverged";
  if (exit_code == 130 || exit_code == 75 || exit_code == -SIGINT || exit_code == -SIGTERM) return "interrupted";
  return "failed";
}

// The log line of a run that ended: its time, and its accuracy and peak RSS, or the last lines of a failed run's log.
void log_outcome(const fs::path& dir, const RunRecord& rec, const ChildResult& c, const std::string& tag,
                 const fs::path& parent) {
  if (rec.status == "completed") {
    const RunResult r = read_run(dir, rec);
    char acc[64] = "";
    if (r.final_test_accuracy) std::snprintf(acc, sizeof acc, ", test acc %.4f", *r.final_test_accuracy);
    spdlog::info("{}: completed in {}{}, peak RSS {:.0f} MB", tag, duration(c.seconds), acc,
                 double(c.max_rss_kb) / 1024.0);
  } else if (rec.status == "interrupted") {
    spdlog::warn("{}: interrupted after {}", tag, duration(c.seconds));
  } else if (rec.status == "diverged") {
    spdlog::warn("{}: diverged (non-finite loss or gradient) after {}; going on with the next run", tag,
                 duration(c.seconds));
  } else {
    spdlog::error("{}: failed (exit {}) after {}; its log: {}.log; last lines:", tag, c.exit_code,
                  duration(c.seconds), parent.string());
    for (const auto& l : c.stderr_tail) std::fprintf(stderr, "    %s\n", l.c_str());
  }
}

// One run_suite: the workers take the runs in order, each the next one not yet taken, until none is left or a stop
// was asked for. `mu` guards the state, state.yaml, the reports and the flags.
struct LocalRuns {
  LocalRuns(const fs::path& dir, const Suite& suite, SuiteState& state, bool verbose, int jobs)
      : dir(dir), suite(suite), state(state), verbose(verbose), jobs(jobs) {}

  const fs::path& dir;
  const Suite& suite;
  SuiteState& state;
  const bool verbose;
  const int jobs;
  const fs::path runs_root = dir / "runs";
  const size_t total = state.runs.size();
  bool failed = false, interrupted = false;
  std::mutex mu;
  std::atomic<size_t> next{0};
  std::exception_ptr error;

  void worker(int slot) {
    try {
      for (size_t k; !stop_requested() && (k = next++) < total;) run(k, slot);
    } catch (...) {
      std::lock_guard<std::mutex> guard(mu);
      if (!error) error = std::current_exception();
      request_stop();
    }
  }

  // Run k: skipped when its directory shows it completed or diverged earlier; else trained, or resumed from its
  // directory, as a child process; its record updated when the child ends.
  void run(size_t k, int slot) {
    std::unique_lock<std::mutex> lock(mu);
    RunRecord& rec = state.runs[k];
    const SuiteEntry& entry = entry_named(suite, rec.entry);
    const std::string tag = "[" + std::to_string(k + 1) + "/" + std::to_string(total) + "] " + rec.entry +
                            " seed " + std::to_string(rec.seed);
    const fs::path parent = run_parent(runs_root, entry, rec.seed);
    if (done_earlier(rec, parent, tag)) return;

    Args child_args;
    std::string action;
    if (rec.run_dir.empty()) {
      action = "training";
      child_args = {"train", entry.config_path.string()};
      for (const auto& o : run_overrides(suite, entry, rec.seed, state.cli_overrides, runs_root))
        child_args.push_back(o);
    } else {
      action = "resuming " + rec.run_dir;
      child_args = {"resume", (dir / rec.run_dir).string()};
    }
    const double left = eta(state, k);
    spdlog::info("{}: {} {}{}", tag, entry.algorithm, action,
                 left >= 0 && jobs == 1 ? " (suite ETA ~" + duration(left) + ")" : "");
    fs::create_directories(parent.parent_path());
    rec.status = "running";
    ++rec.attempts;
    save_state(dir, state);
    lock.unlock();
    const ChildResult c = run_child(
        child_args, parent.string() + ".log", verbose,
        [&](const std::string& line) {
          std::lock_guard<std::mutex> guard(mu);
          if (rec.run_dir.empty()) {
            rec.run_dir = fs::relative(fs::absolute(line), dir).string();
            save_state(dir, state);
          }
        },
        slot);
    lock.lock();
    record(rec, c);
    log_outcome(dir, rec, c, tag, parent);
  }

  // Whether the run's directory (the recorded one, else the newest under `parent`) holds a completed or a diverged
  // run: then its record says so and it is skipped. A recorded directory that is gone or incomplete is forgotten
  // (the run starts again).
  bool done_earlier(RunRecord& rec, const fs::path& parent, const std::string& tag) {
    find_run_dir(rec, parent, dir);
    if (!rec.run_dir.empty() && !fs::exists(dir / rec.run_dir / "config.yaml")) {
      spdlog::warn("{}: run directory {} is gone or incomplete; starting the run again", tag, rec.run_dir);
      rec.run_dir.clear();
    }
    if (rec.run_dir.empty()) return false;
    const fs::path run_dir = dir / rec.run_dir;
    const std::string status = meta_status(run_dir);
    if (status == "completed" && fs::exists(run_dir / "final.pt")) {
      if (rec.status != "completed") rec.status = "completed", save_state(dir, state);
      spdlog::info("{}: completed earlier, skipped ({})", tag, rec.run_dir);
      return true;
    }
    if (status == "diverged") {
      // Deterministic: resuming would diverge at the same batch again.
      if (rec.status != "diverged") rec.status = "diverged", save_state(dir, state);
      spdlog::info("{}: diverged earlier, skipped ({})", tag, rec.run_dir);
      return true;
    }
    return false;
  }

  // The child's time, peak RSS and exit code in the run's record, and the status they give it; then state.yaml
  // and the partial reports.
  void record(RunRecord& rec, const ChildResult& c) {
    rec.wall_seconds += c.seconds;
    rec.peak_rss_kb = std::max<int64_t>(rec.peak_rss_kb, c.max_rss_kb);
    rec.exit_code = c.exit_code;
    rec.status = status_of_exit(c.exit_code);
    if (rec.status == "interrupted") {
      interrupted = true;
      request_stop();
    } else if (rec.status == "failed") {
      failed = true;
    }
    save_state(dir, state);
    report_suite(dir, suite, state, false, false);  // partial results after every run (checked at the end)
    check_log_file();                                // bench.log: a failed write ends the suite like any other
  }
};

}  // namespace

int run_suite(const fs::path& dir, const Suite& suite, SuiteState& state, const SuiteRunOptions& opt) {
  const int jobs = std::clamp(opt.jobs, 1, kMaxJobs);
  // Parallel runs share the CPUs: each child gets its share of threads unless OMP_NUM_THREADS says otherwise
  // (train.threads = 0 reads it; see util/threads.h).
  if (jobs > 1 && !std::getenv("OMP_NUM_THREADS"))
    ::setenv("OMP_NUM_THREADS", std::to_string(std::max(1, available_cpus().cpus / jobs)).c_str(), 1);
  SignalScope signals;
  LocalRuns runs(dir, suite, state, opt.verbose, jobs);
  const auto suite_t0 = std::chrono::steady_clock::now();
  if (jobs == 1) {
    runs.worker(0);
  } else {
    std::vector<std::thread> threads;
    for (int j = 0; j < jobs; ++j) threads.emplace_back([&runs, j] { runs.worker(j); });
    for (auto& t : threads) t.join();
  }
  if (runs.error) std::rethrow_exception(runs.error);
  if (stop_requested()) runs.interrupted = true;

  const bool expected = report_suite(dir, suite, state, opt.plots);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - suite_t0).count();
  size_t done = 0;
  for (const auto& r : state.runs) done += r.status == "completed";
  spdlog::info("suite {}: {}/{} runs completed ({} this session); summary: {}", suite.name, done, runs.total,
               duration(elapsed), (dir / "summary.md").string());
  if (runs.interrupted || runs.failed)
    spdlog::warn("{}; continue with: bilevel bench --resume {}", runs.interrupted ? "interrupted" : "some runs failed",
                 dir.string());
  return runs.interrupted ? 130 : runs.failed || !expected ? 1 : 0;
}

}  // namespace bilevel::cli
