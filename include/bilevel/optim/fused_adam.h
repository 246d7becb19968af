// Adam in one pass over each parameter (the update of bilevel/kernels/adam_element.h), where LibTorch's
// torch::optim::Adam issues eight operator passes per tensor, each a full read and write of it. Options, per-parameter
// state and serialization are torch::optim::Adam's own, so checkpoints are interchangeable between the two.
//
// A parameter may be given a fused step of its own (fuse()): the quantization's latent weights, whose gradient is
// computed from the weights' gradient and whose step clips and re-quantizes in the same pass (WeightSolver::
// fused_adam_step). Such steps run after every other parameter of the step, since they may read one (a learned scale).
// amsgrad, and parameters that are not contiguous float32 CPU tensors, take LibTorch's operator path (same formula).
#pragma once

#include <torch/optim/adam.h>

#include <functional>
#include <unordered_map>

#include "bilevel/kernels/adam_element.h"

namespace bilevel {

class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  // A parameter's own step, given this step's coefficients and its first and second moments (m, v).
  using ParamStep = std::function<void(const kernels::AdamElement&, const torch::Tensor& m, const torch::Tensor& v)>;

  // From now on `param` is stepped by `step` whether or not it has a gradient.
  void fuse(const torch::Tensor& param, ParamStep step);
  torch::Tensor step(LossClosure closure = nullptr) override;

 private:
  // The parameter's state, created (zero moments, step 0) as torch::optim::Adam creates it.
  torch::optim::AdamParamState& state_of(const torch::Tensor& p);
  std::unordered_map<const void*, ParamStep> fused_;
};

}  // namespace bilevel
