// Launch geometry shared by the element-wise kernels: a grid-stride loop over n elements.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>

namespace bilevel::kernels::cuda {

constexpr int kBlock = 256;

// Enough blocks to cover n once, capped (the grid-stride loop covers the rest); at least one.
inline unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(blocks, 65535)));
}

}  // namespace bilevel::kernels::cuda
