// The products split over LibTorch's threads (kernels/cpu/split_gemm.h, nn/linear.h) against a float64 reference,
// and the build fact they rest on: our own at::parallel_for calls really run on several threads.
#include <gtest/gtest.h>
#include <torch/types.h>
#include <torch/autograd.h>
#include <torch/utils.h>

#include <ATen/Parallel.h>

#include <array>
#include <limits>
#include <mutex>
#include <set>
#include <vector>

#include "bilevel/kernels/cpu/split_gemm.h"
#include "bilevel/nn/linear.h"

using bilevel::kernels::cpu::split_addmm;
using torch::Tensor;

namespace {

// Restores LibTorch's thread count at the end of a scope.
struct ThreadsGuard {
  int before = torch::get_num_threads();
  explicit ThreadsGuard(int n) { torch::set_num_threads(n); }
  ~ThreadsGuard() { torch::set_num_threads(before); }
};

int64_t g_seed = 77;
Tensor rnd(std::vector<int64_t> shape) {
  torch::manual_seed(++g_seed);
  return torch::randn(shape);
}

// max |x − y| / (1 + max |y|), in float64.
double rel_err(const Tensor& x, const Tensor& y) {
  const Tensor yd = y.to(torch::kFloat64);
  return (x.to(torch::kFloat64) - yd).abs().max().item<double>() / (1.0 + yd.abs().max().item<double>());
}

}  // namespace

// A project compiled without OpenMP flags ignores the pragma inside LibTorch's inline at::parallel_for and runs
// every one of our parallel loops on one thread (cmake/TorchOpenMP.cmake). This fails if that ever comes back.
TEST(SplitGemm, OurParallelForRunsOnSeveralThreads) {
#ifndef _OPENMP
  GTEST_SKIP() << "built without OpenMP (a clang build: cmake/TorchOpenMP.cmake)";
#endif
  ThreadsGuard threads(2);
  std::mutex m;
  std::set<int> seen;
  at::parallel_for(0, 64, 1, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(m);
    seen.insert(at::get_thread_num());
  });
  EXPECT_EQ(seen.size(), 2u);
}

TEST(SplitGemm, EqualsTheFloat64ProductForEveryCutAndThreadCount) {
  // (M, K, N): rows cut (M ≥ N), columns cut (M < N), odd sizes, fewer rows than threads, and one too small to cut.
  const std::vector<std::array<int64_t, 3>> shapes = {
      {50, 784, 512}, {513, 50, 131}, {3, 997, 1001}, {257, 255, 7}, {1, 4099, 300}, {5, 6, 7}};
  for (int threads : {1, 2, 3}) {
    ThreadsGuard guard(threads);
    for (const auto& [M, K, N] : shapes) {
      for (double beta : {0.0, 1.0, 0.5}) {
        const Tensor a = rnd({M, K}), b = rnd({K, N}), before = rnd({M, N});
        // out = beta·out + alpha·a b; with beta = 0 the previous contents (NaN here) must not leak in.
        Tensor out = beta == 0.0 ? torch::full({M, N}, std::numeric_limits<float>::quiet_NaN()) : before.clone();
        split_addmm(out, a, b, beta, -0.75);
        const Tensor ref = (beta == 0.0 ? torch::zeros({M, N}, torch::kFloat64) : beta * before.to(torch::kFloat64)) -
                           0.75 * a.to(torch::kFloat64).mm(b.to(torch::kFloat64));
        EXPECT_LT(rel_err(out, ref), 1e-5) << M << "x" << K << "x" << N << " beta " << beta << " threads " << threads;
      }
      // The bias form, with a transposed (strided) right operand and output columns as views.
      const Tensor x = rnd({M, K}), w = rnd({N, K}), bias = rnd({N});
      Tensor out = torch::full({M, N}, std::numeric_limits<float>::quiet_NaN());
      split_addmm(out, bias, x, w.t(), 2.0);
      const Tensor ref = bias.to(torch::kFloat64) + 2.0 * x.to(torch::kFloat64).mm(w.to(torch::kFloat64).t());
      EXPECT_LT(rel_err(out, ref), 1e-5) << M << "x" << K << "x" << N << " threads " << threads;
    }
  }
}

TEST(SplitGemm, LinearMatchesAddmmAndItsGradients) {
  ThreadsGuard guard(2);
  for (const auto& [B, in, out] : std::vector<std::array<int64_t, 3>>{{50, 784, 512}, {33, 129, 10}, {700, 513, 257}}) {
    const Tensor x0 = rnd({B, in}), w0 = rnd({out, in}) * 0.05, b0 = rnd({out}), up = rnd({B, out});
    auto run = [&](bool ours) {
      Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
      Tensor y = ours ? bilevel::linear(x, w, b) : torch::addmm(b, x, w.t());
      (y * up).sum().backward();
      return std::vector<Tensor>{y.detach(), x.grad(), w.grad(), b.grad()};
    };
    const auto mine = run(true), ref = run(false);
    for (size_t i = 0; i < mine.size(); ++i) EXPECT_LT(rel_err(mine[i], ref[i]), 1e-5) << "output " << i << ", " << B;
  }
}

TEST(SplitGemm, LinearSupportsDoubleBackward) {
  ThreadsGuard guard(2);
  const Tensor x0 = rnd({64, 300}), w0 = rnd({200, 300}) * 0.05, b0 = rnd({200});
  auto hvp = [&](bool ours) {
    Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(), b = b0.clone();
    Tensor y = ours ? bilevel::linear(x, w, b) : torch::addmm(b, x, w.t());
    Tensor gx = torch::autograd::grad({y.tanh().sum()}, {x}, {}, true, true)[0];
    return torch::autograd::grad({gx.pow(2).sum()}, {w})[0];
  };
  EXPECT_LT(rel_err(hvp(true), hvp(false)), 1e-5);
}
