// The compact relaxation (energy/compact_relaxation.h) and its fused row epilogue (kernels::state_update_rows_):
// - the epilogue against LibTorch's own operators (independent code), float32 and float64, every energy neuron,
//   fresh random inputs, row lengths that are not multiples of the vector width or the CUDA block, poisoned
//   outputs and NaN propagation; on a GPU (skipped without one) the CUDA kernel against its CPU twin;
// - whole relaxations against the whole-batch LibTorch path, for every schedule (fixed_point: Jacobi, layerwise:
//   even/odd and top-down), deep and wide-ish MLPs of odd sizes, a conv net, every nudge kind, float32 and float64;
// - examples that converge at different sweeps: each stops at its own exact fixed point (one more sweep leaves
//   it where it is) and still equals the whole-batch result;
// - the per-example tolerance, the sweep histogram and the multiply-add counts.
#include <gtest/gtest.h>

#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "bilevel/energy/compact_relaxation.h"
#include "bilevel/energy/fixed_point_solver.h"
#include "bilevel/energy/layerwise_solver.h"
#include "bilevel/energy/sweep_stats.h"
#include "bilevel/kernels/fused_ops.h"
#include "kernel_test_util.h"
#include "oracle/ep_test_support.h"

using namespace bilevel;
using torch::Tensor;
namespace K = bilevel::kernels;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// The unfused reference: h by Neuron::finish_ (LibTorch's operators), the change per row by at::amax.
Tensor reference_rows(const Neuron& neuron, Tensor& v, const Tensor& old, const Tensor& change) {
  neuron.finish_(v);
  return at::maximum(change, (v - old).abs().flatten(1).amax(1));
}

struct Net {
  LayeredNet net;
  std::unique_ptr<Objective> obj;
  std::unique_ptr<LayeredEnergy> energy;
  EnergyBatch batch;
};

Net make(LayeredNet net, const std::string& loss, torch::ScalarType dtype, int64_t B, uint64_t seed) {
  Net n{std::move(net), make_objective(loss), nullptr, {}};
  n.net->to(dtype);
  n.energy = std::make_unique<LayeredEnergy>(*n.net, Neuron::from_activation(n.net->rho()), *n.obj);
  torch::manual_seed(seed);
  const auto& in = n.net->layer(0).in_shape;
  std::vector<int64_t> shape{B};
  shape.insert(shape.end(), in.begin(), in.end());
  const int64_t classes = n.net->layer(n.net->num_layers() - 1).out_shape[0];
  n.energy->prepare(n.batch, torch::rand(shape), torch::randint(0, classes, {B}, torch::kLong));
  return n;
}

EnergyState random_start(const Net& n, uint64_t seed) { return ep_test::random_start(*n.energy, n.batch, seed); }
using ep_test::max_state_diff;

}  // namespace

TEST(RowEpilogue, MatchesLibTorchForEveryNeuron) {
  for (const std::string act : {"sigmoid4", "sigmoid", "tanh", "hard_sigmoid", "relu", "hard_tanh", "identity",
                                "softplus"}) {
    const Neuron neuron = Neuron::from_activation(activation(act));
    for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
      for (int64_t n : {1, 7, 9, 33, 257, 1001}) {
        const int64_t rows = 5;
        torch::manual_seed(uint64_t(n) * 7 + 3);
        Tensor v0 = (torch::randn({rows, n}, torch::kFloat64) * 3).to(dtype);
        Tensor old = torch::rand({rows, n}, torch::kFloat64).to(dtype);
        // Row 2 already holds the kernel's own h(v): its change must come out exactly 0.
        Tensor once = v0.clone(), scratch_change = torch::zeros({rows}, dtype);
        K::state_update_rows_(once, torch::zeros_like(v0), neuron.act_params(), scratch_change);
        old[2].copy_(once[2]);
        Tensor start = torch::rand({rows}, torch::kFloat64).to(dtype) * 1e-3;
        start[2] = 0.0;
        Tensor ref_v = v0.clone();
        const Tensor ref_change = reference_rows(neuron, ref_v, old, start);
        Tensor v = v0.clone();
        Tensor change = start.clone();
        K::state_update_rows_(v, old, neuron.act_params(), change);
        const double tol = dtype == torch::kFloat32 ? 1e-6 : 1e-14;
        const std::string what = act + " n=" + std::to_string(n) + (dtype == torch::kFloat32 ? " f32" : " f64");
        EXPECT_LE((v - ref_v).abs().max().item<double>(), tol) << what;
        EXPECT_LE((change - ref_change).abs().max().item<double>(), tol) << what;
        // The two-back comparison: against `older`, a running max as well.
        Tensor older = torch::rand({rows, n}, torch::kFloat64).to(dtype), v2 = v0.clone();
        Tensor c1 = torch::zeros({rows}, dtype), c2 = start.clone();
        K::state_update_rows_(v2, old, neuron.act_params(), c1, older, &c2);
        const Tensor ref_c2 = at::maximum(start, (ref_v - older).abs().flatten(1).amax(1));
        EXPECT_LE((c2 - ref_c2).abs().max().item<double>(), tol) << what << " (older)";
        EXPECT_TRUE(torch::equal(v2, v)) << what << ": the comparison with older changes nothing else";
        EXPECT_EQ(change[2].item<double>(), 0.0) << what;
        EXPECT_GE(change[0].item<double>(), start[0].item<double>()) << what << ": the change is a running max";
      }
    }
  }
}

TEST(RowEpilogue, NaNMarksItsRowForGoodAndArgumentsAreChecked) {
  const Neuron neuron = Neuron::from_activation(activation("sigmoid4"));
  Tensor v = torch::randn({3, 19});
  Tensor old = torch::rand({3, 19});
  v[1][17] = kNaN;
  Tensor change = torch::zeros({3});
  K::state_update_rows_(v, old, neuron.act_params(), change);
  EXPECT_TRUE(std::isnan(change[1].item<double>()));
  EXPECT_FALSE(std::isnan(change[0].item<double>()));
  Tensor again = torch::rand({3, 19});
  K::state_update_rows_(again, old, neuron.act_params(), change);
  EXPECT_TRUE(std::isnan(change[1].item<double>())) << "a NaN change stays";
  Tensor wrong = torch::zeros({4});
  EXPECT_THROW(K::state_update_rows_(v, old, neuron.act_params(), wrong), std::invalid_argument);
  Tensor f64 = torch::zeros({3}, torch::kFloat64);
  EXPECT_THROW(K::state_update_rows_(v, old, neuron.act_params(), f64), std::invalid_argument);
  Tensor short_old = torch::rand({3, 18});
  EXPECT_THROW(K::state_update_rows_(v, short_old, neuron.act_params(), change), std::invalid_argument);
}

TEST(RowEpilogue, CudaKernelMatchesItsCpuTwin) {
  REQUIRE_CUDA();
  const Neuron neuron = Neuron::from_activation(activation("sigmoid4"));
  for (int64_t n : {1, 255, 257, 1000}) {
    for (int64_t rows : {1, 3, 70}) {
      torch::manual_seed(uint64_t(n + rows));
      Tensor v = torch::randn({rows, n}) * 3, old = torch::rand({rows, n});
      Tensor change = torch::rand({rows}) * 1e-3;
      Tensor gv = v.cuda(), gold = old.cuda(), gchange = change.cuda();
      K::state_update_rows_(v, old, neuron.act_params(), change);
      K::state_update_rows_(gv, gold, neuron.act_params(), gchange);
      EXPECT_LE((gv.cpu() - v).abs().max().item<double>(), 1e-6);
      EXPECT_LE((gchange.cpu() - change).abs().max().item<double>(), 1e-6);
    }
  }
}

TEST(CompactRelaxation, MatchesTheWholeBatchPath) {
  struct Case {
    std::string name;
    LayeredNet net;
    std::string loss;
  };
  std::vector<Case> cases;
  cases.push_back({"mlp 23-37-29-13-7 sigmoid4 mse", ep_test::make_mlp(23, {37, 29, 13}, 7, "sigmoid4", "mse", 1.5, 2), "mse"});
  cases.push_back({"mlp 23-71-45-9 tanh ce", ep_test::make_mlp(23, {71, 45}, 9, "tanh", "cross_entropy", 1.5, 3), "cross_entropy"});
  cases.push_back({"mlp 31-40-33-10 hard_sigmoid mse", ep_test::make_mlp(31, {40, 33}, 10, "hard_sigmoid", "mse", 1.5, 4), "mse"});
  cases.push_back({"conv sigmoid4 mse", ep_test::make_conv("sigmoid4", "mse", 1.5, 5, {3, 4}), "mse"});
  int compared = 0, moving = 0;
  for (auto& c : cases) {
    for (auto dtype : {torch::kFloat32, torch::kFloat64}) {
      Net n = make(c.net, c.loss, dtype, 13, 11);
      for (const Nudge nudge : {Nudge::none(), Nudge::loss(0.4), Nudge::loss(-0.3), Nudge::clamp()}) {
        if (nudge.kind == Nudge::Kind::Clamp && c.loss != "mse") continue;
        for (const std::string solver : {"fixed_point", "layerwise", "layerwise top_down"}) {
          const bool top_down = solver == "layerwise top_down";
          const std::string name = top_down ? "layerwise" : solver, order = top_down ? "top_down" : "even_odd";
          auto compact = make_solver(name, "compact", order);
          auto whole = make_solver(name, "generic", order);
          EnergyState a = random_start(n, 3), b = random_start(n, 3);
          const SolveStats sa = compact->solve(*n.energy, n.batch, a, nudge, 9, 0.0);
          const SolveStats sb = whole->solve(*n.energy, n.batch, b, nudge, 9, 0.0);
          const std::string what = c.name + " " + solver + (dtype == torch::kFloat32 ? " f32" : " f64") +
                                   " nudge " + std::to_string(int(nudge.kind)) + " β=" + std::to_string(nudge.beta);
          EXPECT_LT(max_state_diff(a, b), dtype == torch::kFloat32 ? 1e-5 : 1e-12) << what;
          ASSERT_TRUE(sa.row_steps.defined()) << what;
          EXPECT_EQ(sa.row_steps.size(0), 13) << what;
          EXPECT_LE(sa.row_steps.max().item<int64_t>(), 9) << what;
          EXPECT_GE(sa.row_steps.min().item<int64_t>(), 1) << what;
          EXPECT_EQ(sa.steps, sa.row_steps.max().item<int64_t>()) << what;
          // A stop before 9 sweeps only at an exact fixed point (reported residual 0 for that example).
          if (sa.steps < 9) EXPECT_EQ(sa.residual, 0.0) << what;
          else EXPECT_NEAR(sa.residual, sb.residual, dtype == torch::kFloat32 ? 1e-5 : 1e-12) << what;
          moving += sb.residual > 1e-4;
          for (const auto& s : a.s) EXPECT_FALSE(s.isnan().any().item<bool>()) << what;
          ++compared;
        }
      }
    }
  }
  EXPECT_EQ(compared, 2 * 3 * (4 + 3 + 4 + 4));
  EXPECT_GT(moving, compared / 2);
}

TEST(CompactRelaxation, ExamplesStopAtTheirOwnExactFixedPoints) {
  // Half the batch starts where the free dynamics settle in float32 (an exact fixed point, or a one-ulp 2-cycle),
  // half from zero: the settled half must stop within a few sweeps (two, but for the products of a smaller working
  // set rounding a last bit differently), before any of the rest, and the result must equal the whole-batch path's.
  Net n = make(ep_test::make_mlp(37, {45, 31}, 10, "sigmoid4", "mse", 0.4, 7), "mse", torch::kFloat32, 21, 13);
  auto compact = make_solver("fixed_point", "compact");
  auto whole = make_solver("fixed_point", "generic");
  EnergyState settled;
  n.energy->init_state(n.batch, settled);
  compact->solve(*n.energy, n.batch, settled, Nudge::none(), 3000, 0.0);
  EnergyState a, b;
  n.energy->init_state(n.batch, a);
  for (size_t k = 0; k < a.s.size(); ++k) a.s[k].narrow(0, 0, 10).copy_(settled.s[k].narrow(0, 0, 10));
  b.copy_from(a);
  const SolveStats sa = compact->solve(*n.energy, n.batch, a, Nudge::none(), 200, 0.0);
  whole->solve(*n.energy, n.batch, b, Nudge::none(), 200, 0.0);
  const Tensor steps = sa.row_steps;
  int64_t settled_rows = 0;
  for (int64_t r = 0; r < 10; ++r) settled_rows += steps[r].item<int64_t>() <= 2;
  EXPECT_GE(settled_rows, 7) << steps;
  EXPECT_EQ(sa.at_limit, 0) << steps;
  EXPECT_LT(steps.narrow(0, 0, 10).max().item<int64_t>(), steps.narrow(0, 10, 11).min().item<int64_t>()) << steps;
  EXPECT_GT(steps.max().item<int64_t>(), steps.min().item<int64_t>());
  EXPECT_LT(max_state_diff(a, b), 1e-6);
  // Rows that stopped early hold a fixed point: one more sweep does not move them (beyond rounding).
  EnergyState c;
  c.copy_from(a);
  whole->solve(*n.energy, n.batch, c, Nudge::none(), 1, 0.0);
  for (int64_t r = 0; r < 21; ++r) {
    if (steps[r].item<int64_t>() >= 200) continue;
    for (size_t k = 0; k < a.s.size(); ++k)
      EXPECT_LE((a.s[k][r] - c.s[k][r]).abs().max().item<double>(), 1e-6) << "row " << r;
  }
}

TEST(CompactRelaxation, TwoCyclesEndOnTheRightParity) {
  // Long relaxations end in exact fixed points, one-ulp 2-cycles or (for a few rows) longer rounding cycles; a row
  // in a 2-cycle stops early, and the state it leaves is the one of the right parity: after 300 and after 301
  // sweeps the result equals the whole-batch path's (which runs every sweep). Which rows settle and which cycle
  // depends on the last bits of the BLAS's products (LibTorch 1.13 and 2.6 differ), so the test asks only that
  // most rows stop early and, for Jacobi sweeps, that at least one of them is a 2-cycle (its two ends differ).
  Net n = make(ep_test::make_mlp(37, {45, 31}, 10, "sigmoid4", "mse", 1.2, 17), "mse", torch::kFloat32, 23, 19);
  for (const std::string solver : {"fixed_point", "layerwise"}) {
    EnergyState ends[2];
    Tensor steps[2];
    for (int i = 0; i < 2; ++i) {
      EnergyState a, b;
      n.energy->init_state(n.batch, a);
      n.energy->init_state(n.batch, b);
      const SolveStats sa = make_solver(solver, "compact")->solve(*n.energy, n.batch, a, Nudge::loss(0.3), 300 + i, 0.0);
      make_solver(solver, "generic")->solve(*n.energy, n.batch, b, Nudge::loss(0.3), 300 + i, 0.0);
      EXPECT_LT(max_state_diff(a, b), 1e-6) << solver << " after " << 300 + i;
      ends[i].copy_from(a);
      steps[i] = sa.row_steps;
    }
    const Tensor early = steps[0].lt(250).logical_and(steps[1].lt(250));
    EXPECT_GT(early.sum().item<int64_t>(), 23 / 2) << solver << ": most rows settle or cycle well before 300 sweeps"
                                                   << steps[0];
    Tensor alternates = torch::zeros({23}, torch::kBool);
    for (size_t k = 0; k < ends[0].s.size(); ++k)
      alternates = alternates.logical_or(ends[0].s[k].ne(ends[1].s[k]).flatten(1).any(1));
    // Jacobi sweeps (fixed_point) are where one-ulp 2-cycles happen; the even/odd schedule settles exactly here.
    if (solver == "fixed_point")
      EXPECT_GE(alternates.logical_and(early).sum().item<int64_t>(), 1) << solver << ": no early row in a 2-cycle";
    EXPECT_LT(max_state_diff(ends[0], ends[1]), 1e-6) << solver;
  }
}

TEST(CompactRelaxation, ToleranceAppliesPerExample) {
  Net n = make(ep_test::make_mlp(29, {33, 17}, 6, "sigmoid4", "mse", 0.5, 9), "mse", torch::kFloat32, 17, 5);
  for (const std::string solver : {"fixed_point", "layerwise"}) {
    auto compact = make_solver(solver, "compact");
    EnergyState a, exact;
    n.energy->init_state(n.batch, a);
    n.energy->init_state(n.batch, exact);
    const SolveStats sa = compact->solve(*n.energy, n.batch, a, Nudge::loss(0.5), 500, 1e-5);
    make_solver(solver, "generic")->solve(*n.energy, n.batch, exact, Nudge::loss(0.5), 3000, 0.0);
    EXPECT_LT(sa.residual, 1e-5) << solver;
    EXPECT_EQ(sa.at_limit, 0) << solver;
    EXPECT_LT(sa.steps, 500) << solver;
    EXPECT_LT(max_state_diff(a, exact), 1e-3) << solver;
    // One more sweep of any example barely moves it.
    EnergyState again;
    again.copy_from(a);
    const SolveStats one = make_solver(solver, "generic")->solve(*n.energy, n.batch, again, Nudge::loss(0.5), 1, 0.0);
    EXPECT_LT(one.residual, 1e-5) << solver;
  }
}

TEST(CompactRelaxation, AutoPicksCompactForDeepAndWideNetworks) {
  Net classic = make(ep_test::make_mlp(784, {512}, 10, "sigmoid4", "mse", 1.0, 1), "mse", torch::kFloat32, 4, 1);
  Net deep = make(ep_test::make_mlp(64, {512, 512}, 10, "sigmoid4", "mse", 1.0, 1), "mse", torch::kFloat32, 4, 1);
  const Nudge none = Nudge::none();
  EXPECT_TRUE(use_fused_relaxation(RelaxKernel::Auto, *classic.energy, classic.batch, none));
  EXPECT_FALSE(use_fused_relaxation(RelaxKernel::Auto, *deep.energy, deep.batch, none));
  EXPECT_TRUE(use_compact_relaxation(RelaxKernel::Auto, deep.batch, 0.0, 30));
  EXPECT_TRUE(use_compact_relaxation(RelaxKernel::Auto, deep.batch, 1e-6, 6));
  // Phases too short for any example to settle exactly: the whole batch, without the per-sweep bookkeeping.
  EXPECT_FALSE(use_compact_relaxation(RelaxKernel::Auto, deep.batch, 0.0, 6));
  EXPECT_TRUE(use_compact_relaxation(RelaxKernel::Compact, deep.batch, 0.0, 6));
  EXPECT_FALSE(use_compact_relaxation(RelaxKernel::Generic, deep.batch, 1e-6, 30));
  EXPECT_FALSE(use_fused_relaxation(RelaxKernel::Compact, *classic.energy, classic.batch, none));
  EXPECT_THROW(make_solver("layerwise", "fused"), std::invalid_argument);
  EXPECT_THROW(make_solver("layerwise", "auto", "bottom_up"), std::invalid_argument);
  EXPECT_THROW(make_solver("fixed_point", "auto", "top_down"), std::invalid_argument);
  EXPECT_EQ(relax_kernel_from_name("compact"), RelaxKernel::Compact);
}

TEST(SweepStats, HistogramAndLimitCountsComeFromEachExample) {
  SolveStats a;
  a.row_steps = torch::tensor({1, 4, 5, 9, 30, 30}, torch::kLong);
  a.steps = 30;
  a.at_limit = 2;
  std::map<std::string, double> d;
  add_sweep_diagnostics("free", {&a}, 6, 30, 0.0, d);
  EXPECT_DOUBLE_EQ(d["free_sweeps"], (1 + 4 + 5 + 9 + 30 + 30) / 6.0);
  EXPECT_DOUBLE_EQ(d["free_at_limit"], 2.0 / 6.0);
  EXPECT_DOUBLE_EQ(d["free_sweeps_1_4"], 2.0 / 6.0);
  EXPECT_DOUBLE_EQ(d["free_sweeps_5_8"], 1.0 / 6.0);
  EXPECT_DOUBLE_EQ(d["free_sweeps_9_16"], 1.0 / 6.0);
  EXPECT_DOUBLE_EQ(d["free_sweeps_17_32"], 2.0 / 6.0);
  EXPECT_DOUBLE_EQ(d["free_sweeps_33_64"], 0.0);
  // A whole-batch solve: every example ran `steps`; on the limit unless the batch met the criterion.
  SolveStats w;
  w.steps = 10;
  w.residual = 0.2;
  std::map<std::string, double> e;
  add_sweep_diagnostics("nudged", {&w, &w}, 4, 10, 1e-3, e);
  EXPECT_DOUBLE_EQ(e["nudged_sweeps"], 10.0);
  EXPECT_DOUBLE_EQ(e["nudged_at_limit"], 1.0);
  EXPECT_DOUBLE_EQ(e["nudged_sweeps_9_16"], 1.0);
  EXPECT_EQ(sweep_columns("free").size(), 8u);
}

TEST(SweepStats, MultiplyAddsOfBackpropAndEp) {
  // 20-7-5-3 (mse: three states): M = 140, 35, 15 per example.
  LayeredNet net = ep_test::make_mlp(20, {7, 5}, 3, "sigmoid4", "mse");
  auto obj = make_objective("mse");
  LayeredEnergy e(*net, Neuron::from_activation(net->rho()), *obj);
  EXPECT_DOUBLE_EQ(backprop_step_macs(e), 3.0 * (140 + 35 + 15) - 140);
  // Drive 140; 12 free + 2 × 4 nudged sweeps × 2 × (35 + 15); gradients 140 + 2 × (35 + 15).
  EXPECT_DOUBLE_EQ(ep_step_macs(e, 12.0, 4.0, 2), 140 + 20 * 2 * 50 + 140 + 2 * 50);
  // cross_entropy: the last layer is a read-out (M_r = 15) outside the states.
  auto ce = make_objective("cross_entropy");
  LayeredEnergy r(*net, Neuron::from_activation(net->rho()), *ce);
  EXPECT_DOUBLE_EQ(ep_step_macs(r, 10.0, 3.0, 1), 140 + 13 * 2 * 35 + 3 * 2 * 15 + 140 + 2 * 35 + 2 * 15);
}
