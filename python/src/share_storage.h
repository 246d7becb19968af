// Points a network parameter at a caller's tensor without copying: Tensor::set_data, a shallow copy of the
// tensor's metadata (the data is shared). Nothing is done when the parameter already views the same memory the
// same way, so calling it before every step costs a few comparisons. The estimator and the run's model (python/
// bilevel/model.py) call it before each use, so a tensor the caller moved or replaced is followed.
#pragma once

#include <torch/types.h>

namespace bilevel::python {

inline void share_storage(const torch::Tensor& param, const torch::Tensor& t) {
  if (param.is_same(t)) return;
  if (param.data_ptr() == t.data_ptr() && param.sizes() == t.sizes() && param.strides() == t.strides() &&
      param.dtype() == t.dtype() && param.device() == t.device())
    return;
  torch::NoGradGuard no_grad;
  const_cast<torch::Tensor&>(param).set_data(t.detach());
}

}  // namespace bilevel::python
