// Data-parallel training over torch.distributed's c10d: every rank holds the whole model, trains on its shard of
// each global batch (data/batches.h) and, after each rule's train_step, the gradients of every parameter are
// averaged over the ranks in one flattened allreduce (Gloo has no AVG: SUM, then divide by the world size), so the
// optimizer and the quantization's post-step see the same gradient everywhere and the ranks stay identical.
// Rank 0 hosts the TCPStore rendezvous at MASTER_ADDR:MASTER_PORT, owns the run directory and broadcasts the
// starting state (model, quantization state, optimizer, progress) as one checkpoint archive. The stop flags
// (Ctrl-C, preemption) ride in the gradient buffer, so all ranks stop after the same batch.
// Built only when LibTorch has Gloo (find_package(Torch) defines USE_C10D_GLOO) and its headers (libgloo-dev) are
// present; otherwise join() fails with a message saying so.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/dist/world.h"

namespace bilevel {

// Whether this build has the Gloo backend.
bool gloo_available();

// Checks a config against a world of `world_size` ranks before anything is started or written: the batch size
// divides into equal per-rank batches, the backend exists in this build, and nothing in the config depends on the
// rank's shard. Throws ConfigError naming the key.
void validate_world(const ExperimentConfig& cfg, int world_size);

// Stop flags agreed by every rank (see Trainer).
enum StopFlag : unsigned { kStopInterrupt = 1, kStopPreempt = 2 };

class DataParallel {
 public:
  // Meets the other ranks (rank 0 hosts the store), checks that every rank has the same config hash, and builds
  // the process group; cfg's dist.backend and dist.timeout apply. Throws UserError naming the problem (an
  // unreachable master, a rank that did not join in time, a different config) before anything is written.
  // `params` are the model's parameters: when every rank is on one host and dist.backend is auto, their gradients
  // are averaged through a shared-memory segment sized for them (dist/shm_allreduce.h) rather than Gloo's
  // loopback sockets; if the segment cannot be made (e.g. /dev/shm full), a warning says so and Gloo is used.
  static std::shared_ptr<DataParallel> join(const World& world, const ExperimentConfig& cfg,
                                            const std::vector<torch::Tensor>& params = {});
  ~DataParallel();

  int rank() const { return world_.rank; }
  int size() const { return world_.size; }
  const World& world() const { return world_; }
  const std::vector<std::string>& hosts() const { return hosts_; }  // every rank's host name, by rank
  std::string backend() const { return "gloo"; }
  // How the gradients travel: "shm" (one host, shared memory) or "gloo".
  std::string gradient_transport() const;

  // Averages the gradients of `params` (those with a defined grad) over the ranks in place, in one allreduce, and
  // returns the OR over the ranks of `stop_flags`.
  unsigned average_gradients(const std::vector<torch::Tensor>& params, unsigned stop_flags);
  // The OR over the ranks of `stop_flags` (one small collective).
  unsigned agree(unsigned stop_flags);
  // What the last average_gradients or agree returned: the same on every rank.
  unsigned agreed_flags() const { return agreed_; }
  // Σ over the ranks, in place.
  void allreduce_sum(std::vector<double>& values);
  // Rank 0's bytes on every rank.
  void broadcast_bytes(std::string& bytes);

 private:
  DataParallel() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  World world_;
  std::vector<std::string> hosts_;
  unsigned agreed_ = 0;
};

}  // namespace bilevel
