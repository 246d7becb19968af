#include "bilevel/run/preemption.h"

#include <spawn.h>
#include <sys/wait.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <vector>

extern char** environ;

namespace bilevel {

std::atomic<bool>& stop_requested() {
  static std::atomic<bool> flag{false};
  return flag;
}

std::atomic<bool>& preempt_requested() {
  static std::atomic<bool> flag{false};
  return flag;
}

namespace {

std::atomic<int> g_received{0};

extern "C" void on_interrupt(int sig) {
  stop_requested() = true;
  std::signal(sig, SIG_DFL);  // a second Ctrl-C kills at once
}

extern "C" void on_preempt(int sig) {
  int none = 0;
  g_received.compare_exchange_strong(none, sig);  // the first signal is the reason; later ones (the requeue's SIGTERM) are not
  preempt_requested() = true;
}

}  // namespace

int preempt_signal_number(const std::string& name) {
  if (name == "USR1") return SIGUSR1;
  if (name == "USR2") return SIGUSR2;
  return 0;
}

std::string signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    case SIGUSR2: return "SIGUSR2";
    default: return "signal " + std::to_string(sig);
  }
}

StopSignals::StopSignals(int preempt_signal) : preempt_signal_(preempt_signal) {
  stop_requested() = false;
  preempt_requested() = false;
  g_received = 0;
  previous_int_ = std::signal(SIGINT, on_interrupt);
  previous_term_ = std::signal(SIGTERM, on_preempt);
  if (preempt_signal_ != 0) previous_preempt_ = std::signal(preempt_signal_, on_preempt);
}

// The handlers from before: the CLI's defaults, or an embedding program's own (Python's SIGINT handler that
// raises KeyboardInterrupt).
StopSignals::~StopSignals() {
  std::signal(SIGINT, previous_int_ == SIG_ERR ? SIG_DFL : previous_int_);
  std::signal(SIGTERM, previous_term_ == SIG_ERR ? SIG_DFL : previous_term_);
  if (preempt_signal_ != 0) std::signal(preempt_signal_, previous_preempt_ == SIG_ERR ? SIG_DFL : previous_preempt_);
}

int StopSignals::received() { return g_received; }

std::string slurm_job_to_requeue() {
  const char* array_job = std::getenv("SLURM_ARRAY_JOB_ID");
  const char* array_task = std::getenv("SLURM_ARRAY_TASK_ID");
  if (array_job && *array_job && array_task && *array_task) return std::string(array_job) + "_" + array_task;
  const char* job = std::getenv("SLURM_JOB_ID");
  return job ? job : "";
}

std::string slurm_requeue(const std::string& job) {
  const std::string what = "scontrol requeue " + job;
  std::vector<std::string> args{"scontrol", "requeue", job};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, "scontrol", nullptr, nullptr, argv.data(), environ);
  if (rc != 0) return what + ": cannot start scontrol (" + std::strerror(rc) + ")";
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return what + ": waitpid failed (" + std::strerror(errno) + ")";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return what + ": ok";
  if (WIFEXITED(status)) return what + ": exit code " + std::to_string(WEXITSTATUS(status));
  return what + ": killed by " + signal_name(WTERMSIG(status));
}

}  // namespace bilevel
