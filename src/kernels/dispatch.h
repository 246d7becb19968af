// Internal: how an element-wise entry runs its work: the CPU twin in chunks over LibTorch's thread pool, or the
// CUDA launcher on the current stream of the tensors' device (never called in a build without the kernels, whose
// check_tensors throws first for CUDA tensors).
#pragma once

#include <ATen/Parallel.h>
#include <torch/types.h>

#include "bilevel/kernels/config.h"
#include "check_tensors.h"
#include "cuda_entries.h"

#if BILEVEL_WITH_CUDA
#include "bilevel/kernels/cuda/launch.h"
#endif

namespace bilevel::kernels {

// Runs cpu_part(begin, end) over chunks of `n` items (grain: items per task) on LibTorch's threads, or
// cuda_part(stream) on `like`'s CUDA device.
template <class Cpu, class Cuda>
void dispatch_n(const char* entry, const torch::Tensor& like, int64_t n, int64_t grain, Cpu&& cpu_part,
                Cuda&& cuda_part) {
  if (like.is_cuda()) {
#if BILEVEL_WITH_CUDA
    cuda::launch_on(like.device(), entry, cuda_part);
#else
    (void)cuda_part;
#endif
    return;
  }
  at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) { cpu_part(b, e); });
}

}  // namespace bilevel::kernels

// The CUDA half of an entry: a call of bilevel/kernels/cuda/launch.h on `stream` (never called without CUDA).
#if BILEVEL_WITH_CUDA
#define BILEVEL_CUDA_CALL(call) [&](cudaStream_t stream) { return ::bilevel::kernels::cuda::call; }
#else
#define BILEVEL_CUDA_CALL(call) [](auto) { return 0; }
#endif
