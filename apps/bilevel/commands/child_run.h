// A suite's run as a child process of this binary (`/proc/self/exe train|resume ...`), so that its peak RSS (wait4's
// ru_maxrss) and wall time are its own and a crash or OOM kill fails that run only; and the signals that stop a
// suite after its current runs.
#pragma once

#include <signal.h>

#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace bilevel::cli {

constexpr int kMaxJobs = 64;  // runs at a time, at most (--jobs)

// While it lives, SIGINT and SIGTERM ask the suite to stop after its current runs (stop_requested()); a signal that
// only this process received is passed on to the running children.
struct SignalScope {
  struct sigaction old_int {}, old_term {};
  SignalScope();
  ~SignalScope();
};
bool stop_requested();
void request_stop();

struct ChildResult {
  int exit_code = -1;  // -N when killed by signal N
  double seconds = 0;
  int64_t max_rss_kb = 0;
  std::string first_line;  // the run directory `train` / `resume` prints
  std::deque<std::string> stderr_tail;
};

// Runs `/proc/self/exe ARGS`, capturing stdout (the run directory) and stderr (to `log`, echoing some lines).
// `on_first_line` is called as soon as stdout's first line arrives. `slot` (in [0, kMaxJobs)): the job's place among
// the running children, to which a signal is passed on. Throws IoError when `log` cannot be written (once the child
// has ended).
ChildResult run_child(const std::vector<std::string>& args, const std::filesystem::path& log, bool verbose,
                      const std::function<void(const std::string&)>& on_first_line, int slot);

}  // namespace bilevel::cli
