#include "bilevel/util/threads.h"

#include <dlfcn.h>
#include <torch/utils.h>

namespace bilevel {

bool set_cpu_threads(int threads) {
  torch::set_num_threads(threads);
  // Looked up at run time: LibTorch builds that use MKL (or a BLAS without its own pool) do not export it.
  using SetThreads = void (*)(int);
  if (auto* f = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    f(threads);
    return true;
  }
  return false;
}

}  // namespace bilevel
