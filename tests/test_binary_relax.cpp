// The packed-bit relaxation for binary neurons with binary weights (energy/binary_relaxation.h,
// kernels/cpu/binary_relax.h):
// - against the whole-batch LibTorch path (FixedPointSolver, solver.kernel generic) with the same 1-bit state
//   quantizer, on random inputs, hidden widths that are not multiples of 64, several neurons, every nudge kind,
//   with the scratch buffers poisoned: the hidden bits equal, the outputs within float rounding;
// - the exact stop: a row that stopped early sits on a fixed point (one more sweep changes nothing) and equals the
//   whole-batch result of all the sweeps;
// - when it is taken (binary weights and 1-bit states) and when not (float weights, several hidden layers, states
//   off the grid);
// - a training smoke test: binary weights (flip) and binary neurons beat chance on a synthetic problem.
#include <gtest/gtest.h>

#include <torch/types.h>
#include <torch/utils.h>

#include <array>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/data/batches.h"
#include "bilevel/energy/binary_relaxation.h"
#include "bilevel/energy/fixed_point_solver.h"
#include "bilevel/energy/layerwise_solver.h"
#include "bilevel/kernels/cpu/binary_relax.h"
#include "bilevel/kernels/cpu/int_gemm.h"
#include "bilevel/quant/activation_quantizer.h"
#include "bilevel/train/experiment.h"
#include "bilevel/train/trainer.h"
#include "bilevel/util/threads.h"
#include "oracle/ep_test_support.h"

using namespace bilevel;
using torch::Tensor;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// A float32 784-like MLP in → hidden → classes with W_1's rows binarised to ±c_o, a 1-bit state quantizer on the
// hidden layer, and a prepared batch of random inputs.
struct BinaryNet {
  LayeredNet net{nullptr};
  std::unique_ptr<ActivationQuantizer> quant;
  std::unique_ptr<Objective> obj;
  std::unique_ptr<LayeredEnergy> energy;
  EnergyBatch batch;
};

std::unique_ptr<BinaryNet> make_net(int64_t in, int64_t hidden, int64_t classes, const std::string& act, int64_t B,
                                    uint64_t seed, bool binary_weights = true, double coupling = 4.0) {
  auto n = std::make_unique<BinaryNet>();
  n->net = ep_test::make_mlp(in, {hidden}, classes, act, "mse", 3.0, seed);
  n->net->to(torch::kFloat32);
  torch::NoGradGuard no_grad;
  if (binary_weights) {
    Tensor W = n->net->layer(1).weight;
    const Tensor c = W.abs().mean(1, true) * coupling;  // 4: strong enough that nudges flip hidden units
    W.copy_(torch::where(W >= 0, c, -c));
  }
  ActivationQuantOptions o;
  o.kind = "binary", o.bits = 1;
  o.lo = n->net->rho().lo, o.hi = n->net->rho().hi;
  n->quant = std::make_unique<ActivationQuantizer>(o, std::vector<Tensor>{});
  n->net->set_state_quantizer(n->quant.get());
  n->obj = make_objective("mse");
  n->energy = std::make_unique<LayeredEnergy>(*n->net, Neuron::from_activation(n->net->rho()), *n->obj);
  torch::manual_seed(seed + 17);
  n->energy->prepare(n->batch, torch::rand({B, 1, 1, in}), torch::randint(0, classes, {B}, torch::kLong));
  return n;
}

// Zero states for ρ ≥ 0; for a range with negative values a random start on the grid (zero is not a level).
EnergyState start(const BinaryNet& n, uint64_t seed) {
  EnergyState st;
  n.energy->init_state(n.batch, st);
  if (n.net->rho().lo < 0) {
    torch::manual_seed(seed);
    const double lo = n.net->rho().lo, hi = n.net->rho().hi;
    st.s[0].copy_(torch::where(torch::rand_like(st.s[0]) < 0.5, torch::full_like(st.s[0], lo),
                               torch::full_like(st.s[0], hi)));
  }
  return st;
}

void poison(EnergyState& st) {
  for (auto& t : st.scratch) t.fill_(kNaN);
}

struct Relaxed {
  EnergyState st;
  SolveStats stats;
};

Relaxed relax(const BinaryNet& n, RelaxKernel kernel, const EnergyState& from, const Nudge& nudge, int64_t steps,
              double tol = 0.0, bool layerwise = false) {
  Relaxed r;
  r.st.copy_from(from);
  poison(r.st);
  if (layerwise) r.stats = LayerwiseSolver(kernel).solve(*n.energy, n.batch, r.st, nudge, steps, tol);
  else r.stats = FixedPointSolver(kernel).solve(*n.energy, n.batch, r.st, nudge, steps, tol);
  return r;
}

}  // namespace

TEST(BinaryRelaxation, EqualsTheLibTorchPathWithBinaryStates) {
  set_cpu_threads(2);  // rows split over threads must not matter
  for (const bool layerwise : {false, true}) {
    int64_t flipped_somewhere = 0;
    for (const std::string act : {"sigmoid4", "sigmoid", "hard_sigmoid", "tanh"}) {
      for (const auto& [in, hidden, classes] :
           std::vector<std::array<int64_t, 3>>{{45, 77, 7}, {31, 130, 10}, {9, 63, 3}}) {
        const uint64_t seed = uint64_t(in * 131 + hidden);
        auto n = make_net(in, hidden, classes, act, 37, seed);
        ASSERT_TRUE(binary_relaxation_supported(*n->energy, n->batch, Nudge::none())) << act;
        const EnergyState st0 = start(*n, seed);
        for (const Nudge& nudge : {Nudge::none(), Nudge::loss(0.7), Nudge::loss(3.0), Nudge::clamp()}) {
          // Free phase first, then the nudge from the free state, as EP runs them.
          const Relaxed ref_free = relax(*n, RelaxKernel::Generic, st0, Nudge::none(), 30, 0.0, layerwise);
          const Relaxed ref = relax(*n, RelaxKernel::Generic, ref_free.st, nudge, 12, 0.0, layerwise);
          const Relaxed packed = relax(*n, RelaxKernel::Auto, ref_free.st, nudge, 12, 0.0, layerwise);
          const std::string what = std::string(layerwise ? "layerwise " : "fixed_point ") + act + " " +
                                   std::to_string(hidden) + " nudge " + std::to_string(int(nudge.kind)) + " beta " +
                                   std::to_string(nudge.beta);
          ASSERT_TRUE(packed.stats.row_steps.defined()) << what << ": the packed path was not taken";
          // Hidden states: exactly the same levels; every entry is one of the two.
          EXPECT_TRUE(torch::equal(packed.st.s[0], ref.st.s[0])) << what;
          const Tensor lv = packed.st.s[0];
          EXPECT_TRUE(torch::logical_or(lv == n->net->rho().lo, lv == n->net->rho().hi).all().item<bool>()) << what;
          // Output states: float rounding of the sums (and of Newton's last step) only.
          EXPECT_LE(max_abs_diff(packed.st.s[1], ref.st.s[1]), 2e-5) << what;
          EXPECT_FALSE(torch::isnan(packed.st.s[1]).any().item<bool>()) << what;
          flipped_somewhere += (ref.st.s[0] != ref_free.st.s[0]).sum().item<int64_t>();
        }
      }
    }
    // The comparison means something only if nudges move hidden bits.
    EXPECT_GT(flipped_somewhere, 0) << (layerwise ? "layerwise" : "fixed_point");
  }
}

TEST(BinaryRelaxation, StopsAtTheExactFixedPoint) {
  set_cpu_threads(1);
  for (const bool layerwise : {false, true}) {
  SCOPED_TRACE(layerwise ? "layerwise" : "fixed_point");
  // Weak coupling: most rows settle; synchronous sweeps may also end in a 2-cycle, which runs to the limit.
  auto n = make_net(50, 100, 10, "sigmoid4", 64, 5, true, 1.0);
  const EnergyState st0 = start(*n, 5);
  const int64_t T = 60;
  const Relaxed packed = relax(*n, RelaxKernel::Auto, st0, Nudge::none(), T, 0.0, layerwise);
  const Relaxed ref = relax(*n, RelaxKernel::Generic, st0, Nudge::none(), T, 0.0, layerwise);
  ASSERT_TRUE(packed.stats.row_steps.defined());
  EXPECT_TRUE(torch::equal(packed.st.s[0], ref.st.s[0]));
  EXPECT_LE(max_abs_diff(packed.st.s[1], ref.st.s[1]), 2e-5);
  const Tensor steps = packed.stats.row_steps;
  const Tensor early = steps < T;
  const int64_t settled = early.sum().item<int64_t>();
  EXPECT_GT(settled, 32) << "most rows should stop before the limit";
  EXPECT_EQ(packed.stats.at_limit, int64_t(steps.numel()) - settled);
  // Where a row stopped, one more sweep changes no bit of any of its states.
  const Relaxed again = relax(*n, RelaxKernel::Auto, packed.st, Nudge::none(), 1, 0.0, layerwise);
  for (int64_t r = 0; r < steps.numel(); ++r) {
    if (!early[r].item<bool>()) continue;
    EXPECT_TRUE(torch::equal(again.st.s[0][r], packed.st.s[0][r])) << "row " << r;
    EXPECT_TRUE(torch::equal(again.st.s[1][r], packed.st.s[1][r])) << "row " << r;
  }
  // A positive tol stops rows no later.
  const Relaxed tol = relax(*n, RelaxKernel::Auto, st0, Nudge::none(), T, 1e-3, layerwise);
  EXPECT_TRUE((tol.stats.row_steps <= steps).all().item<bool>());
  // Layer-wise sweeps descend the energy: no 2-cycles, every row settles.
  if (layerwise) EXPECT_EQ(settled, steps.numel());
  }
}

TEST(BinaryRelaxation, TakenOnlyForBinaryWeightsAndOneBitStates) {
  auto n = make_net(20, 70, 5, "sigmoid4", 8, 2);
  EXPECT_TRUE(use_binary_relaxation(RelaxKernel::Auto, *n->energy, n->batch, Nudge::loss(0.5)));
  EXPECT_TRUE(use_binary_relaxation(RelaxKernel::Fused, *n->energy, n->batch, Nudge::loss(0.5)));
  EXPECT_FALSE(use_binary_relaxation(RelaxKernel::Generic, *n->energy, n->batch, Nudge::none()));
  EXPECT_FALSE(use_binary_relaxation(RelaxKernel::Compact, *n->energy, n->batch, Nudge::none()));
  // Float weights above the input layer.
  auto f = make_net(20, 70, 5, "sigmoid4", 8, 2, /*binary_weights=*/false);
  EXPECT_FALSE(binary_relaxation_supported(*f->energy, f->batch, Nudge::none()));
  // No state quantizer.
  n->net->set_state_quantizer(nullptr);
  EXPECT_FALSE(binary_relaxation_supported(*n->energy, n->batch, Nudge::none()));
  n->net->set_state_quantizer(n->quant.get());
  // Hidden states off the grid are refused, not silently rounded.
  EnergyState st;
  n->energy->init_state(n->batch, st);
  st.s[0].fill_(0.25);
  EXPECT_THROW(binary_relaxation(*n->energy, n->batch, st, Nudge::none(), 3, 0.0), std::invalid_argument);
}

TEST(BinaryRelaxation, BinaryWeightsAndNeuronsTrainBeyondChance) {
  set_cpu_threads(1);
  const ExperimentConfig cfg = load_config_text(R"(experiment:
  name: w1a1
seed: 1
data:
  name: synthetic
  validation: 0
  synthetic:
    train: 1024
    test: 512
    image_size: 6
    classes: 4
model:
  kind: mlp
  hidden: [96]
  activation: sigmoid
  layer_gains: [0.3, 1.0]
rule:
  name: ep
  beta: 3.0
train:
  loss: mse
  epochs: 4
  batch_size: 32
  threads: 1
solver:
  name: fixed_point
  free_steps: 30
  nudged_steps: 10
optimizer:
  name: adam
  lr: 0.001
quantization:
  enabled: true
  weights:
    quantizer: binary
    solver: flip
    granularity: per_channel
  flip:
    gamma: 0.01
    tau: 1.0e-3
  activations:
    quantizer: binary
)",
                                                "w1a1.yaml", {});
  Experiment x = prepare(cfg);
  for (int64_t e = 0; e < cfg.train.epochs; ++e) {
    Batches batches(x.data.train, cfg.train.batch_size, true, cfg.seed, e);
    for (int64_t b = 0; b < batches.count(); ++b) {
      auto [xb, yb] = batches.get(b);
      train_batch(x, e, b, batches.count(), cfg.optimizer.lr, xb, yb);
    }
  }
  x.net->eval();
  const EvalResult r = evaluate(*x.rule, x.net, x.data.test, 256, torch::kCPU);
  // The packed path is the one that ran: binary weights after the quantizer's forward, 1-bit states.
  auto obj = make_objective("mse");
  LayeredEnergy energy(*x.net, Neuron::from_activation(x.net->rho()), *obj);
  EnergyBatch batch;
  energy.prepare(batch, x.data.test.images.slice(0, 0, 8), x.data.test.labels.slice(0, 0, 8));
  EXPECT_TRUE(binary_relaxation_supported(energy, batch, Nudge::loss(3.0)));
  EXPECT_GT(r.accuracy, 0.5) << "4 classes: chance is 0.25";
}

TEST(BinaryRelaxation, ThresholdIsWhereTheRoundedStateTurnsOn) {
  // The threshold against its definition: the rounded state of h(v) (apply_activation, then state_codes) is the
  // top level at the threshold and not at the float just below it, for every neuron the kernel has.
  struct Case {
    cpu::Act act;
    float lo, hi, level, step, mid;  // mid: where h crosses the midpoint of the two levels
  };
  for (const Case& c : {Case{cpu::Act::Sigmoid, 0.f, 0.f, 0.f, 1.f, 0.f},
                        Case{cpu::Act::Tanh, 0.f, 0.f, -1.f, 2.f, 0.f},
                        Case{cpu::Act::Clamp, 0.f, 1.f, 0.f, 1.f, 0.5f},
                        Case{cpu::Act::Clamp, -1.f, 1.f, -1.f, 2.f, 0.f}}) {
    cpu::BinaryRelaxProblem p;
    p.act = c.act, p.lo = c.lo, p.hi = c.hi, p.level = c.level, p.step = c.step;
    const float t = cpu::binary_state_threshold(p);
    ASSERT_TRUE(std::isfinite(t)) << int(c.act);
    auto code = [&](float v) {
      cpu::apply_activation(c.act, c.lo, c.hi, &v, 1);
      float q = 0;
      cpu::state_codes(&v, 1, c.level, 1.f / c.step, 0.f, 1.f, &q);
      return q;
    };
    EXPECT_EQ(code(t), 1.f) << int(c.act);
    EXPECT_EQ(code(std::nextafter(t, -INFINITY)), 0.f) << int(c.act);
    EXPECT_LE(std::fabs(t - c.mid), 1e-6f) << int(c.act);
  }
}
