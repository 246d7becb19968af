// Which rank of how many this process is, read from the environment its launcher set:
//   torchrun --no-python      RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (and TORCHELASTIC_*)
//   srun                      SLURM_PROCID, SLURM_STEP_NUM_TASKS (else SLURM_NTASKS), SLURM_LOCALID; the master is
//                             the first host of SLURM_STEP_NODELIST (else SLURM_JOB_NODELIST), port MASTER_PORT or
//                             one derived from the job id
//   bilevel train --nproc N   the torchrun variables on loopback, and BILEVEL_LAUNCHER=nproc
// A world of one (no launcher, or a launcher with one task) is not distributed.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace bilevel {

struct World {
  int rank = 0;
  int size = 1;
  int local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  std::string launcher;  // torchrun | srun | nproc
};

// The environment as a lookup (tests pass their own).
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();

// The world the launcher described, or nullopt when this process runs alone. Throws UserError naming the
// variable when the environment is inconsistent (a rank outside the world, a missing master, a bad port).
std::optional<World> detect_world(const EnvLookup& env = process_env());

// The hosts of a Slurm node list, in order: "node[01-03,07],gpu5" → node01 node02 node03 node07 gpu5 (leading
// zeros kept). Throws UserError on a malformed list.
std::vector<std::string> expand_slurm_nodelist(const std::string& list);

}  // namespace bilevel
