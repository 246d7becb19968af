// bilevel bench: runs a benchmark suite (every entry × seed as a child `bilevel train` process) and compares
// accuracy, speed, memory and gradient alignment. Suite parsing, validation and the reports live in the library
// (bilevel/bench/*.h); this file runs the children.
//
// Each run is a child process of this binary, so its peak RSS (wait4's ru_maxrss) and wall time are its own
// and a crash or OOM kill fails that run only.
#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>
#include <atomic>
#include <algorithm>
#include <exception>
#include <optional>
#include <sstream>

#include "bilevel/bench/expectations.h"
#include "bilevel/bench/report.h"
#include "bilevel/bench/suite.h"
#include "bilevel/run/dir_lock.h"
#include "bilevel/run/run_dir.h"
#include "bilevel/util/atomic_file.h"
#include "bilevel/util/clock.h"
#include "bilevel/util/error.h"
#include "bilevel/util/io_error.h"
#include "bilevel/util/log.h"
#include "bilevel/util/parse_int.h"
#include "bilevel/util/threads.h"
#include "commands.h"

namespace bilevel::cli {
namespace {

namespace fs = std::filesystem;
using namespace bilevel::bench;

constexpr const char* kHelp = R"(usage: bilevel bench SUITE.yaml [key.path=value ...] [--jobs N | --launcher slurm ...] [--verbose] [--no-plots]
       bilevel bench --resume SUITE_DIR [--jobs N] [--verbose] [--no-plots]
       bilevel bench --report SUITE_DIR

Runs a benchmark suite: every entry (a config plus overrides) with every seed, each as an ordinary run
(a child `bilevel train` process with train.probe_every and train.probe_reference=backprop set, so gradient
alignment with backprop is recorded), then writes, in the suite directory
OUTPUT_ROOT/bench/SUITE_NAME/YYYY-MM-DD_HH-MM-SS/ (printed on stdout):
  results.csv   one row per entry and seed: test accuracy (final, and at the epoch chosen on the validation
                split), median epoch time, total time, peak host RSS, gradient alignment per layer
  summary.md    per entry: mean ± std over seeds, ratios to the baseline entry (backprop by default), and
                the study's expected figures (the suite's `expect:` list): PASS or FAIL each; the bench
                exits 1 when one fails
  plots/        test accuracy against epoch and against time, gradient cosine per layer (needs gnuplot)
  runs/ENTRY/ENTRY_seedS/TIMESTAMP/   the runs' directories

The whole suite (every entry's config and overrides, its learning rule, its data files) is validated before
anything runs. key.path=value overrides after the suite file apply to every entry (e.g. train.epochs=1 for a
smoke test); output.root=DIR sets OUTPUT_ROOT (default: the suite's output_root, else runs).

  --resume SUITE_DIR   continue an interrupted suite: completed runs are skipped, unfinished ones continued
                       with `bilevel resume`, the rest started
  --report SUITE_DIR   rewrite results.csv, summary.md and the plots from what the suite directory holds
  --verbose            show every line the runs log (default: their epoch lines and warnings; the rest is in
                       runs/ENTRY/ENTRY_seedS.log and each run's train.log)
  --no-plots           skip gnuplot
  --jobs N             run N runs at a time (each with OMP_NUM_THREADS = CPUs / N unless set)
  --launcher slurm     run the suite as one Slurm job array (SUITE_DIR/slurm/array.sbatch: --array=0-(n-1)%K,
                       --signal=B:USR2@120, --requeue, --open-mode=append), follow it with squeue, then write
                       state.yaml and the summary; a requeued task resumes its run from its checkpoint.
                       Options: --partition P, --time T, --gpus-per-task G, --ntasks-per-run N (ranks per run,
                       through srun), --max-parallel K, --dry-run (print the script; nothing is written)

Ctrl-C (or SIGTERM) stops the current run after its batch and the suite after it; resume with --resume.
A run that diverges (exit code 4, see train.on_nonfinite) is recorded as `diverged` and the suite goes on.
Only one bench may work in a suite directory at a time (another exits with code 2).
Exit codes: 0 every run completed or diverged, 1 some run failed (or a file could not be written), 2 bad input,
130 interrupted.
The suite format: docs/bench.md.
)";

// ---- signals: stop after the current run; forward a signal that only this process received ----

volatile sig_atomic_t g_stop = 0;
constexpr int kMaxJobs = 64;
volatile pid_t g_children[kMaxJobs];  // the running children, one slot per job (0 = none)

extern "C" void on_signal(int sig, siginfo_t* info, void*) {
  g_stop = 1;
  // A terminal's Ctrl-C reaches the children too (same process group, si_code SI_KERNEL); a kill() aimed at this
  // process alone (si_code <= 0) is passed on, so the children stop cleanly instead of being orphaned.
  if (info && info->si_code <= 0)
    for (int i = 0; i < kMaxJobs; ++i)
      if (g_children[i] > 0) ::kill(g_children[i], sig);
}

struct SignalScope {
  struct sigaction old_int {}, old_term {};
  SignalScope() {
    struct sigaction sa {};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO;  // no SA_RESTART: a blocking read returns EINTR and the loop re-checks
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
  }
  ~SignalScope() {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
  }
};

// ---- a child run ----

struct ChildResult {
  int exit_code = -1;  // -N when killed by signal N
  double seconds = 0;
  int64_t max_rss_kb = 0;
  std::string first_line;  // the run directory `train` / `resume` prints
  std::deque<std::string> stderr_tail;
};

bool echo_line(const std::string& line, bool verbose) {
  if (verbose) return true;
  for (const char* k : {"] info epoch ", "warning", "error", "gradient probe"})
    if (line.find(k) != std::string::npos) return true;
  return false;
}

// Runs `/proc/self/exe ARGS`, capturing stdout (the run directory) and stderr (to `log`, echoing some lines).
// `on_first_line` is called as soon as stdout's first line arrives.
ChildResult run_child(const std::vector<std::string>& args, const fs::path& log, bool verbose,
                      const std::function<void(const std::string&)>& on_first_line, int slot) {
  std::vector<std::string> argv_s{"/proc/self/exe"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  int out_pipe[2], err_pipe[2];
  if (::pipe(out_pipe) != 0 || ::pipe(err_pipe) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  const pid_t parent = ::getpid();
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec. The child stops (cleanly, like Ctrl-C) if the bench
    // dies, rather than training on unobserved.
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) ::_exit(130);
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    ::close(out_pipe[0]), ::close(out_pipe[1]), ::close(err_pipe[0]), ::close(err_pipe[1]);
    ::execv("/proc/self/exe", argv.data());
    ::_exit(127);
  }
  g_children[slot] = pid;
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);

  std::ofstream log_file(log, std::ios::app);
  ChildResult r;
  std::string out_buf, err_buf;
  bool have_first = false;
  int log_error = log_file ? 0 : (errno ? errno : EIO);
  auto handle_err_line = [&](const std::string& line) {
    if (log_error == 0) {
      errno = 0;
      log_file << line << "\n";
      log_file.flush();
      if (!log_file) log_error = errno ? errno : EIO;
    }
    r.stderr_tail.push_back(line);
    if (r.stderr_tail.size() > 15) r.stderr_tail.pop_front();
    if (echo_line(line, verbose)) std::fprintf(stderr, "    %s\n", line.c_str());
  };
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[4096];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      std::string& acc = i == 0 ? out_buf : err_buf;
      acc.append(buf, static_cast<size_t>(n));
      size_t nl;
      while ((nl = acc.find('\n')) != std::string::npos) {
        const std::string line = acc.substr(0, nl);
        acc.erase(0, nl + 1);
        if (i == 1) {
          handle_err_line(line);
        } else if (!have_first && !line.empty()) {
          have_first = true;
          r.first_line = line;
          if (on_first_line) on_first_line(line);
        }
      }
    }
  }
  if (!err_buf.empty()) handle_err_line(err_buf);
  if (!have_first && !out_buf.empty()) r.first_line = out_buf;

  int status = 0;
  rusage ru{};
  while (::wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
  }
  g_children[slot] = 0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.max_rss_kb = ru.ru_maxrss;  // kilobytes on Linux
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  // Reported once the child has ended (it is not left running unobserved).
  if (log_error != 0) throw IoError(log, "cannot write", log_error);
  return r;
}

// ---- helpers ----

std::string duration(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm %02ds", int(s) / 60, int(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh %02dm", int(s) / 3600, (int(s) % 3600) / 60);
  return buf;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw UserError(p.string() + ": cannot read");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string meta_status(const fs::path& run_dir) {
  try {
    const YAML::Node meta = YAML::LoadFile((run_dir / "meta.yaml").string());
    return meta["status"].as<std::string>("");
  } catch (...) {
    return "";
  }
}

// The newest run directory under runs/ENTRY/ENTRY_seedS/, for a run the bench started but did not record
// (killed between the child creating it and state.yaml being written).
std::string find_unrecorded_run(const fs::path& parent) {
  std::error_code ec;
  if (!fs::is_directory(parent, ec)) return "";
  fs::path best;
  for (const auto& e : fs::directory_iterator(parent, ec))
    if (e.is_directory() && fs::exists(e.path() / "config.yaml") && e.path().filename() > best.filename())
      best = e.path();
  return best.empty() ? "" : best.string();
}

std::string command_line(const Args& args) {
  std::string s = "bilevel bench";
  for (const auto& a : args) s += " " + a;
  return s;
}

const SuiteEntry& entry_named(const Suite& suite, const std::string& name) {
  for (const auto& e : suite.entries)
    if (e.name == name) return e;
  throw UserError("state.yaml names entry '" + name + "', which the suite does not have");
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

// Writes the reports; with `check`, checks the study's expected figures (bench/expectations.h), logging PASS or
// FAIL for each. Returns whether every expectation holds (true when the suite has none or nothing is checked).
bool report(const fs::path& dir, const Suite& suite, const SuiteState& state, bool plots, bool check = true) {
  std::vector<RunResult> results;
  for (const auto& w : write_reports(dir, suite, state, plots, &results)) spdlog::warn("{}", w);
  if (suite.expect.empty() || !check) return true;
  bool all = true;
  for (const auto& c : check_expectations(suite, results)) {
    if (c.pass) spdlog::info("{}", expectation_line(c));
    else spdlog::error("{}", expectation_line(c));
    all = all && c.pass;
  }
  spdlog::log(all ? spdlog::level::info : spdlog::level::err, "suite {}: expected figures {}", suite.name,
              all ? "PASS" : "FAIL");
  return all;
}

}  // namespace

int run_suite(const fs::path& dir, const Suite& suite, SuiteState& state, const SuiteRunOptions& opt) {
  const bool verbose = opt.verbose;
  const int jobs = std::clamp(opt.jobs, 1, kMaxJobs);
  // Parallel runs share the CPUs: each child gets its share of threads unless OMP_NUM_THREADS says otherwise
  // (train.threads = 0 reads it; see util/threads.h).
  if (jobs > 1 && !std::getenv("OMP_NUM_THREADS"))
    ::setenv("OMP_NUM_THREADS", std::to_string(std::max(1, available_cpus().cpus / jobs)).c_str(), 1);
  SignalScope signals;
  const fs::path runs_root = dir / "runs";
  const size_t total = state.runs.size();
  bool failed = false, interrupted = false;
  const auto suite_t0 = std::chrono::steady_clock::now();
  std::mutex mu;  // guards state, state.yaml, the reports and the flags above
  std::atomic<size_t> next{0};
  std::exception_ptr error;

  // One worker takes the next run not yet taken until none is left (or a stop was asked for).
  auto worker = [&](int slot) {
    try {
      for (size_t k; !g_stop && (k = next++) < total;) {
        std::unique_lock<std::mutex> lock(mu);
        RunRecord& rec = state.runs[k];
        const SuiteEntry& entry = entry_named(suite, rec.entry);
        const std::string tag = "[" + std::to_string(k + 1) + "/" + std::to_string(total) + "] " + rec.entry +
                                " seed " + std::to_string(rec.seed);
        const fs::path parent = run_parent(runs_root, entry, rec.seed);
        if (rec.run_dir.empty()) {
          const std::string found = find_unrecorded_run(parent);
          if (!found.empty()) rec.run_dir = fs::relative(found, dir).string();
        }
        if (!rec.run_dir.empty() && !fs::exists(dir / rec.run_dir / "config.yaml")) {
          spdlog::warn("{}: run directory {} is gone or incomplete; starting the run again", tag, rec.run_dir);
          rec.run_dir.clear();
        }
        if (!rec.run_dir.empty()) {
          const fs::path run_dir = dir / rec.run_dir;
          const std::string status = meta_status(run_dir);
          if (status == "completed" && fs::exists(run_dir / "final.pt")) {
            if (rec.status != "completed") rec.status = "completed", save_state(dir, state);
            spdlog::info("{}: completed earlier, skipped ({})", tag, rec.run_dir);
            continue;
          }
          if (status == "diverged") {
            // Deterministic: resuming would diverge at the same batch again.
            if (rec.status != "diverged") rec.status = "diverged", save_state(dir, state);
            spdlog::info("{}: diverged earlier, skipped ({})", tag, rec.run_dir);
            continue;
          }
        }

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
        rec.wall_seconds += c.seconds;
        rec.peak_rss_kb = std::max<int64_t>(rec.peak_rss_kb, c.max_rss_kb);
        rec.exit_code = c.exit_code;
        if (c.exit_code == 0) {
          rec.status = "completed";
        } else if (c.exit_code == 4) {
          rec.status = "diverged";  // a result, not a failure: the suite goes on
        } else if (c.exit_code == 130 || c.exit_code == 75 || c.exit_code == -SIGINT || c.exit_code == -SIGTERM) {
          rec.status = "interrupted";  // 75: preempted; the next attempt resumes it mid-epoch
          interrupted = true;
          g_stop = 1;
        } else {
          rec.status = "failed";
          failed = true;
        }
        save_state(dir, state);
        report(dir, suite, state, false, false);  // partial results after every run (checked at the end)
        check_log_file();                  // bench.log: a failed write ends the suite like any other

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
    } catch (...) {
      std::lock_guard<std::mutex> guard(mu);
      if (!error) error = std::current_exception();
      g_stop = 1;
    }
  };
  if (jobs == 1) {
    worker(0);
  } else {
    std::vector<std::thread> threads;
    for (int j = 0; j < jobs; ++j) threads.emplace_back(worker, j);
    for (auto& t : threads) t.join();
  }
  if (error) std::rethrow_exception(error);
  if (g_stop) interrupted = true;

  const bool expected = report(dir, suite, state, opt.plots);
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - suite_t0).count();
  size_t done = 0;
  for (const auto& r : state.runs) done += r.status == "completed";
  spdlog::info("suite {}: {}/{} runs completed ({} this session); summary: {}", suite.name, done, total,
               duration(elapsed), (dir / "summary.md").string());
  if (interrupted || failed)
    spdlog::warn("{}; continue with: bilevel bench --resume {}", interrupted ? "interrupted" : "some runs failed",
                 dir.string());
  return interrupted ? 130 : failed || !expected ? 1 : 0;
}

int start_suite(const NewSuite& n, const SuiteRunOptions& opt) {
  Suite suite = parse_suite(n.text, n.file, n.base_dir);
  SuiteState state;
  state.cli_overrides = split_cli_overrides(n.overrides, suite.output_root);
  // Everything is checked before anything is written.
  for (const auto& w : validate_suite(suite, state.cli_overrides)) spdlog::warn("{}", w);
  state.suite_file = n.file;
  state.base_dir = suite.base_dir.string();
  state.command_line = n.command_line;
  state.created = now_iso();
  for (int64_t seed : suite.seeds)
    for (const auto& e : suite.entries) {
      RunRecord rec;
      rec.entry = e.name, rec.seed = seed;
      state.runs.push_back(rec);
    }
  if (opt.launcher == "slurm" && opt.slurm.dry_run) {
    // Nothing is written: the script names the directory a real submission would create.
    const fs::path would_be = fs::absolute(fs::path(suite.output_root) / n.folder / suite.name / "TIMESTAMP");
    return run_suite_on_slurm(would_be.lexically_normal(), suite, state, opt);
  }
  // A fresh timestamped directory, never reused (RunDir's naming); a suite has no checkpoints of its own.
  const fs::path dir =
      fs::absolute(RunDir::create(fs::path(suite.output_root) / n.folder, suite.name).root).lexically_normal();
  const DirLock lock = DirLock::acquire(dir);  // one bench per suite directory; the children do not inherit it
  std::error_code ec;
  fs::remove(dir / "checkpoints", ec);
  write_file_atomic(dir / "suite.yaml", n.text);
  save_state(dir, state);
  std::cout << dir.string() << std::endl;
  attach_log_file(dir / "bench.log");
  spdlog::info("suite {}: {} entries × {} seed{} = {} runs in {}", suite.name, suite.entries.size(),
               suite.seeds.size(), suite.seeds.size() > 1 ? "s" : "", state.runs.size(), dir.string());
  if (opt.launcher == "slurm") return run_suite_on_slurm(dir, suite, state, opt);
  return run_suite(dir, suite, state, opt);
}

int collect_suite(const fs::path& dir, const Suite& suite, SuiteState& state, const SuiteRunOptions& opt) {
  bool all_done = true;
  for (auto& rec : state.runs) {
    const fs::path parent = run_parent(dir / "runs", entry_named(suite, rec.entry), rec.seed);
    if (rec.run_dir.empty()) {
      const std::string found = find_unrecorded_run(parent);
      if (!found.empty()) rec.run_dir = fs::relative(found, dir).string();
    }
    const std::string status = rec.run_dir.empty() ? "" : meta_status(dir / rec.run_dir);
    if (status == "completed" && fs::exists(dir / rec.run_dir / "final.pt")) rec.status = "completed";
    else if (status == "diverged") rec.status = "diverged";
    else if (status == "failed") rec.status = "failed";
    else if (status.empty()) rec.status = "pending";
    else rec.status = "interrupted";  // running (killed), interrupted, preempted
    all_done = all_done && (rec.status == "completed" || rec.status == "diverged");
  }
  save_state(dir, state);
  const bool expected = report(dir, suite, state, opt.plots);
  spdlog::info("suite {}: summary: {}", suite.name, (dir / "summary.md").string());
  if (!all_done) spdlog::warn("some runs did not complete; continue with: bilevel bench --resume {}", dir.string());
  return all_done && expected ? 0 : 1;
}

bool take_launcher_option(const Args& args, size_t& i, SuiteRunOptions& opt) {
  const std::string& a = args[i];
  auto value = [&]() -> std::string {
    if (i + 1 >= args.size()) throw UserError(a + " needs a value");
    return args[++i];
  };
  auto count = [&](int64_t min) {
    const std::string v = value();
    const auto n = parse_integer(v, min, 1LL << 40);
    if (!n) throw UserError(a + " " + v + ": expected an integer >= " + std::to_string(min));
    return int64_t(*n);
  };
  if (a == "--launcher") {
    opt.launcher = value();
    if (opt.launcher != "local" && opt.launcher != "slurm")
      throw UserError("--launcher " + opt.launcher + ": expected local or slurm");
  } else if (a == "--partition") {
    opt.slurm.partition = value();
  } else if (a == "--time") {
    opt.slurm.time = value();
  } else if (a == "--gpus-per-task") {
    opt.slurm.gpus_per_task = count(0);
  } else if (a == "--ntasks-per-run") {
    opt.slurm.ntasks_per_run = count(1);
  } else if (a == "--max-parallel") {
    opt.slurm.max_parallel = count(1);
  } else if (a == "--dry-run") {
    opt.slurm.dry_run = true;
  } else {
    return false;
  }
  return true;
}

int bench(const Args& args) {
  SuiteRunOptions opt;
  std::string resume_dir, report_dir;
  Args rest;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") return std::fputs(kHelp, stdout), 0;
    if (a == "--verbose") opt.verbose = true;
    else if (a == "--no-plots") opt.plots = false;
    else if (a == "--jobs") {
      if (i + 1 >= args.size()) throw UserError("bilevel bench: --jobs needs a number");
      opt.jobs = parse_jobs(args[++i]);
    } else if (take_launcher_option(args, i, opt)) {
      continue;
    } else if (a == "--resume" || a == "--report") {
      if (i + 1 >= args.size()) throw UserError("bilevel bench: " + a + " needs a SUITE_DIR");
      (a == "--resume" ? resume_dir : report_dir) = args[++i];
    } else if (a.rfind("--", 0) == 0) {
      throw UserError("bilevel bench: unknown option '" + a + "' (see `bilevel bench --help`)");
    } else {
      rest.push_back(a);
    }
  }
  init_console_logging();

  if ((opt.slurm.dry_run || opt.slurm.ntasks_per_run > 1 || !opt.slurm.partition.empty()) && opt.launcher != "slurm")
    throw UserError("bilevel bench: --dry-run, --partition, --time, --gpus-per-task, --ntasks-per-run and "
                    "--max-parallel go with --launcher slurm");
  if (resume_dir.empty() && report_dir.empty()) {
    if (rest.empty()) throw UserError("bilevel bench: expected a suite file (see `bilevel bench --help`)");
    if (rest[0].find('=') != std::string::npos)
      throw UserError("bilevel bench: expected a suite file first, got '" + rest[0] + "'");
    NewSuite n;
    n.file = rest[0];
    n.text = read_text(n.file);
    n.base_dir = fs::absolute(fs::path(n.file)).parent_path();
    n.overrides = Args(rest.begin() + 1, rest.end());
    n.folder = "bench";
    n.command_line = command_line(args);
    return start_suite(n, opt);
  }
  if (!resume_dir.empty() && !report_dir.empty()) throw UserError("bilevel bench: --resume or --report, not both");
  if (!rest.empty())
    throw UserError("bilevel bench: '" + rest[0] +
                    "': a resumed suite keeps the overrides it started with (see its state.yaml)");
  const fs::path dir = fs::absolute(resume_dir.empty() ? report_dir : resume_dir).lexically_normal();
  // One bench per suite directory at a time (run/dir_lock.h); the children do not inherit the lock.
  std::optional<DirLock> lock;
  if (!resume_dir.empty()) {
    if (!fs::is_directory(dir)) throw UserError(dir.string() + ": not a directory");
    lock.emplace(DirLock::acquire(dir));
  }
  SuiteState state = load_state(dir);
  Suite suite = parse_suite(read_text(dir / "suite.yaml"), state.suite_file, state.base_dir);
  if (!report_dir.empty()) {
    validate_suite(suite, state.cli_overrides);
    const bool expected = report(dir, suite, state, opt.plots);
    std::cout << dir.string() << std::endl;
    spdlog::info("wrote {}", (dir / "summary.md").string());
    return expected ? 0 : 1;
  }
  for (const auto& w : validate_suite(suite, state.cli_overrides)) spdlog::warn("{}", w);
  std::cout << dir.string() << std::endl;
  attach_log_file(dir / "bench.log");
  spdlog::info("suite {}: resuming {} runs in {}", suite.name, state.runs.size(), dir.string());
  if (opt.launcher == "slurm") return run_suite_on_slurm(dir, suite, state, opt);
  return run_suite(dir, suite, state, opt);
}

int parse_jobs(const std::string& value) {
  const auto n = parse_integer(value, 1, kMaxJobs);
  if (!n)
    throw UserError("--jobs " + value + ": expected a number of parallel runs in [1, " + std::to_string(kMaxJobs) + "]");
  return int(*n);
}

}  // namespace bilevel::cli
