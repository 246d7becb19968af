// What a run changes in the process that a Python session would not expect to change: LibTorch's intra-op
// and OpenBLAS's thread counts (train.threads, util/threads.h) and the global CPU generator (seeded from the config). Restored when the guard
// ends, so that bilevel.train() leaves torch.get_num_threads() and torch's random stream as they were. And what
// the session may have changed that a run must not see: the default dtype (torch.set_default_dtype(float64)),
// float32 inside the guard as in the command.
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <c10/core/DefaultDtype.h>

#include "bilevel/util/threads.h"

namespace bilevel::python {

class RuntimeGuard {
 public:
  RuntimeGuard() : threads_(at::get_num_threads()), blas_threads_(blas_threads()), dtype_(c10::get_default_dtype()) {
    c10::set_default_dtype(caffe2::TypeMeta::Make<float>());
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    rng_ = gen.get_state();
  }
  ~RuntimeGuard() {
    c10::set_default_dtype(dtype_);
    if (at::get_num_threads() != threads_) at::set_num_threads(threads_);
    if (blas_threads_ > 0 && blas_threads() != blas_threads_) set_blas_threads(blas_threads_);
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng_);
  }
  RuntimeGuard(const RuntimeGuard&) = delete;
  RuntimeGuard& operator=(const RuntimeGuard&) = delete;

 private:
  int threads_;
  int blas_threads_;
  caffe2::TypeMeta dtype_;
  at::Tensor rng_;
};

}  // namespace bilevel::python
