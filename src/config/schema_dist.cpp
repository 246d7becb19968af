// Config keys of scaling out: data-parallel training (dist.*, bilevel/dist/), preemption and positional
// checkpoints inside an epoch (bilevel/run/preemption.h, bilevel/run/checkpoint.h).
#include "bilevel/config/schema.h"

namespace bilevel {

void add_dist_keys(Schema& s) {
  using V = ValueType;
  s.key("dist.backend", V::String, "auto",
      "Data-parallel collectives when started as one rank of several (torchrun, srun, --nproc): gloo (CPU) for "
      "everything; auto = gloo, except that the per-batch gradient allreduce goes through shared memory when every "
      "rank is on one host; nccl is refused with a named error (not built: data parallelism is CPU-only so far)")
      .choices = {"auto", "gloo", "nccl"};
  s.key("dist.timeout", V::Float, "300",
      "Seconds a rank waits for the others (rendezvous, every collective) before the run fails")
      .min = 1;
  s.key("checkpoint.every_batches", V::Int, "0",
      "Also write a positional checkpoint every N batches inside an epoch (0 = only at epoch ends); only the "
      "newest positional checkpoint is kept")
      .min = 0;
  s.key("train.preempt_signal", V::String, "USR2",
      "Signal that preempts the run (as SIGTERM does): finish the batch, checkpoint the position, exit 75; under "
      "Slurm, also `scontrol requeue` the job (none = SIGTERM only)")
      .choices = {"USR2", "USR1", "none"};
}

}  // namespace bilevel
