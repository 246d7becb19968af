// `bilevel train|resume --nproc N ...`: starts N ranks of the same command on this machine, as torchrun would
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1, a free MASTER_PORT, and
// BILEVEL_LAUNCHER=nproc), each with OMP_NUM_THREADS = the CPUs available / N unless set. Rank 0 prints the run
// directory. SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 are passed on to every rank (so preemption and Ctrl-C work as
// for one process). When a rank fails, the others get `grace` to notice (their next collective fails) and are
// then killed. Returns the exit code: 0 when every rank succeeded, else rank 0's code when it failed, else the
// first failing rank's (a rank killed by a signal counts as 128 + the signal).
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace bilevel {

int launch_local_ranks(int nproc, const std::vector<std::string>& command,
                       std::chrono::milliseconds grace = std::chrono::seconds(30));

// A TCP port on 127.0.0.1 that nothing listens on now (the kernel's choice for port 0).
int free_loopback_port();

// Removes "--nproc N" from `args` and returns N (0 when absent). Throws UserError naming --nproc when N is not
// a positive integer.
int take_nproc(std::vector<std::string>& args);

}  // namespace bilevel
