#include "child_run.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "bilevel/util/io_error.h"

namespace bilevel::cli {
namespace {

namespace fs = std::filesystem;

// ---- signals: stop after the current run; forward a signal that only this process received ----

volatile sig_atomic_t g_stop = 0;
volatile pid_t g_children[kMaxJobs];  // the running children, one slot per job (0 = none)

extern "C" void on_signal(int sig, siginfo_t* info, void*) {
  g_stop = 1;
  // A terminal's Ctrl-C reaches the children too (same process group, si_code SI_KERNEL); a kill() aimed at this
  // process alone (si_code <= 0) is passed on, so the children stop cleanly instead of being orphaned.
  if (info && info->si_code <= 0)
    for (int i = 0; i < kMaxJobs; ++i)
      if (g_children[i] > 0) ::kill(g_children[i], sig);
}

// Whether a child's stderr line is echoed: every line with --verbose, else its epoch lines, warnings, errors and
// gradient probes.
bool echo_line(const std::string& line, bool verbose) {
  if (verbose) return true;
  for (const char* k : {"] info epoch ", "warning", "error", "gradient probe"})
    if (line.find(k) != std::string::npos) return true;
  return false;
}

}  // namespace

SignalScope::SignalScope() {
  struct sigaction sa {};
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO;  // no SA_RESTART: a blocking read returns EINTR and the loop re-checks
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
}

SignalScope::~SignalScope() {
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
}

bool stop_requested() { return g_stop != 0; }
void request_stop() { g_stop = 1; }

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

}  // namespace bilevel::cli
