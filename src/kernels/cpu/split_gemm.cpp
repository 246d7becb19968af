#include "bilevel/kernels/cpu/split_gemm.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>

namespace bilevel::kernels::cpu {

using torch::Tensor;

namespace {

// How many blocks to cut out into: one per thread, or none (1) when splitting would not pay.
int64_t blocks_for(const Tensor& out, const Tensor& a, const Tensor& b) {
  if (!out.device().is_cpu() || out.scalar_type() != torch::kFloat32 || at::in_parallel_region()) return 1;
  const int64_t threads = at::get_num_threads();
  if (threads < 2) return 1;
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  if (M * K * N < kSplitGemmMinMacs) return 1;
  return threads;
}

// fn(out block, a block, b block) on each block. Each thread packs its block of one operand and all of the other
// for the BLAS kernel, so the cut goes through the larger operand: rows of out (and a) when a [M, K] is larger than
// b [K, N], i.e. M ≥ N, columns of out (and b) otherwise. (EP's input drive, [50, 784]·[784, 512]: columns, so the
// weight matrix is packed once, half by each thread, instead of whole by both.)
template <class Fn>
void for_blocks(const Tensor& out, const Tensor& a, const Tensor& b, int64_t blocks, Fn fn) {
  const int64_t M = out.size(0), N = out.size(1);
  const bool by_rows = M >= N;
  const int64_t extent = by_rows ? M : N;
  blocks = std::min(blocks, extent);
  const int64_t step = (extent + blocks - 1) / blocks;
  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
    torch::NoGradGuard no_grad;  // grad mode is per thread, and a pool thread's is on: these are plain products
    for (int64_t i = first; i < last; ++i) {
      const int64_t lo = i * step, len = std::min(extent, lo + step) - lo;
      if (len <= 0) continue;
      if (by_rows) fn(out.narrow(0, lo, len), a.narrow(0, lo, len), b, by_rows, lo, len);
      else fn(out.narrow(1, lo, len), a, b.narrow(1, lo, len), by_rows, lo, len);
    }
  });
}

}  // namespace

void split_addmm(Tensor& out, const Tensor& a, const Tensor& b, double beta, double alpha) {
  const int64_t blocks = blocks_for(out, a, b);
  if (blocks == 1) {
    at::addmm_out(out, out, a, b, beta, alpha);
    return;
  }
  for_blocks(out, a, b, blocks, [&](Tensor o, const Tensor& ab, const Tensor& bb, bool, int64_t, int64_t) {
    at::addmm_out(o, o, ab, bb, beta, alpha);
  });
}

void split_addmm(Tensor& out, const Tensor& self, const Tensor& a, const Tensor& b, double alpha) {
  const int64_t blocks = blocks_for(out, a, b);
  if (blocks == 1) {
    at::addmm_out(out, self, a, b, 1.0, alpha);
    return;
  }
  // self as out's shape (a broadcast view, no copy), cut like out.
  const Tensor s = self.expand({out.size(0), out.size(1)});
  for_blocks(out, a, b, blocks, [&](Tensor o, const Tensor& ab, const Tensor& bb, bool by_rows, int64_t lo,
                                    int64_t len) {
    at::addmm_out(o, s.narrow(by_rows ? 0 : 1, lo, len), ab, bb, 1.0, alpha);
  });
}

}  // namespace bilevel::kernels::cpu
