// Matrix products split over LibTorch's intra-op threads, each block one single-threaded BLAS call.
//
// Why: a process has two CPU thread pools, LibTorch's (OpenMP: element-wise loops, our kernels, oneDNN's
// convolutions) and the BLAS's own (OpenBLAS: every GEMM). On a small machine they take turns on the same cores,
// and OpenBLAS's idle workers spin in sched_yield for ~2^28 cycles after each product, stealing the core an
// OpenMP worker needs next (measured on the 2-core VM: ~25% of all cycles in the scheduler for `ep`, and two
// threads no faster than one). bilevel therefore runs OpenBLAS with one thread (bilevel/util/threads.h) and gets
// the products' parallelism here, from the one pool: out's rows (or columns, when there are fewer rows than
// threads' worth) are cut into one contiguous block per thread, and each thread computes its block with the same
// BLAS call on the same operands. The values are those of the unsplit product up to summation order (OpenBLAS picks
// its kernel by the block's size, so they may differ in the last bits between thread counts).
//
// Products too small to pay for waking a thread, non-CPU or non-float tensors, and calls from inside a parallel
// region run as one at::addmm_out.
#pragma once

#include <torch/types.h>

namespace bilevel::kernels::cpu {

// out = beta·out + alpha·(a @ b), for 2-D a [M, K], b [K, N], out [M, N] (any strides at::addmm_out accepts).
// With beta = 0, out's previous values are ignored (NaN included).
void split_addmm(torch::Tensor& out, const torch::Tensor& a, const torch::Tensor& b, double beta, double alpha);

// out = self + alpha·(a @ b) (self broadcast over out's rows, as at::addmm_out's bias).
void split_addmm(torch::Tensor& out, const torch::Tensor& self, const torch::Tensor& a, const torch::Tensor& b,
                 double alpha);

// Multiply-adds below which a product runs unsplit (about 20 µs of one core).
constexpr int64_t kSplitGemmMinMacs = 1 << 19;

}  // namespace bilevel::kernels::cpu
