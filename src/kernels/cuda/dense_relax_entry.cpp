// The LibTorch-facing half of the CUDA relaxation kernel (src/kernels/cuda/dense_relax.cu): copies a
// DenseRelaxProblem whose pointers are on a CUDA device into the kernel's plain argument
// (bilevel/kernels/dense_relax_args.h), launches it on LibTorch's current stream of that device, and reduces the
// per-example sweeps run and last changes to their maxima, the CPU kernel's RelaxStats (one synchronisation).
//
// The kernel relaxes every example through all sweeps of one phase (Scellier & Bengio 2017's free or nudged
// phase) in one launch, where LibTorch's path launches T × S × ~6 operators; the dynamics and the per-example
// early stop (max-abs change < tol, or exactly 0) are those of bilevel/kernels/cpu/dense_relax.h.
// Compiled only when LibTorch has CUDA (cmake/Cuda.cmake, BILEVEL_WITH_CUDA).
#include <torch/torch.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "../cuda_entries.h"
#include "bilevel/kernels/cuda/launch.h"
#include "bilevel/kernels/dense_relax_args.h"

namespace bilevel::kernels::cuda {

::bilevel::cpu::RelaxStats dense_relax(const ::bilevel::cpu::DenseRelaxProblem& p, float* const* state,
                                       float* const* scratch, torch::Device device) {
  const int64_t S = int64_t(p.width.size());
  if (S < 1 || S > kMaxRelaxStates)
    throw std::invalid_argument("bilevel::kernels::dense_relax: " + std::to_string(S) +
                                " states; the CUDA kernel takes 1 to " + std::to_string(kMaxRelaxStates));
  if (int64_t(p.weight.size()) != S - 1 || int64_t(p.vbias.size()) != S)
    throw std::invalid_argument("bilevel::kernels::dense_relax: expected " + std::to_string(S - 1) +
                                " coupling weights and " + std::to_string(S) + " biases");
  if (!device.is_cuda())
    throw std::invalid_argument("bilevel::kernels::dense_relax: " + device.str() + " is not a CUDA device");
  ::bilevel::cpu::RelaxStats stats;
  if (p.batch <= 0) return stats;

  DenseRelaxArgs a;
  a.batch = p.batch;
  a.states = int32_t(S);
  for (int64_t k = 0; k < S; ++k) {
    a.width[k] = p.width[size_t(k)];
    a.vbias[k] = p.vbias[size_t(k)];
    a.state[k] = state[k];
    a.scratch[k] = scratch[k];
    if (k + 1 < S) a.weight[k] = p.weight[size_t(k)];
  }
  a.drive1 = p.drive1;
  a.scale = p.scale;
  a.act = p.act;
  a.lo = p.lo, a.hi = p.hi;
  a.nudge = p.nudge;
  a.nudge_scale = p.nudge_scale;
  a.onehot = p.onehot;
  a.readout = p.readout;
  a.readout_bias = p.readout_bias;
  a.classes = p.classes;
  a.max_steps = p.max_steps;
  a.tol = p.tol;

  const auto on_device = torch::TensorOptions().device(device);
  torch::Tensor steps = torch::empty({p.batch}, on_device.dtype(torch::kLong));
  torch::Tensor residual = torch::empty({p.batch}, on_device.dtype(torch::kFloat));
  a.row_steps = steps.data_ptr<int64_t>();
  a.row_residual = residual.data_ptr<float>();
  launch_on(device, "dense_relax", [&](cudaStream_t stream) { return launch_dense_relax(a, stream); });

  // max() reports NaN when an example's last change was NaN, as the LibTorch path's residual does.
  const torch::Tensor maxima =
      torch::stack({residual.max().to(torch::kDouble), steps.max().to(torch::kDouble)}).cpu();
  const double* m = maxima.data_ptr<double>();
  stats.residual = float(m[0]);
  stats.steps = int64_t(m[1]);
  const torch::Tensor settled = p.tol > 0.0f ? residual.lt(p.tol) : residual.eq(0.0f);
  stats.at_limit = (steps.ge(p.max_steps) & settled.logical_not()).sum().item<int64_t>();
  if (p.row_steps) {
    const torch::Tensor host = steps.cpu();
    std::copy(host.data_ptr<int64_t>(), host.data_ptr<int64_t>() + p.batch, p.row_steps);
  }
  return stats;
}

}  // namespace bilevel::kernels::cuda
