// The CUDA relaxation kernel (src/kernels/cuda/dense_relax.cu, reached through energy/fused_relaxation.h), which
// relaxes every example of a batch through all sweeps of one EP phase (Scellier & Bengio 2017) in one launch:
// - against the CPU kernel (cpu::dense_relax_rows through fused_relaxation on CPU copies of the same network,
//   input drive and starting states): states to ~1e-4 relative, sweeps run and last residual, for every output
//   nudge (none, StateMse with β > 0 and β < 0, ReadoutCrossEntropy, Clamp) and every activation kernel (identity,
//   clamp as relu / hard_sigmoid / hard_tanh, sigmoid, sigmoid4, tanh), at widths and batch sizes that are not
//   multiples of the block (256) or of a warp, from random (not zero) starts, with the scratch buffers (and the
//   clamped output state) poisoned with NaN and guard cells after every buffer that must stay untouched;
// - states too wide for shared memory (the global-memory fallback);
// - against LibTorch's own CUDA operators (FixedPointSolver's generic path), independent code;
// - the early stop per example: with tol > 0 rows stop at their own sweep, each row's result is bit-for-bit the
//   one it gets relaxed alone, the reported steps and residual are the maxima over rows; without tol a row stops
//   only on an exact fixed point (same bits after one more sweep, residual 0);
// - the current stream, and which problems the CUDA path accepts.
// Every test skips cleanly in a build without the CUDA kernels or on a machine without a CUDA device.
#include <gtest/gtest.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "bilevel/energy/fixed_point_solver.h"
#include "bilevel/energy/fused_relaxation.h"
#include "bilevel/kernels/config.h"
#include "kernel_test_util.h"
#include "oracle/ep_test_support.h"

#if BILEVEL_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

using namespace bilevel;
using torch::Tensor;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kGuard = -12345.0f;
constexpr int64_t kGuardCells = 16;
constexpr int64_t kIn = 23;  // input features (the input layer's drive is computed once, on the CPU)

// One network twice: in float32 on the CPU and on the GPU, with the same weights, and one batch prepared for
// each; the GPU batch gets the CPU batch's input drive and biases, so both kernels start from the same bits.
struct Twin {
  LayeredNet cpu_net{nullptr}, gpu_net{nullptr};
  std::unique_ptr<Objective> obj;
  std::unique_ptr<LayeredEnergy> cpu, gpu;
  EnergyBatch cpu_batch, gpu_batch;
  int64_t batch = 0;
};

std::unique_ptr<Twin> make_twin(std::vector<int64_t> hidden, int64_t classes, const std::string& act,
                                const std::string& loss, int64_t B, uint64_t seed, double gain) {
  auto t = std::make_unique<Twin>();
  t->cpu_net = ep_test::make_mlp(kIn, hidden, classes, act, loss, gain, seed);
  t->gpu_net = ep_test::make_mlp(kIn, hidden, classes, act, loss, gain, seed);
  t->cpu_net->to(torch::kFloat32);
  t->gpu_net->to(torch::kFloat32);
  t->gpu_net->to(torch::kCUDA);
  t->obj = make_objective(loss);
  t->cpu = std::make_unique<LayeredEnergy>(*t->cpu_net, Neuron::from_activation(t->cpu_net->rho()), *t->obj);
  t->gpu = std::make_unique<LayeredEnergy>(*t->gpu_net, Neuron::from_activation(t->gpu_net->rho()), *t->obj);
  torch::manual_seed(seed + 1);
  const Tensor x = torch::rand({B, kIn});
  const Tensor y = torch::randint(0, classes, {B}, torch::kLong);
  t->cpu->prepare(t->cpu_batch, x, y);
  t->gpu->prepare(t->gpu_batch, x.cuda(), y.cuda());
  t->gpu_batch.drive1 = t->cpu_batch.drive1.cuda();
  for (size_t l = 0; l < t->cpu_batch.vbias.size(); ++l)
    if (t->cpu_batch.vbias[l].defined()) t->gpu_batch.vbias[l] = t->cpu_batch.vbias[l].cuda();
  t->batch = B;
  return t;
}

// A state whose buffers are views into larger ones, followed by guard cells: s from `start` (CPU float32; NaN
// for the clamped output state, which the relaxation must overwrite with onehot first), scratch all NaN.
struct Guarded {
  EnergyState st;
  std::vector<Tensor> bufs;
  bool guards_intact() const {
    for (const Tensor& b : bufs)
      if (!b.narrow(0, b.numel() - kGuardCells, kGuardCells).eq(kGuard).all().item<bool>()) return false;
    return true;
  }
};

Tensor guarded_view(std::vector<Tensor>& bufs, at::IntArrayRef shape, torch::Device dev) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  Tensor buf = torch::full({n + kGuardCells}, kNaN, torch::dtype(torch::kFloat).device(dev));
  buf.narrow(0, n, kGuardCells).fill_(kGuard);
  bufs.push_back(buf);
  return buf.narrow(0, 0, n).view(shape);
}

Guarded make_state(const LayeredEnergy& energy, const EnergyBatch& batch, const std::vector<Tensor>& start,
                   bool poison_output, torch::Device dev) {
  Guarded g;
  energy.init_state(batch, g.st);
  for (size_t k = 0; k < g.st.s.size(); ++k) {
    g.st.s[k] = guarded_view(g.bufs, g.st.s[k].sizes(), dev);
    g.st.scratch[k] = guarded_view(g.bufs, g.st.scratch[k].sizes(), dev);
    if (!(poison_output && k + 1 == g.st.s.size())) g.st.s[k].copy_(start[k]);
  }
  return g;
}

// Random starting states inside the activations' ranges, [B, n_k] on the CPU.
std::vector<Tensor> random_start(const LayeredEnergy& energy, const EnergyBatch& batch, uint64_t seed) {
  EnergyState st;
  energy.init_state(batch, st);
  torch::manual_seed(seed);
  std::vector<Tensor> out;
  for (const Tensor& s : st.s) out.push_back((torch::rand(s.sizes()) * 0.8 + 0.1).to(torch::kFloat));
  return out;
}

// |a − b| <= atol + rtol |b| element-wise (a on any device, b the reference), no NaN anywhere.
void expect_close(const Tensor& a, const Tensor& b, double atol, double rtol, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const Tensor ac = a.to(torch::kCPU, torch::kFloat64), bc = b.to(torch::kCPU, torch::kFloat64);
  EXPECT_FALSE(ac.isnan().any().item<bool>()) << what << ": NaN in the result";
  const Tensor ok = (ac - bc).abs().le(atol + rtol * bc.abs());
  if (!ok.all().item<bool>()) {
    const Tensor bad = (~ok).nonzero()[0];
    const int64_t r = bad[0].item<int64_t>(), i = bad[1].item<int64_t>();
    ADD_FAILURE() << what << ": first mismatch at [" << r << ", " << i << "]: " << ac[r][i].item<double>()
                  << " vs reference " << bc[r][i].item<double>() << " (max |diff| "
                  << (ac - bc).abs().nan_to_num(0).max().item<double>() << ")";
  }
}

constexpr double kAtol = 2e-5, kRtol = 1e-4;

// Sweeps run (tol = 0): an example stops early only on an exact fixed point, so a run reports either all T
// sweeps or a zero residual. Where the reference still moves by more than rounding, both ran all T sweeps; where
// it has converged to rounding level, the two devices' roundings may reach an exact fixed point at different
// sweeps (or one of them a one-ulp cycle instead), so only the rule itself is checked.
void expect_steps(const SolveStats& got, const SolveStats& ref, int64_t T, const std::string& what) {
  EXPECT_TRUE(got.steps == T || got.residual == 0.0) << what << ": " << got.steps << " sweeps, residual "
                                                    << got.residual;
  if (ref.residual > 1e-6) EXPECT_EQ(got.steps, ref.steps) << what;
}

std::string nudge_name(const Nudge& n) {
  switch (n.kind) {
    case Nudge::Kind::None: return "free";
    case Nudge::Kind::Loss: return "loss β=" + std::to_string(n.beta);
    case Nudge::Kind::Clamp: return "clamp";
  }
  return "?";
}

// Relaxes the twin's CPU and GPU copies from the same start (T sweeps, no tol) and compares states, steps and
// residual.
void compare_with_cpu(const Twin& t, const Nudge& nudge, int64_t T, uint64_t seed, const std::string& what) {
  ASSERT_TRUE(fused_relaxation_supported(*t.cpu, t.cpu_batch, nudge)) << what;
  ASSERT_TRUE(fused_relaxation_supported(*t.gpu, t.gpu_batch, nudge)) << what;
  const std::vector<Tensor> start = random_start(*t.cpu, t.cpu_batch, seed);
  const bool clamp = nudge.kind == Nudge::Kind::Clamp;
  Guarded c = make_state(*t.cpu, t.cpu_batch, start, clamp, torch::kCPU);
  Guarded g = make_state(*t.gpu, t.gpu_batch, start, clamp, torch::kCUDA);
  const SolveStats cs = fused_relaxation(*t.cpu, t.cpu_batch, c.st, nudge, T, 0.0);
  const SolveStats gs = fused_relaxation(*t.gpu, t.gpu_batch, g.st, nudge, T, 0.0);
  for (size_t k = 0; k < c.st.s.size(); ++k)
    expect_close(g.st.s[k], c.st.s[k], kAtol, kRtol, what + ", state " + std::to_string(k + 1));
  EXPECT_TRUE(g.guards_intact()) << what << ": wrote past a buffer";
  EXPECT_NEAR(gs.residual, cs.residual, kAtol + kRtol * cs.residual) << what;
  expect_steps(gs, cs, T, what);
}

}  // namespace

TEST(CudaRelaxation, MatchesTheCpuKernelForEveryNudgeAndActivation) {
  REQUIRE_CUDA();
  struct Shape {
    std::vector<int64_t> hidden;
    int64_t classes;
  };
  // With mse the states are hidden + classes ({513, 10}, {300, 200, 10}); with cross-entropy the classes are a
  // read-out ({513} + 10 logits, {300, 200} + 10 logits).
  const std::vector<Shape> shapes = {{{513}, 10}, {{300, 200}, 10}, {{37, 45, 29}, 7}};
  const std::vector<std::string> acts = {"identity", "relu", "hard_sigmoid", "hard_tanh", "sigmoid", "sigmoid4",
                                         "tanh"};
  const std::vector<int64_t> batches = {1, 37, 50};
  int cases = 0;
  uint64_t seed = 100;
  for (const auto& sh : shapes)
    for (const auto& act : acts)
      for (const std::string loss : {"mse", "cross_entropy"})
        for (const Nudge nudge : {Nudge::none(), Nudge::loss(0.4), Nudge::loss(-0.3), Nudge::clamp()}) {
          if (nudge.kind == Nudge::Kind::Clamp && loss != "mse") continue;
          const int64_t B = batches[size_t(cases) % batches.size()];
          const double gain = act == "identity" ? 0.5 : 1.0;  // keep the linear dynamics bounded
          auto t = make_twin(sh.hidden, sh.classes, act, loss, B, ++seed, gain);
          std::string what = act + "/" + loss + "/" + nudge_name(nudge) + " B=" + std::to_string(B) + " widths";
          for (int64_t n : sh.hidden) what += " " + std::to_string(n);
          compare_with_cpu(*t, nudge, 10, ++seed, what);
          ++cases;
        }
  EXPECT_EQ(cases, 3 * 7 * 7);
}

TEST(CudaRelaxation, StatesBeyondSharedMemoryRelaxInGlobalMemory) {
  REQUIRE_CUDA();
  // 2 × 30008 floats per example do not fit in a block's shared memory (227 KiB on sm_90).
  for (const std::string loss : {"mse", "cross_entropy"})
    for (const Nudge nudge : {Nudge::none(), Nudge::loss(0.5)}) {
      auto t = make_twin({30001}, 7, "sigmoid4", loss, 3, 7, 1.0);
      compare_with_cpu(*t, nudge, 6, 8, "30001 units, " + loss + ", " + nudge_name(nudge));
    }
  auto t = make_twin({30001}, 7, "hard_sigmoid", "mse", 5, 9, 1.0);
  compare_with_cpu(*t, Nudge::clamp(), 6, 10, "30001 units, clamp");
}

TEST(CudaRelaxation, MatchesLibTorchsCudaOperators) {
  REQUIRE_CUDA();
  const FixedPointSolver fused(RelaxKernel::Fused), generic(RelaxKernel::Generic);
  for (const std::string act : {"sigmoid4", "hard_sigmoid", "tanh"})
    for (const std::string loss : {"mse", "cross_entropy"})
      for (const Nudge nudge : {Nudge::none(), Nudge::loss(0.4), Nudge::clamp()}) {
        if (nudge.kind == Nudge::Kind::Clamp && loss != "mse") continue;
        auto t = make_twin({300, 200}, 10, act, loss, 37, 21, 1.0);
        ASSERT_TRUE(use_fused_relaxation(RelaxKernel::Fused, *t->gpu, t->gpu_batch, nudge));
        const std::vector<Tensor> start = random_start(*t->cpu, t->cpu_batch, 22);
        const bool clamp = nudge.kind == Nudge::Kind::Clamp;
        Guarded a = make_state(*t->gpu, t->gpu_batch, start, clamp, torch::kCUDA);
        Guarded b = make_state(*t->gpu, t->gpu_batch, start, clamp, torch::kCUDA);
        const SolveStats sa = fused.solve(*t->gpu, t->gpu_batch, a.st, nudge, 10, 0.0);
        const SolveStats sb = generic.solve(*t->gpu, t->gpu_batch, b.st, nudge, 10, 0.0);
        const std::string what = act + "/" + loss + "/" + nudge_name(nudge) + ", fused vs LibTorch on the GPU";
        for (size_t k = 0; k < a.st.s.size(); ++k)
          expect_close(a.st.s[k], b.st.s[k], kAtol, kRtol, what + ", state " + std::to_string(k + 1));
        EXPECT_EQ(sb.steps, 10) << what;
        EXPECT_NEAR(sa.residual, sb.residual, kAtol + kRtol * sb.residual) << what;
        expect_steps(sa, sb, 10, what);
      }
}

namespace {

// Row r of `t`'s GPU (or CPU) batch as a batch of its own (the same input drive bits).
EnergyBatch row_batch(const EnergyBatch& b, int64_t r) {
  EnergyBatch one = b;
  one.x = b.x.narrow(0, r, 1);
  one.labels = b.labels.narrow(0, r, 1);
  one.onehot = b.onehot.narrow(0, r, 1);
  one.drive1 = b.drive1.narrow(0, r, 1);
  one.size = 1;
  return one;
}

std::vector<Tensor> row_start(const std::vector<Tensor>& start, int64_t r) {
  std::vector<Tensor> out;
  for (const Tensor& s : start) out.push_back(s.narrow(0, r, 1).contiguous());
  return out;
}

}  // namespace

TEST(CudaRelaxation, EarlyStoppingIsPerExample) {
  REQUIRE_CUDA();
  // A contractive network (small gain): rows cross tol at different sweeps.
  const int64_t B = 37, T = 500;
  const double tol = 1e-4;
  const Nudge nudge = Nudge::loss(0.5);
  auto t = make_twin({300, 45}, 10, "sigmoid4", "mse", B, 31, 0.5);
  const std::vector<Tensor> start = random_start(*t->cpu, t->cpu_batch, 32);
  Guarded c = make_state(*t->cpu, t->cpu_batch, start, false, torch::kCPU);
  Guarded g = make_state(*t->gpu, t->gpu_batch, start, false, torch::kCUDA);
  const SolveStats cs = fused_relaxation(*t->cpu, t->cpu_batch, c.st, nudge, T, tol);
  const SolveStats gs = fused_relaxation(*t->gpu, t->gpu_batch, g.st, nudge, T, tol);
  EXPECT_LT(gs.steps, T);
  EXPECT_LT(gs.residual, tol);
  EXPECT_LE(std::abs(gs.steps - cs.steps), 1) << "GPU " << gs.steps << " vs CPU " << cs.steps;
  // A row that crosses tol one sweep apart on the two devices differs by less than tol.
  for (size_t k = 0; k < c.st.s.size(); ++k)
    expect_close(g.st.s[k], c.st.s[k], 2 * tol, kRtol, "tol > 0, state " + std::to_string(k + 1));
  EXPECT_TRUE(g.guards_intact());

  // Each row relaxed alone: the same bits as in the batch (its stop does not depend on the other rows), and its
  // own sweeps within one of the CPU kernel's for that row; the batch reports the maxima over rows.
  int64_t fewest = T, most = 0;
  double largest = 0.0;
  for (int64_t r = 0; r < B; ++r) {
    const EnergyBatch gb = row_batch(t->gpu_batch, r), cb = row_batch(t->cpu_batch, r);
    Guarded gr = make_state(*t->gpu, gb, row_start(start, r), false, torch::kCUDA);
    Guarded cr = make_state(*t->cpu, cb, row_start(start, r), false, torch::kCPU);
    const SolveStats grs = fused_relaxation(*t->gpu, gb, gr.st, nudge, T, tol);
    const SolveStats crs = fused_relaxation(*t->cpu, cb, cr.st, nudge, T, tol);
    for (size_t k = 0; k < gr.st.s.size(); ++k)
      EXPECT_TRUE(torch::equal(gr.st.s[k][0], g.st.s[k][r])) << "row " << r << ", state " << k + 1;
    EXPECT_LE(std::abs(grs.steps - crs.steps), 1) << "row " << r;
    EXPECT_LT(grs.residual, tol) << "row " << r;
    fewest = std::min(fewest, grs.steps), most = std::max(most, grs.steps);
    largest = std::max(largest, grs.residual);
  }
  EXPECT_LT(fewest, most) << "every row stopped at the same sweep: the test does not exercise per-row stopping";
  EXPECT_EQ(gs.steps, most);
  EXPECT_EQ(gs.residual, largest);
}

TEST(CudaRelaxation, RowsStopOnlyAtExactFixedPoints) {
  REQUIRE_CUDA();
  // Without tol, a row that stops before max_steps reports residual 0 and holds the same bits after 400 and 401
  // sweeps (an exact fixed point of the float32 dynamics); rows that end in a one-ulp cycle run every sweep.
  // (On the CPU about one row in eight of this problem stops early.)
  const int64_t B = 200;
  const Nudge nudge = Nudge::loss(0.5);
  auto t = make_twin({45}, 10, "sigmoid4", "mse", B, 41, 0.2);
  const std::vector<Tensor> start = random_start(*t->cpu, t->cpu_batch, 42);
  int stopped = 0;
  for (int64_t r = 0; r < B; ++r) {
    const EnergyBatch gb = row_batch(t->gpu_batch, r);
    Guarded a = make_state(*t->gpu, gb, row_start(start, r), false, torch::kCUDA);
    Guarded b = make_state(*t->gpu, gb, row_start(start, r), false, torch::kCUDA);
    const SolveStats sa = fused_relaxation(*t->gpu, gb, a.st, nudge, 400, 0.0);
    const SolveStats sb = fused_relaxation(*t->gpu, gb, b.st, nudge, 401, 0.0);
    if (sa.residual == 0.0) {  // an exact fixed point: one more sweep allowed changes nothing
      stopped += sa.steps < 400;
      EXPECT_EQ(sb.steps, sa.steps) << "row " << r;
      EXPECT_EQ(sb.residual, 0.0) << "row " << r;
      for (size_t k = 0; k < a.st.s.size(); ++k) EXPECT_TRUE(torch::equal(a.st.s[k], b.st.s[k])) << "row " << r;
    } else {
      EXPECT_EQ(sa.steps, 400) << "row " << r << " stopped early with a nonzero change " << sa.residual;
      EXPECT_EQ(sb.steps, 401) << "row " << r;
    }
  }
  EXPECT_GT(stopped, 0);
}

TEST(CudaRelaxation, RunsOnTheCurrentStream) {
  REQUIRE_CUDA();
#if BILEVEL_WITH_CUDA
  auto t = make_twin({300, 200}, 10, "sigmoid4", "cross_entropy", 50, 51, 1.0);
  const std::vector<Tensor> start = random_start(*t->cpu, t->cpu_batch, 52);
  Guarded a = make_state(*t->gpu, t->gpu_batch, start, false, torch::kCUDA);
  const SolveStats sa = fused_relaxation(*t->gpu, t->gpu_batch, a.st, Nudge::loss(0.7), 12, 0.0);
  Guarded b = make_state(*t->gpu, t->gpu_batch, start, false, torch::kCUDA);
  torch::cuda::synchronize();
  c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool(false, 0);
  SolveStats sb;
  {
    c10::cuda::CUDAStreamGuard guard(stream);
    sb = fused_relaxation(*t->gpu, t->gpu_batch, b.st, Nudge::loss(0.7), 12, 0.0);
  }
  stream.synchronize();
  for (size_t k = 0; k < a.st.s.size(); ++k) EXPECT_TRUE(torch::equal(a.st.s[k], b.st.s[k])) << "state " << k + 1;
  EXPECT_EQ(sa.steps, sb.steps);
  EXPECT_EQ(sa.residual, sb.residual);
#endif
}

TEST(CudaRelaxation, WhichProblemsTheCudaPathTakes) {
  REQUIRE_CUDA();
  const Nudge none = Nudge::none(), loss = Nudge::loss(0.5);
  auto t = make_twin({64}, 10, "sigmoid4", "mse", 4, 61, 1.0);
  EXPECT_TRUE(fused_relaxation_supported(*t->gpu, t->gpu_batch, loss));
  EXPECT_TRUE(use_fused_relaxation(RelaxKernel::Auto, *t->gpu, t->gpu_batch, loss));
  EXPECT_FALSE(use_fused_relaxation(RelaxKernel::Generic, *t->gpu, t->gpu_batch, loss));
  // A target on another device than the network: not the fused path.
  EnergyBatch mixed = t->gpu_batch;
  mixed.onehot = mixed.onehot.cpu();
  EXPECT_FALSE(fused_relaxation_supported(*t->gpu, mixed, loss));
  EXPECT_TRUE(fused_relaxation_supported(*t->gpu, mixed, none));  // the free phase reads no target
  // float64 on the GPU stays on LibTorch's operators.
  auto f64 = make_twin({16}, 4, "sigmoid4", "mse", 4, 62, 1.0);
  f64->gpu_net->to(torch::kFloat64);
  f64->gpu->prepare(f64->gpu_batch, torch::rand({4, kIn}).cuda(), torch::randint(0, 4, {4}, torch::kLong).cuda());
  EXPECT_FALSE(fused_relaxation_supported(*f64->gpu, f64->gpu_batch, none));
  // More states than the kernel's argument holds (16).
  auto deep = make_twin(std::vector<int64_t>(16, 5), 3, "sigmoid4", "mse", 2, 63, 1.0);
  EXPECT_EQ(deep->gpu->num_states(), 17);
  EXPECT_FALSE(fused_relaxation_supported(*deep->gpu, deep->gpu_batch, none));
  EXPECT_TRUE(fused_relaxation_supported(*deep->cpu, deep->cpu_batch, none));
}
