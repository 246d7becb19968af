// Dual propagation (bilevel/rules/dual_prop.h):
//  - α = ½: the update equals backprop's gradient up to O(β²) (mlp and conv + max-pool, mse and cross_entropy,
//    relu / tanh / sigmoid), α ∈ {0, 1} up to O(β);
//  - α ∈ {0, 1}: training on synthetic data stays finite and lowers the loss;
//  - the iterative inference reaches the closed form (exactly for α ∈ {0, 1} after N ≥ L passes, to O(β²) for ½);
//  - invalid hyperparameters fail at config validation, naming the key.
#include <gtest/gtest.h>

#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/nn/layered_net.h"
#include "bilevel/nn/objective.h"
#include "bilevel/rules/backprop.h"
#include "bilevel/rules/dual_prop.h"
#include "bilevel/train/experiment.h"
#include "bilevel/util/error.h"
#include "test_paths.h"

using namespace bilevel;
using torch::Tensor;

namespace {

LayeredNet make_net(const std::string& kind, const std::string& activation, const std::string& loss,
                    uint64_t seed) {
  torch::manual_seed(seed);
  ModelConfig m;
  m.kind = kind;
  m.activation = activation;
  m.init = "default";
  m.init_gain = 1.0;
  std::vector<int64_t> input;
  if (kind == "mlp") {
    m.hidden = {11, 7};
    input = {1, 3, 4};
  } else {
    m.channels = {3, 4};
    m.kernel_size = 3;
    m.padding = 1;
    m.pool = 2;
    m.hidden = {6};
    input = {2, 9, 9};
  }
  LayeredNet net(m, input, 5, loss == "mse");
  net->to(torch::kFloat64);
  return net;
}

std::pair<Tensor, Tensor> batch(const LayeredNet& net, int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<int64_t> shape = net->input_shape();
  shape.insert(shape.begin(), n);
  return {torch::rand(shape, torch::kFloat64), torch::randint(0, net->num_classes(), {n}, torch::kLong)};
}

Tensor flat_grads(LayeredNet& net) {
  std::vector<Tensor> parts;
  for (auto& p : net->parameters())
    parts.push_back(p.grad().defined() ? p.grad().flatten() : torch::zeros({p.numel()}, p.options()));
  return torch::cat(parts);
}

Tensor gradient(LearningRule& rule, LayeredNet& net, const Tensor& x, const Tensor& y, StepStats* stats = nullptr) {
  for (auto& p : net->parameters()) p.mutable_grad() = Tensor();
  StepStats s = rule.train_step(net, x, y);
  if (stats) *stats = s;
  return flat_grads(net).clone();
}

double rel(const Tensor& a, const Tensor& b) { return ((a - b).norm() / b.norm()).item<double>(); }

DualPropagation dual(const std::string& loss, double alpha, double beta, int64_t iterations = 0) {
  DualPropOptions o;
  o.alpha = alpha;
  o.beta = beta;
  if (iterations > 0) {
    o.inference = DualPropOptions::Inference::Iterative;
    o.iterations = iterations;
  }
  return DualPropagation(make_objective(loss), o);
}

// Relative error of dual_prop's update against backprop's gradient on one random batch.
double error_vs_backprop(const std::string& kind, const std::string& activation, const std::string& loss,
                         double alpha, double beta, uint64_t seed = 1) {
  LayeredNet net = make_net(kind, activation, loss, seed);
  auto [x, y] = batch(net, 8, seed + 100);
  Backprop bp(make_objective(loss));
  StepStats bs, ds;
  const Tensor g_bp = gradient(bp, net, x, y, &bs);
  DualPropagation dp = dual(loss, alpha, beta);
  const Tensor g_dp = gradient(dp, net, x, y, &ds);
  // The statistics come from the same feedforward pass.
  EXPECT_NEAR(ds.loss_sum, bs.loss_sum, 1e-9 * std::abs(bs.loss_sum));
  EXPECT_EQ(ds.correct, bs.correct);
  return rel(g_dp, g_bp);
}

}  // namespace

// ---------------------------------------------------------------- α = ½: backprop's gradient as β → 0

TEST(DualPropGradient, HalfAlphaMatchesBackprop) {
  const std::vector<double> betas = {1e-1, 1e-2, 1e-3};
  for (const std::string kind : {"mlp", "conv"})
    for (const std::string loss : {"mse", "cross_entropy"})
      for (const std::string act : {"tanh", "sigmoid", "relu"}) {
        std::vector<double> err;
        for (double beta : betas) err.push_back(error_vs_backprop(kind, act, loss, 0.5, beta));
        std::cout << kind << " " << loss << " " << act << ": rel. error at β = 0.1, 0.01, 0.001: " << err[0]
                  << " " << err[1] << " " << err[2] << "\n";
        const std::string what = kind + " " + loss + " " + act;
        EXPECT_LT(err[1], 1e-3) << what;
        EXPECT_LT(err[2], 1e-3) << what;
        if (act == "relu") {
          // Piecewise linear: exact except for units whose pre-activation the nudge pushes across 0.
          EXPECT_LE(err[2], err[0] + 1e-12) << what;
        } else {
          // Smooth ρ: the symmetric estimate's error is O(β²).
          EXPECT_LT(err[1], err[0] / 20) << what;
          EXPECT_LT(err[2], err[1] / 20) << what;
        }
      }
}

TEST(DualPropGradient, AsymmetricAlphaIsFirstOrder) {
  // α ∈ {0, 1}: one compartment is the feedforward state, the estimate is one-sided: error O(β).
  for (const std::string kind : {"mlp", "conv"})
    for (const std::string loss : {"mse", "cross_entropy"})
      for (double alpha : {0.0, 1.0}) {
        const double e1 = error_vs_backprop(kind, "tanh", loss, alpha, 1e-2);
        const double e2 = error_vs_backprop(kind, "tanh", loss, alpha, 1e-4);
        std::cout << kind << " " << loss << " α=" << alpha << ": rel. error at β = 1e-2, 1e-4: " << e1 << " " << e2
                  << "\n";
        EXPECT_LT(e1, 5e-2);
        EXPECT_LT(e2, 1e-3);
        EXPECT_LT(e2, e1 / 20);
      }
}

TEST(DualPropGradient, NetworksWithoutHiddenLayersAndNonMonotoneActivations) {
  // No hidden layer: δ_1 = −β ∇ℓ, the update is exactly backprop's. silu has no EP energy but DP needs none.
  torch::manual_seed(4);
  ModelConfig m;
  m.kind = "mlp";
  m.activation = "silu";
  m.hidden = {};
  m.init = "default";
  LayeredNet linear(m, std::vector<int64_t>{1, 2, 3}, 4, false);
  linear->to(torch::kFloat64);
  auto [x, y] = batch(linear, 5, 9);
  Backprop bp(make_objective("cross_entropy"));
  DualPropagation dp = dual("cross_entropy", 0.5, 0.1);
  EXPECT_LT(rel(gradient(dp, linear, x, y), gradient(bp, linear, x, y)), 1e-12);
  EXPECT_LT(error_vs_backprop("mlp", "silu", "cross_entropy", 0.5, 1e-3), 1e-4);
  EXPECT_LT(error_vs_backprop("conv", "silu", "mse", 0.5, 1e-3), 1e-4);
}

TEST(DualPropGradient, AccumulatesAndPredictsTheFeedforwardPass) {
  LayeredNet net = make_net("conv", "relu", "cross_entropy", 3);
  auto [x, y] = batch(net, 4, 3);
  DualPropagation dp = dual("cross_entropy", 0.5, 0.1);
  const Tensor once = gradient(dp, net, x, y);
  dp.train_step(net, x, y);
  EXPECT_TRUE(torch::allclose(flat_grads(net), 2 * once));
  EXPECT_TRUE(torch::equal(dp.predict(net, x), net->forward(x)));
  EXPECT_FALSE(dp.predict(net, x).requires_grad());
}

// ---------------------------------------------------------------- iterative inference → closed form

TEST(DualPropIterative, AsymmetricReachesClosedFormExactly) {
  for (const std::string kind : {"mlp", "conv"})
    for (const std::string loss : {"mse", "cross_entropy"})
      for (double alpha : {0.0, 1.0}) {
        LayeredNet net = make_net(kind, "tanh", loss, 5);
        auto [x, y] = batch(net, 6, 6);
        const int64_t L = int64_t(net->num_layers());
        DualPropagation closed = dual(loss, alpha, 0.05);
        const Tensor g_closed = gradient(closed, net, x, y);
        double previous = INFINITY;
        for (int64_t n = 1; n <= L + 2; ++n) {
          DualPropagation it = dual(loss, alpha, 0.05, n);
          const double e = rel(gradient(it, net, x, y), g_closed);
          const std::string what = kind + " " + loss + " α=" + std::to_string(alpha) + " N=" + std::to_string(n);
          if (n < L) {
            EXPECT_GT(e, 1e-3) << what << ": the nudge cannot have reached the first layer yet";
            EXPECT_LE(e, previous) << what;
          } else {
            EXPECT_EQ(e, 0.0) << what;  // bit for bit
          }
          previous = e;
        }
      }
}

TEST(DualPropIterative, SymmetricConvergesToTheClosedFormToSecondOrder) {
  // α = ½: the passes converge to the coupled fixed point; it differs from the one-sweep closed form by O(β²).
  for (const std::string kind : {"mlp", "conv"})
    for (const std::string loss : {"mse", "cross_entropy"}) {
      LayeredNet net = make_net(kind, "tanh", loss, 7);
      auto [x, y] = batch(net, 6, 8);
      const int64_t L = int64_t(net->num_layers());
      std::vector<double> gap;
      for (double beta : {0.1, 0.01}) {
        DualPropagation closed = dual(loss, 0.5, beta);
        const Tensor g_closed = gradient(closed, net, x, y);
        Tensor g_prev;
        double step = 0;
        for (int64_t n : {L, 3 * L, 3 * L + 1}) {
          DualPropagation it = dual(loss, 0.5, beta, n);
          Tensor g = gradient(it, net, x, y);
          if (g_prev.defined()) step = rel(g, g_prev);
          g_prev = g;
        }
        EXPECT_LT(step, 1e-6) << kind << " " << loss << " β=" << beta << ": the passes have converged";
        gap.push_back(rel(g_prev, g_closed));
      }
      std::cout << kind << " " << loss << ": |iterative − closed| / |closed| at β = 0.1, 0.01: " << gap[0] << " "
                << gap[1] << "\n";
      EXPECT_LT(gap[0], 1e-2);
      EXPECT_LT(gap[1], gap[0] / 20);
    }
}

TEST(DualPropIterative, StatesAgreeWithTheClosedForm) {
  // The states themselves (not only the update): α = 1, N = L passes.
  LayeredNet net = make_net("conv", "relu", "mse", 11);
  auto [x, y] = batch(net, 3, 12);
  DualPropagation closed = dual("mse", 1.0, 0.2);
  DualPropagation it = dual("mse", 1.0, 0.2, int64_t(net->num_layers()));
  DualStates a = closed.infer(net, x, y), b = it.infer(net, x, y);
  ASSERT_EQ(a.delta.size(), net->num_layers());
  for (size_t k = 0; k < a.delta.size(); ++k) {
    EXPECT_TRUE(torch::equal(a.delta[k], b.delta[k])) << k;
    EXPECT_TRUE(torch::equal(a.sbar[k], b.sbar[k])) << k;
    EXPECT_GT(a.delta[k].abs().max().item<double>(), 0.0) << k;
  }
  for (auto& p : net->parameters()) EXPECT_FALSE(p.grad().defined()) << "infer() leaves gradients alone";
}

// ---------------------------------------------------------------- training with asymmetric nudging

namespace {

const char* kSyntheticYaml = R"(experiment:
  name: dp
seed: 3
data:
  name: synthetic
  validation: 0
  synthetic:
    train: 512
    test: 128
    image_size: 6
    classes: 4
model:
  kind: mlp
  hidden: [32]
  activation: relu
rule:
  name: dual_prop
  beta: 0.1
train:
  batch_size: 32
  threads: 1
optimizer:
  name: adam
  lr: 0.003
)";

double mean_loss(Experiment& x) {
  torch::NoGradGuard no_grad;
  const Tensor out = x.rule->predict(x.net, x.data.train.images);
  return x.rule->objective().loss(out, x.data.train.labels).mean().item<double>();
}

}  // namespace

TEST(DualPropTraining, AsymmetricNudgingLowersTheLoss) {
  struct Case {
    std::vector<std::string> overrides;
  };
  const std::vector<Case> cases = {
      {{"train.loss=cross_entropy"}},
      // mse puts ρ on the output; relu outputs die under backprop too, so a sigmoid network here.
      {{"train.loss=mse", "model.activation=sigmoid"}},
      {{"train.loss=cross_entropy", "model.kind=conv", "model.channels=[4]", "model.kernel_size=3",
        "model.padding=1", "model.pool=2", "model.hidden=[16]"}},
      {{"train.loss=cross_entropy", "rule.inference=iterative", "rule.iterations=2"}},
  };
  for (double alpha : {0.0, 1.0})
    for (const auto& c : cases) {
      std::vector<std::string> ov = c.overrides;
      ov.push_back("rule.alpha=" + std::to_string(alpha));
      ExperimentConfig cfg = load_config_text(kSyntheticYaml, "dp.yaml", ov);
      Experiment x = prepare(cfg);
      ASSERT_EQ(x.rule->name(), "dual_prop");
      const double before = mean_loss(x);
      const int64_t n = x.data.train.size(), bs = cfg.train.batch_size;
      for (int64_t epoch = 0; epoch < 4; ++epoch)
        for (int64_t b = 0; b * bs < n; ++b) {
          x.optimizer.impl->zero_grad();
          x.rule->begin_batch(cfg.seed, epoch, b);
          auto s = x.rule->train_step(x.net, x.data.train.images.slice(0, b * bs, std::min(n, (b + 1) * bs)),
                                      x.data.train.labels.slice(0, b * bs, std::min(n, (b + 1) * bs)));
          ASSERT_TRUE(std::isfinite(s.loss_sum));
          x.optimizer.impl->step();
        }
      for (auto& p : x.net->parameters()) ASSERT_TRUE(torch::isfinite(p).all().item<bool>());
      const double after = mean_loss(x);
      std::string what = "α=" + std::to_string(alpha);
      for (auto& o : c.overrides) what += " " + o;
      std::cout << what << ": mean training loss " << before << " -> " << after << "\n";
      EXPECT_TRUE(std::isfinite(after)) << what;
      EXPECT_LT(after, 0.75 * before) << what;
    }
}

// ---------------------------------------------------------------- configuration

TEST(DualPropConfig, InvalidHyperparametersNameTheKey) {
  auto error_key = [](const std::vector<std::string>& overrides) -> std::string {
    try {
      ExperimentConfig cfg = load_config_text(kSyntheticYaml, "dp.yaml", overrides);
      make_rule(cfg);
    } catch (const ConfigError& e) {
      return e.key();
    }
    return "";
  };
  EXPECT_EQ(error_key({"rule.alpha=1.5"}), "rule.alpha");
  EXPECT_EQ(error_key({"rule.alpha=-0.1"}), "rule.alpha");
  EXPECT_EQ(error_key({"rule.beta=0"}), "rule.beta");
  EXPECT_EQ(error_key({"rule.beta=-0.1"}), "rule.beta");
  EXPECT_EQ(error_key({"rule.iterations=0"}), "rule.iterations");
  EXPECT_EQ(error_key({"rule.inference=newton"}), "rule.inference");
  EXPECT_EQ(error_key({}), "");
  // The defaults.
  ExperimentConfig cfg = load_config_text(kSyntheticYaml, "dp.yaml");
  auto opt = DualPropOptions::from_config(cfg);
  EXPECT_EQ(opt.alpha, 0.5);
  EXPECT_EQ(opt.inference, DualPropOptions::Inference::ClosedForm);
  EXPECT_EQ(make_rule(cfg)->name(), "dual_prop");
}

TEST(DualPropConfig, ShippedConfigsLoad) {
  for (const std::string name : {"fmnist_mlp_dp", "fmnist_conv_dp"}) {
    ExperimentConfig cfg = load_config(std::string(BILEVEL_SOURCE_DIR) + "/configs/" + name + ".yaml");
    EXPECT_EQ(cfg.rule.name, "dual_prop") << name;
    EXPECT_EQ(make_rule(cfg)->name(), "dual_prop") << name;
  }
}
