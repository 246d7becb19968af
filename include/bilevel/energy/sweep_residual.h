// The residual of one solver sweep, max over its states of max |s_new − s_old|, gathered without reading anything
// on the host until the sweep is done: each state's residual stays a 0-dimensional tensor where it was computed
// (on a GPU: no synchronisation per state), and read() takes their maximum and reads it once. A sweep that
// measures thus costs one host read, not one per state (the inner solvers' tol > 0 path, inner_solver.h).
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <vector>

namespace bilevel {

class SweepResidual {
 public:
  // One state's residual: a 0-dimensional tensor (undefined: nothing measured, ignored).
  void add(const torch::Tensor& r);
  // The maximum of what was added (NaN when any is NaN; 0 when nothing was): one host read. Clears the sweep.
  double read();

  // Host reads made by read() in this process so far (a counter for tests and benchmarks).
  static int64_t host_reads();

 private:
  std::vector<torch::Tensor> parts_;
};

}  // namespace bilevel
