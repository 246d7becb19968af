// One knob for every CPU thread pool a training step touches.
//
// LibTorch's intra-op pool (OpenMP) is set by torch::set_num_threads, but the BLAS it calls may keep its own
// pool: Debian's OpenBLAS (pthread build) starts one thread per core whatever LibTorch is told, so "one thread"
// used to mean one LibTorch thread plus a second OpenBLAS thread spinning in sched_yield on small GEMMs.
#pragma once

namespace bilevel {

// Sets LibTorch's intra-op threads and, when the process has OpenBLAS loaded, OpenBLAS's threads to `threads`.
// Returns whether a BLAS pool was found and set.
bool set_cpu_threads(int threads);

}  // namespace bilevel
