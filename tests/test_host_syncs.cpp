// Host reads on the hot paths (issue 25, fault 2): a solver sweep that measures its residual reads it once, not
// once per state (SweepResidual); the fused sweep epilogue and the solvers' epilogue return their residual as a
// tensor that stays where it was computed; the energy rules leave the batch's loss and accuracy on the device
// until the trainer reads both at once (StepStats::pending); a learned activation step is read by the kernel, not
// on the host. On the CPU a read costs nothing, so these tests count reads and check that the lazy results equal
// the eager ones.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "bilevel/energy/inner_solver.h"
#include "bilevel/energy/sweep_residual.h"
#include "bilevel/kernels/fused_ops.h"
#include "bilevel/kernels/quant_ops.h"
#include "bilevel/rules/ep.h"
#include "oracle/ep_test_support.h"

using namespace bilevel;
using torch::Tensor;

TEST(HostSyncs, SweepResidualReadsOnceAndKeepsNaN) {
  SweepResidual r;
  const int64_t before = SweepResidual::host_reads();
  EXPECT_EQ(r.read(), 0.0);  // nothing measured: no read
  EXPECT_EQ(SweepResidual::host_reads(), before);
  r.add(torch::scalar_tensor(0.25, torch::kFloat32));
  r.add(Tensor());  // not measured: ignored
  r.add(torch::scalar_tensor(0.5, torch::kFloat32));
  r.add(torch::scalar_tensor(0.125, torch::kFloat32));
  EXPECT_EQ(r.read(), 0.5);
  EXPECT_EQ(SweepResidual::host_reads(), before + 1);
  r.add(torch::scalar_tensor(1.0, torch::kFloat64));
  r.add(torch::scalar_tensor(std::numeric_limits<double>::quiet_NaN(), torch::kFloat64));
  EXPECT_TRUE(std::isnan(r.read()));
}

TEST(HostSyncs, StateUpdateResidualStaysATensorEqualToTheReadOne) {
  torch::manual_seed(4);
  const Tensor v0 = torch::randn({50, 33}), s_old = torch::rand({50, 33});
  Tensor a = v0.clone(), b = v0.clone();
  const Tensor r = kernels::state_update_residual_(a, s_old, kernels::act_of("sigmoid"));
  const double d = kernels::state_update_(b, s_old, kernels::act_of("sigmoid"));
  EXPECT_EQ(r.dim(), 0);
  EXPECT_EQ(r.device(), a.device());
  EXPECT_EQ(r.item<double>(), d);
  EXPECT_TRUE(torch::equal(a, b));
}

// A measured sweep of either solver on the operator path reads its residual once for all its states.
TEST(HostSyncs, OneResidualReadPerMeasuredSweep) {
  for (const std::string solver : {"fixed_point", "layerwise"}) {
    LayeredNet net = ep_test::make_mlp(12, {9, 7, 5}, 4, "sigmoid", "mse", 1.5, 3);  // S = 4 states
    auto obj = make_objective("mse");
    LayeredEnergy energy(*net, Neuron::from_activation(net->rho()), *obj);
    EnergyBatch batch;
    energy.prepare(batch, torch::rand({6, 12}, torch::kFloat64), torch::randint(0, 4, {6}, torch::kLong));
    EnergyState st;
    energy.init_state(batch, st);
    ASSERT_EQ(energy.num_states(), 4);
    const auto s = make_solver(solver, "generic");
    const int64_t before = SweepResidual::host_reads();
    // tol > 0: every sweep measures. 8 sweeps: the layerwise solver reaches a residual of exactly 0 (and stops)
    // after about 20 on this net.
    const SolveStats stats = s->solve(energy, batch, st, Nudge::none(), 8, 1e-300);
    EXPECT_EQ(stats.steps, 8) << solver;
    EXPECT_EQ(SweepResidual::host_reads() - before, stats.steps) << solver << ": one read per sweep, not per state";
    EXPECT_GT(stats.residual, 0.0) << solver;
    const int64_t before0 = SweepResidual::host_reads();
    s->solve(energy, batch, st, Nudge::none(), 10, 0.0);  // tol = 0: the last sweep only
    EXPECT_EQ(SweepResidual::host_reads() - before0, 1) << solver;
  }
}

TEST(HostSyncs, EnergyRulesLeaveLossAndAccuracyOnTheDeviceUntilResolved) {
  LayeredNet net = ep_test::make_mlp(10, {8}, 3, "sigmoid", "mse", 1.5, 5);
  EnergyRuleOptions o;
  o.free_steps = 20, o.nudged_steps = 5;
  auto rule = ep_test::make_ep("mse", o, false);
  torch::manual_seed(6);
  const Tensor x = torch::rand({7, 1, 1, 10}, torch::kFloat64), y = torch::randint(0, 3, {7}, torch::kLong);
  StepStats st = rule->train_step(net, x, y);
  ASSERT_TRUE(st.pending.defined()) << "the rule read its loss on the host";
  EXPECT_EQ(st.pending.device(), x.device());
  EXPECT_EQ(st.loss_sum, 0.0);
  const Tensor out = rule->predict(net, x);  // the same free phase: train_step wrote gradients, not weights
  st.resolve();
  EXPECT_FALSE(st.pending.defined());
  const double loss = rule->objective().loss(out, y).sum().item<double>();
  EXPECT_NEAR(st.loss_sum, loss, 1e-9 * std::abs(loss));
  EXPECT_EQ(st.correct, out.argmax(1).eq(y).sum().item<int64_t>());
  StepStats plain;  // a rule that fills the numbers directly: resolve() keeps them
  plain.loss_sum = 2.5, plain.correct = 3;
  EXPECT_EQ(plain.resolve().loss_sum, 2.5);
  EXPECT_EQ(plain.correct, 3);
}

TEST(HostSyncs, ALearnedActivationStepIsReadByTheKernel) {
  torch::manual_seed(7);
  const Tensor x = torch::randn({1000}) * 3;
  for (const bool stochastic : {false, true}) {
    const uint64_t key = 99;
    Tensor a = torch::empty_like(x), b = torch::empty_like(x);
    kernels::activation_codes_out(x, 0.0, 0.37, -8, 7, stochastic ? &key : nullptr, a);
    kernels::activation_codes_out(x, 0.0, torch::full({}, 0.37f), -8, 7, stochastic ? &key : nullptr, b);
    EXPECT_TRUE(torch::equal(a, b)) << "stochastic " << stochastic;
  }
  Tensor out = torch::empty_like(x);
  EXPECT_THROW(kernels::activation_codes_out(x, 0.0, torch::full({2}, 0.37f), -8, 7, nullptr, out),
               std::invalid_argument);
  EXPECT_THROW(kernels::activation_codes_out(x, 0.0, torch::full({}, 0.37, torch::kFloat64), -8, 7, nullptr, out),
               std::invalid_argument);  // float64 (torch::full infers float32 from a double fill value)
}
