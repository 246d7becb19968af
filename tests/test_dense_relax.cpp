// The fused CPU relaxation kernel (bilevel/kernels/cpu/dense_relax.h, energy/fused_relaxation.h):
// - its activations against float64 references on fresh random inputs, at sizes that are not multiples of the
//   vector width, with guard cells after the buffer that must stay untouched, and NaN/±inf/extreme inputs;
// - whole relaxations against the LibTorch path of FixedPointSolver (independent code: at::addmm + at::sigmoid),
//   for every nudge kind, several activations and depths, poisoned scratch buffers, random (not zero) starts;
// - the vector build against the portable build, and results independent of the thread count;
// - which problems `auto` sends to the fused path.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <limits>
#include <random>

#include "bilevel/energy/fixed_point_solver.h"
#include "bilevel/energy/fused_relaxation.h"
#include "bilevel/kernels/cpu/dense_relax.h"
#include "oracle/ep_test_support.h"

using namespace bilevel;
using torch::Tensor;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();
constexpr float kGuard = -12345.0f;

std::vector<float> random_inputs(int64_t n, uint64_t seed, float spread) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = normal(gen);
  return v;
}

double reference(cpu::Act act, float lo, float hi, double x) {
  switch (act) {
    case cpu::Act::Identity: return x;
    case cpu::Act::Clamp: return std::min<double>(std::max<double>(x, lo), hi);
    case cpu::Act::Sigmoid: return 1.0 / (1.0 + std::exp(-x));
    case cpu::Act::Tanh: return std::tanh(x);
  }
  return x;
}

using ActivationFn = void (*)(cpu::Act, float, float, float*, int64_t);

// Largest error of `fn` in units of (|ref| · 2^-23 + floor) over random inputs at several sizes; fails on
// touched guard cells.
double worst_error(ActivationFn fn, cpu::Act act, float lo, float hi, float spread, double floor, uint64_t seed) {
  double worst = 0.0;
  for (int64_t n : {1, 7, 9, 31, 33, 257, 1001}) {
    std::vector<float> in = random_inputs(n, seed + uint64_t(n), spread);
    std::vector<float> buf(in);
    buf.resize(size_t(n) + 9, kGuard);
    fn(act, lo, hi, buf.data(), n);
    for (int64_t i = n; i < n + 9; ++i) EXPECT_EQ(buf[size_t(i)], kGuard) << "wrote past the end, n=" << n;
    for (int64_t i = 0; i < n; ++i) {
      const double ref = reference(act, lo, hi, double(in[size_t(i)]));
      const double err = std::abs(double(buf[size_t(i)]) - ref) / (std::abs(ref) * 0x1p-23 + floor);
      worst = std::max(worst, err);
    }
  }
  return worst;
}

}  // namespace

TEST(DenseRelaxKernel, ActivationsMatchFloat64References) {
  for (ActivationFn fn : {&cpu::apply_activation, &cpu::generic::apply_activation}) {
    for (float spread : {0.05f, 2.0f, 30.0f}) {
      // Sigmoid: a few ulps relative, everywhere (no cancellation in 1/(1 + e^{−v})).
      EXPECT_LT(worst_error(fn, cpu::Act::Sigmoid, 0, 0, spread, 1e-38, 11), 4.0) << spread;
      // Tanh: a few ulps relative, plus ~1 ulp of 1 absolute where 1 − e^{−2|v|} cancels (|v| just above 1/16).
      EXPECT_LT(worst_error(fn, cpu::Act::Tanh, 0, 0, spread, 1e-7, 12), 4.0) << spread;
      EXPECT_EQ(worst_error(fn, cpu::Act::Clamp, 0.0f, 1.0f, spread, 1e-38, 13), 0.0);
      EXPECT_EQ(worst_error(fn, cpu::Act::Clamp, 0.0f, kInf, spread, 1e-38, 14), 0.0);
      EXPECT_EQ(worst_error(fn, cpu::Act::Identity, 0, 0, spread, 1e-38, 15), 0.0);
    }
  }
}

TEST(DenseRelaxKernel, ActivationEdgeCases) {
  std::vector<float> x = {0.0f, -0.0f, 1e-30f, -1e-30f, 40.0f, -40.0f, 87.0f, -87.0f, 88.5f, -88.5f,
                          100.0f, -100.0f, kInf, -kInf, kNaN, 0.0625f, -0.0625f};
  while (x.size() % 8 != 3) x.push_back(0.5f);  // some in the vector body, some in the scalar tail
  std::vector<float> tail = x;
  std::reverse(tail.begin(), tail.end());
  for (const auto& input : {x, tail}) {
    for (cpu::Act act : {cpu::Act::Sigmoid, cpu::Act::Tanh}) {
      std::vector<float> v = input;
      cpu::apply_activation(act, 0, 0, v.data(), int64_t(v.size()));
      for (size_t i = 0; i < v.size(); ++i) {
        if (std::isnan(input[i])) {
          EXPECT_TRUE(std::isnan(v[i])) << "NaN must propagate";
          continue;
        }
        const double ref = reference(act, 0, 0, double(input[i]));
        EXPECT_NEAR(v[i], ref, std::abs(ref) * 4e-7 + 1e-38) << "x=" << input[i];
        if (act == cpu::Act::Tanh) EXPECT_EQ(std::signbit(v[i]), std::signbit(input[i])) << input[i];
      }
    }
  }
}

namespace {

struct Problem {
  LayeredNet net;
  std::unique_ptr<Objective> obj;
  std::unique_ptr<LayeredEnergy> energy;
  EnergyBatch batch;
};

Problem make_problem(int64_t in, std::vector<int64_t> hidden, int64_t classes, const std::string& act,
                     const std::string& loss, int64_t B, uint64_t seed, double gain = 1.5) {
  Problem p{ep_test::make_mlp(in, std::move(hidden), classes, act, loss, gain, seed), make_objective(loss), nullptr,
            {}};
  p.net->to(torch::kFloat32);
  p.energy = std::make_unique<LayeredEnergy>(*p.net, Neuron::from_activation(p.net->rho()), *p.obj);
  torch::manual_seed(seed + 1);
  auto x = torch::rand({B, in});
  auto y = torch::randint(0, classes, {B}, torch::kLong);
  p.energy->prepare(p.batch, x, y);
  return p;
}

EnergyState random_start(const Problem& p, uint64_t seed) { return ep_test::random_start(*p.energy, p.batch, seed); }
double max_diff(const EnergyState& a, const EnergyState& b) { return ep_test::max_state_diff(a, b); }

// The kernel's description of a sigmoid4 MLP problem nudged with strength β, written out by hand here (not
// through fused_relaxation.cpp). `keep` holds the contiguous biases alive.
cpu::DenseRelaxProblem sigmoid4_problem(const Problem& p, std::vector<Tensor>& keep, double beta) {
  const int64_t S = p.energy->num_states();
  cpu::DenseRelaxProblem prob;
  prob.batch = p.batch.size;
  prob.drive1 = p.batch.drive1.data_ptr<float>();
  prob.vbias.assign(size_t(S), nullptr);
  for (int64_t k = 0; k < S; ++k) {
    prob.width.push_back(p.net->layer(size_t(k)).weight.size(0));
    if (k >= 1) {
      keep.push_back(p.batch.vbias[size_t(k)].contiguous());
      prob.vbias[size_t(k)] = keep.back().data_ptr<float>();
      prob.weight.push_back(p.net->layer(size_t(k)).weight.data_ptr<float>());
    }
  }
  prob.scale = 4.0f;
  prob.act = cpu::Act::Sigmoid;
  prob.nudge = p.energy->output_is_state() ? cpu::OutputNudge::StateMse : cpu::OutputNudge::ReadoutCrossEntropy;
  prob.nudge_scale = float(4.0 * beta);
  prob.onehot = p.batch.onehot.data_ptr<float>();
  prob.classes = p.batch.onehot.size(1);
  if (!p.energy->output_is_state()) {
    prob.readout = p.net->layer(size_t(S)).weight.data_ptr<float>();
    prob.readout_bias = p.net->layer(size_t(S)).bias.data_ptr<float>();
  }
  return prob;
}

}  // namespace

TEST(FusedRelaxation, MatchesTheLibTorchPath) {
  struct Case {
    std::vector<int64_t> hidden;
    int64_t classes;
    std::string act, loss;
  };
  // Widths exercise the 32-lane, 8-lane and scalar paths of every layer, the output state included.
  const std::vector<Case> cases = {{{37}, 45, "sigmoid4", "mse"},         {{29, 13}, 7, "sigmoid", "mse"},
                                   {{37}, 7, "tanh", "cross_entropy"},     {{21, 11}, 40, "hard_sigmoid", "mse"},
                                   {{19}, 9, "relu", "cross_entropy"},     {{9, 71}, 33, "hard_tanh", "cross_entropy"}};
  const FixedPointSolver fused(RelaxKernel::Fused), generic(RelaxKernel::Generic);
  int compared = 0, moving = 0;
  for (const auto& c : cases) {
    for (const Nudge nudge : {Nudge::none(), Nudge::loss(0.4), Nudge::loss(-0.3), Nudge::clamp()}) {
      if (nudge.kind == Nudge::Kind::Clamp && c.loss != "mse") continue;
      Problem p = make_problem(23, c.hidden, c.classes, c.act, c.loss, 13, 5);
      ASSERT_TRUE(fused_relaxation_supported(*p.energy, p.batch, nudge));
      EnergyState a = random_start(p, 3), b = random_start(p, 3);
      const SolveStats sa = fused.solve(*p.energy, p.batch, a, nudge, 7, 0.0);
      const SolveStats sb = generic.solve(*p.energy, p.batch, b, nudge, 7, 0.0);
      const std::string what = c.act + "/" + c.loss + "/nudge " + std::to_string(int(nudge.kind)) + " β=" +
                                std::to_string(nudge.beta) + " depth " + std::to_string(c.hidden.size());
      EXPECT_LT(max_diff(a, b), 2e-6) << what;
      EXPECT_EQ(sb.steps, 7) << what;
      EXPECT_NEAR(sa.residual, sb.residual, 2e-6) << what;
      moving += sa.residual > 1e-4;
      // Stopping before 7 sweeps is only allowed on an exact fixed point.
      EXPECT_TRUE(sa.steps == 7 || (sa.steps < 7 && sa.residual == 0.0)) << what << " steps " << sa.steps;  // (one hidden layer under cross_entropy or a clamp is constant after a sweep)
      for (const auto& s : a.s) EXPECT_FALSE(s.isnan().any().item<bool>()) << what;
      ++compared;
    }
  }
  EXPECT_EQ(compared, 21);
  EXPECT_GT(moving, 12);
}

TEST(FusedRelaxation, EarlyStoppingIsPerExampleAndReachesTheFixedPoint) {
  Problem p = make_problem(31, {45}, 10, "sigmoid4", "mse", 19, 8, 0.5);
  const FixedPointSolver fused(RelaxKernel::Fused), generic(RelaxKernel::Generic);
  EnergyState a, exact;
  p.energy->init_state(p.batch, a);
  p.energy->init_state(p.batch, exact);
  const SolveStats sa = fused.solve(*p.energy, p.batch, a, Nudge::loss(0.5), 500, 1e-6);
  generic.solve(*p.energy, p.batch, exact, Nudge::loss(0.5), 2000, 0.0);
  EXPECT_LT(sa.steps, 500);
  EXPECT_LT(sa.residual, 1e-6);
  EXPECT_LT(max_diff(a, exact), 1e-4);
  // One more sweep of a converged state barely moves it (the same stopping rule the LibTorch path uses).
  const SolveStats again = fused.solve(*p.energy, p.batch, a, Nudge::loss(0.5), 1, 0.0);
  EXPECT_LT(again.residual, 1e-6);
}

TEST(FusedRelaxation, RowsStopOnlyAtExactFixedPoints) {
  // Row by row through the kernel: a row that stops before max_steps reports residual 0 and holds the same bits
  // after 400 and after 401 sweeps (an exact fixed point; rows that end in a one-ulp 2-cycle run every sweep and
  // differ by parity), and all rows match the LibTorch path's 400 sweeps.
  Problem p = make_problem(31, {45}, 10, "sigmoid4", "mse", 19, 8, 0.2);
  std::vector<Tensor> keep;
  cpu::DenseRelaxProblem prob = sigmoid4_problem(p, keep, 0.5);
  EnergyState runs[2];
  int stopped = 0;
  std::vector<bool> row_stopped(size_t(p.batch.size));
  for (int i = 0; i < 2; ++i) {
    p.energy->init_state(p.batch, runs[i]);
    prob.max_steps = 400 + i;
    float* s[] = {runs[i].s[0].data_ptr<float>(), runs[i].s[1].data_ptr<float>()};
    float* w[] = {runs[i].scratch[0].data_ptr<float>(), runs[i].scratch[1].data_ptr<float>()};
    for (int64_t r = 0; r < p.batch.size; ++r) {
      const cpu::RelaxStats st = cpu::dense_relax_rows(prob, s, w, r, r + 1);
      if (i == 0) {
        row_stopped[size_t(r)] = st.steps < 400;
        stopped += st.steps < 400;
        if (st.steps < 400) EXPECT_EQ(st.residual, 0.0f) << "row " << r;
      }
    }
  }
  EXPECT_GT(stopped, 0);
  for (int64_t r = 0; r < p.batch.size; ++r)
    if (row_stopped[size_t(r)])
      for (int k = 0; k < 2; ++k) EXPECT_TRUE(torch::equal(runs[0].s[k][r], runs[1].s[k][r])) << "row " << r;
  EnergyState ref;
  p.energy->init_state(p.batch, ref);
  FixedPointSolver(RelaxKernel::Generic).solve(*p.energy, p.batch, ref, Nudge::loss(0.5), 400, 0.0);
  EXPECT_LT(max_diff(runs[0], ref), 1e-6);
}

TEST(FusedRelaxation, VectorAndPortableBuildsAgreeAndThreadsDoNotMatter) {
  Problem p = make_problem(40, {67, 21}, 10, "sigmoid4", "cross_entropy", 29, 4);
  const Nudge nudge = Nudge::loss(0.7);
  const FixedPointSolver fused(RelaxKernel::Fused);
  const int threads = at::get_num_threads();
  at::set_num_threads(1);
  EnergyState one = random_start(p, 9);
  fused.solve(*p.energy, p.batch, one, nudge, 9, 0.0);
  at::set_num_threads(2);
  EnergyState two = random_start(p, 9);
  fused.solve(*p.energy, p.batch, two, nudge, 9, 0.0);
  at::set_num_threads(threads);
  for (size_t k = 0; k < one.s.size(); ++k) EXPECT_TRUE(torch::equal(one.s[k], two.s[k])) << "state " << k;

  // The same problem through the portable build, rows split differently.
  EnergyState port = random_start(p, 9);
  std::vector<Tensor> keep;
  cpu::DenseRelaxProblem prob = sigmoid4_problem(p, keep, 0.7);
  prob.max_steps = 9;
  float* s[] = {port.s[0].data_ptr<float>(), port.s[1].data_ptr<float>()};
  float* w[] = {port.scratch[0].data_ptr<float>(), port.scratch[1].data_ptr<float>()};
  cpu::generic::dense_relax_rows(prob, s, w, 0, 10);
  cpu::generic::dense_relax_rows(prob, s, w, 10, 29);
  double d = 0;
  for (size_t k = 0; k < one.s.size(); ++k) d = std::max(d, max_abs_diff(one.s[k], port.s[k]));
  EXPECT_LT(d, 2e-6);
}

TEST(FusedRelaxation, AutoPicksTheFusedPathOnlyWhereItApplies) {
  const Nudge none = Nudge::none();
  Problem classic = make_problem(784, {512}, 10, "sigmoid4", "mse", 4, 1);
  EXPECT_TRUE(use_fused_relaxation(RelaxKernel::Auto, *classic.energy, classic.batch, none));
  EXPECT_FALSE(use_fused_relaxation(RelaxKernel::Generic, *classic.energy, classic.batch, none));
  // Coupling weights far beyond cache: supported, but auto keeps LibTorch's GEMMs.
  Problem wide = make_problem(64, {512, 512}, 10, "sigmoid4", "mse", 4, 1);
  EXPECT_TRUE(fused_relaxation_supported(*wide.energy, wide.batch, none));
  EXPECT_FALSE(use_fused_relaxation(RelaxKernel::Auto, *wide.energy, wide.batch, none));
  EXPECT_TRUE(use_fused_relaxation(RelaxKernel::Fused, *wide.energy, wide.batch, none));
  // float64 (the oracle tests) and softplus stay on the LibTorch path.
  Problem f64 = make_problem(16, {8}, 4, "sigmoid4", "mse", 4, 1);
  f64.net->to(torch::kFloat64);
  f64.energy->prepare(f64.batch, torch::rand({4, 16}), torch::randint(0, 4, {4}, torch::kLong));
  EXPECT_FALSE(fused_relaxation_supported(*f64.energy, f64.batch, none));
  Problem soft = make_problem(16, {8}, 4, "softplus", "mse", 4, 1);
  EXPECT_FALSE(fused_relaxation_supported(*soft.energy, soft.batch, none));
  EXPECT_THROW(relax_kernel_from_name("fast"), std::invalid_argument);
}
