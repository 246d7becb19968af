// Stop signals during a run. SIGINT (Ctrl-C) interrupts after the current batch (status `interrupted`, exit code
// 130, resume from the last checkpoint). SIGTERM and the preemption signal (train.preempt_signal, SIGUSR2 by
// default: what `sbatch --signal=B:USR2@120` sends before a time limit) preempt: the run finishes its current
// batch, writes a positional checkpoint (run/checkpoint.h) and ends with status `preempted` and exit code
// kExitPreempted; `bilevel resume` continues with the next batch of the same shuffle. On the preemption signal
// under Slurm (SLURM_JOB_ID set) the job also requeues itself with `scontrol requeue` (the array form
// JOBID_TASKID for an array task). SIGTERM does not requeue: Slurm sends it for `scancel` too, and a job that
// requeues itself on cancellation would never end.
#pragma once

#include <atomic>
#include <csignal>
#include <string>

namespace bilevel {

// Set by the SIGINT handler; the trainer stops after the current batch.
std::atomic<bool>& stop_requested();
// Set by the SIGTERM and train.preempt_signal handlers; the trainer finishes the current batch, writes a
// positional checkpoint and returns.
std::atomic<bool>& preempt_requested();

// The exit code of a preempted run (sysexits' EX_TEMPFAIL: try again later).
constexpr int kExitPreempted = 75;

// The signal number train.preempt_signal names ("USR1", "USR2"), or 0 for "none".
int preempt_signal_number(const std::string& name);

// Installs the handlers for the lifetime of the scope: SIGINT sets stop_requested(), SIGTERM and
// `preempt_signal` (0 = none) set preempt_requested(). A second SIGINT kills at once. The handlers from before
// are restored at the end of the scope.
class StopSignals {
 public:
  explicit StopSignals(int preempt_signal);
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  // The signal that asked for preemption (0 = none yet).
  static int received();

 private:
  int preempt_signal_;
  void (*previous_int_)(int) = SIG_DFL;
  void (*previous_term_)(int) = SIG_DFL;
  void (*previous_preempt_)(int) = SIG_DFL;
};

// "SIGUSR2" etc.
std::string signal_name(int sig);

// The Slurm job to requeue: "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}" for an array task, else
// SLURM_JOB_ID; empty outside Slurm.
std::string slurm_job_to_requeue();

// Runs `scontrol requeue JOB`; returns a one-line account ("scontrol requeue 42: ok" or why it failed).
std::string slurm_requeue(const std::string& job);

}  // namespace bilevel
