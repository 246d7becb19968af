// Quantization: every quantizer's grid, each solver's equations against its definition (brute-force minimisation,
// finite differences, closed forms), stochastic rounding, the flip rule, training of every learning rule with
// quantized weights, the exported integer model against the fake-quantized network, and validation errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "bilevel/config/config.h"
#include "bilevel/data/batches.h"
#include "bilevel/kernels/counter_rng.h"
#include "bilevel/kernels/quant_element.h"
#include "bilevel/quant/export.h"
#include "bilevel/quant/integer_model.h"
#include "bilevel/quant/quantization.h"
#include "bilevel/quant/quantizer.h"
#include "bilevel/quant/weight_solvers.h"
#include "bilevel/train/experiment.h"
#include "bilevel/optim/fused_adam.h"
#include "bilevel/train/optim.h"
#include "bilevel/train/trainer.h"
#include "bilevel/util/threads.h"
#include "test_util.h"

using namespace bilevel;
using torch::Tensor;

namespace {

Tensor randn(std::vector<int64_t> shape, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randn(shape) * 0.1;
}

QuantizerOptions opts(std::string kind, int bits, bool per_channel = false, bool symmetric = true) {
  QuantizerOptions o;
  o.kind = std::move(kind), o.bits = bits, o.per_channel = per_channel, o.symmetric = symmetric;
  return o;
}

// Every quantized value is one of the grid's levels (of its channel).
void expect_on_grid(const Quantizer& q, const Tensor& w, const GridParams& g) {
  const int64_t C = w.size(0);
  for (int64_t c = 0; c < C; ++c) {
    const auto levels = q.levels(g, g.scale.numel() > 1 ? c : 0);
    Tensor row = w[c].reshape(-1);
    for (int64_t i = 0; i < row.numel(); ++i) {
      const float v = row[i].item<float>();
      float best = INFINITY;
      for (float l : levels) best = std::min(best, std::fabs(v - l));
      ASSERT_LE(best, 1e-6f * std::max(1.f, std::fabs(v))) << q.name() << " channel " << c << " value " << v;
    }
  }
}

const char* kSyntheticYaml = R"(experiment:
  name: quant
seed: 3
data:
  name: synthetic
  validation: 0
  synthetic:
    train: 512
    test: 256
    image_size: 4
    classes: 4
model:
  kind: mlp
  hidden: [24]
  activation: hard_sigmoid
train:
  epochs: 1
  batch_size: 32
  threads: 1
optimizer:
  name: adam
  lr: 0.003
quantization:
  enabled: true
)";

}  // namespace

// ---------------------------------------------------------------- quantizers

TEST(Quantizers, EveryValueOnTheGridAndIdempotent) {
  struct Case { std::string kind; int bits; bool per_channel, symmetric; };
  const std::vector<Case> cases = {{"binary", 1, false, true},  {"binary", 1, true, true},   {"ternary", 2, false, true},
                                   {"ternary", 2, true, true},  {"uniform", 2, false, true}, {"uniform", 4, true, true},
                                   {"uniform", 8, false, true}, {"uniform", 3, false, false}, {"uniform", 5, true, false}};
  uint64_t seed = 11;
  for (const auto& c : cases) {
    auto q = make_quantizer(opts(c.kind, c.bits, c.per_channel, c.symmetric));
    Tensor theta = randn({7, 13}, seed++) + (c.symmetric ? 0.0 : 0.05);
    GridParams g = q->fit(theta);
    Tensor w = q->quantize(theta, g);
    expect_on_grid(*q, w, g);
    EXPECT_TRUE(torch::equal(q->quantize(w, g), w)) << c.kind << c.bits << " is not idempotent";
    const int64_t levels = int64_t(q->levels(g).size());
    EXPECT_EQ(levels, c.kind == "binary" ? 2 : c.kind == "ternary" ? 3 : (1 << c.bits));
    // Deterministic rounding is the projection: no grid level is closer than the chosen one.
    if (c.kind == "uniform") {
      Tensor s = Quantizer::broadcast(g.scale, theta).expand_as(theta);
      Tensor u = theta / s + (g.zero.defined() ? Quantizer::broadcast(g.zero, theta) : torch::zeros({}));
      Tensor inside = (u >= q->code_min()) & (u <= q->code_max());  // inside the range: at most s/2 away
      ASSERT_GT(inside.sum().item<int64_t>(), 0);
      EXPECT_TRUE(torch::all((w - theta).abs().masked_select(inside) <= s.masked_select(inside) * 0.5 + 1e-6).item<bool>())
          << c.kind << c.bits;
    }
  }
}

TEST(Quantizers, PerChannelScalesArePerChannel) {
  auto q = make_quantizer(opts("binary", 1, true));
  Tensor theta = randn({5, 9}, 2);
  theta[3].mul_(20);  // one channel far larger
  GridParams g = q->fit(theta);
  ASSERT_EQ(g.scale.numel(), 5);
  for (int64_t c = 0; c < 5; ++c)
    EXPECT_NEAR(g.scale[c].item<float>(), theta[c].abs().mean().item<float>(), 1e-6);
  Tensor w = q->quantize(theta, g);
  for (int64_t c = 0; c < 5; ++c)
    EXPECT_NEAR(w[c].abs().max().item<float>(), g.scale[c].item<float>(), 1e-6);
  auto per_tensor = make_quantizer(opts("binary", 1, false));
  EXPECT_EQ(per_tensor->fit(theta).scale.numel(), 1);
}

TEST(Quantizers, StochasticRoundingIsUnbiasedAndReproducible) {
  auto q = make_quantizer(opts("uniform", 3, false));
  Tensor theta = randn({1, 4000}, 5) * 0.5;
  GridParams g = q->fit(theta);
  // Keep θ inside the grid's range, where rounding is unbiased.
  const float s = g.scale.item<float>();
  theta = theta.clamp(-3.9 * s, 2.9 * s);
  Tensor mean = torch::zeros_like(theta);
  const int draws = 400;
  for (int d = 0; d < draws; ++d) {
    const uint64_t key = stream_key(7, 0, d, 1);
    mean += q->quantize(theta, g, &key);
  }
  mean /= draws;
  // Each draw has variance <= s²/4: the mean over 400 draws is within 5 standard errors of θ.
  EXPECT_LT((mean - theta).abs().max().item<float>(), 5 * 0.5 * s / std::sqrt(float(draws)));
  EXPECT_LT((mean - theta).abs().mean().item<float>(), 0.05 * s);
  const uint64_t k1 = stream_key(7, 2, 3, 1), k2 = stream_key(7, 2, 4, 1);
  EXPECT_TRUE(torch::equal(q->quantize(theta, g, &k1), q->quantize(theta, g, &k1)));
  EXPECT_FALSE(torch::equal(q->quantize(theta, g, &k1), q->quantize(theta, g, &k2)));
  // Binary stochastic rounding: E[q] = clip(θ/s, −1, 1).
  auto b = make_quantizer(opts("binary", 1));
  Tensor t = torch::linspace(-1.2, 1.2, 25).reshape({1, 25});
  GridParams gb{torch::ones({1}), Tensor()};
  Tensor m = torch::zeros_like(t);
  for (int d = 0; d < 4000; ++d) {
    const uint64_t key = stream_key(1, 0, d, 9);
    m += b->quantize(t, gb, &key);
  }
  m /= 4000;
  EXPECT_LT((m - t.clamp(-1, 1)).abs().max().item<float>(), 0.08);
}

TEST(Quantizers, BadOptionsAreRejected) {
  EXPECT_THROW(make_quantizer(opts("binary", 2)), std::invalid_argument);
  EXPECT_THROW(make_quantizer(opts("uniform", 1)), std::invalid_argument);
  EXPECT_THROW(make_quantizer(opts("uniform", 9)), std::invalid_argument);
  EXPECT_THROW(make_quantizer(opts("quaternary", 2)), std::invalid_argument);
}

// ---------------------------------------------------------------- solvers' element math

TEST(SolverMath, SteMasksOutsideTheClipRange) {
  EXPECT_EQ(qe::ste_grad(0.3f, 0.5f, 1.f), 0.3f);
  EXPECT_EQ(qe::ste_grad(0.3f, -1.f, 1.f), 0.3f);
  EXPECT_EQ(qe::ste_grad(0.3f, 1.01f, 1.f), 0.f);
  EXPECT_EQ(qe::ste_grad(0.3f, -2.f, 1.f), 0.f);
}

TEST(SolverMath, ProxQuantProxEqualsItsClosedForm) {
  // prox_{λ|·−q|}(θ) = argmin_x ½(x − θ)² + λ|x − q|, checked by brute force on a fine grid.
  std::mt19937 gen(3);
  std::uniform_real_distribution<float> U(-2, 2), L(0, 0.7f);
  for (int t = 0; t < 200; ++t) {
    const float theta = U(gen), q = std::round(U(gen)), lambda = L(gen);
    double best = 0, best_f = INFINITY;
    for (int i = -40000; i <= 40000; ++i) {
      const double x = double(i) * 1e-4;
      const double f = 0.5 * (x - theta) * (x - theta) + lambda * std::fabs(x - q);
      if (f < best_f) best_f = f, best = x;
    }
    EXPECT_NEAR(qe::prox_towards(theta, q, lambda), best, 2e-4) << theta << " " << q << " " << lambda;
  }
}

TEST(SolverMath, AdaSteForwardIsTheMinimiserOfItsInnerProblem) {
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> U(-1.5f, 1.5f), B(0.f, 3.f);
  for (int t = 0; t < 200; ++t) {
    const float u = U(gen), beta = t < 20 ? 100.f : B(gen), alpha = 0.01f;
    double best = 0, best_f = INFINITY;
    for (int i = -20000; i <= 20000; ++i) {
      const double w = double(i) * 5e-5;
      const double f = 0.5 * (w - u) * (w - u) + beta * (0.5 * w * w - (1.0 + alpha) * std::fabs(w));
      if (f < best_f) best_f = f, best = w;
    }
    EXPECT_NEAR(qe::adaste_forward(u, beta, alpha), best, 1e-4) << "u " << u << " beta " << beta;
  }
  // At β = 1/α the map is exactly sign(u).
  EXPECT_EQ(qe::adaste_forward(0.01f, 100.f, 0.01f), 1.f);
  EXPECT_EQ(qe::adaste_forward(-0.3f, 100.f, 0.01f), -1.f);
}

TEST(SolverMath, AdaSteBackwardFollowsThePapersCaseTable) {
  // AdaSTE's slope σ(u, g), case by case, against what each case is: a secant of the forward map w* (computed
  // through adaste_forward, not through the slope's formula) for a weight that the descent step −g moves towards 0,
  // the slope of w*'s piece for one moved away from 0, 0 for a saturated one pushed further out; and once β ≥ 1/α
  // (w* = sign u) min(½, 1/|u|) inward and 0 outward. Random (u, g) at β below, across and beyond 1/α.
  const float alpha = 0.01f;
  std::mt19937 gen(9);
  std::uniform_real_distribution<float> U(-1.2f, 1.2f), G(-0.5f, 0.5f);
  auto wstar = [&](double u, float beta) { return double(qe::adaste_forward(float(u), beta, alpha)); };
  int counts[5] = {0, 0, 0, 0, 0};  // linear outward, linear inward, saturated outward, saturated inward, βα ≥ 1
  for (const float beta : {0.01f, 0.5f, 10.f, 99.f, 100.f, 150.f}) {
    const double c = 1.0 - double(beta) * alpha;  // w* saturates at |u| >= c
    for (int t = 0; t < 400; ++t) {
      const float u = U(gen), g = G(gen);
      if (std::fabs(u) < 1e-3f || g == 0.f || std::fabs(std::fabs(u) - c) < 1e-3) continue;
      const double a = std::fabs(u), sign = u > 0 ? 1.0 : -1.0;
      const bool inward = g * u > 0;
      double expect;
      int which;
      if (double(beta) * alpha >= 1.0) {
        expect = inward ? std::min(0.5, 1.0 / a) : 0.0;
        which = 4;
      } else if (inward) {  // the secant from u to just across 0, capped at ½
        expect = std::min(0.5, (wstar(u, beta) - wstar(-sign * 1e-9, beta)) / (sign * a));
        which = a >= c ? 3 : 1;
      } else {  // the slope of the piece u is on: 1/(1+β) where w* is linear, 0 where it is saturated
        const double d = 1e-4;
        expect = (wstar(u + sign * d, beta) - wstar(u, beta)) / (sign * d);
        which = a >= c ? 2 : 0;
      }
      ++counts[which];
      const float got = qe::adaste_grad(g, u, beta, alpha);
      EXPECT_NEAR(got, expect * g, 2e-3 * std::fabs(g)) << "u " << u << " g " << g << " beta " << beta;
      // Symmetric under (u, g) → (−u, −g).
      EXPECT_EQ(qe::adaste_grad(-g, -u, beta, alpha), -got) << "u " << u << " g " << g << " beta " << beta;
    }
  }
  for (int k = 0; k < 5; ++k) EXPECT_GT(counts[k], 20) << "case " << k;
  // The boundaries: |u| = c belongs to the saturated face; u = 0 takes the linear slope (½ once βα ≥ 1); g = 0 gives 0.
  const float beta = 0.5f, c = 1.f - beta * alpha;
  EXPECT_EQ(qe::adaste_slope(-0.1f, c, beta, alpha), 0.f);
  EXPECT_EQ(qe::adaste_slope(0.1f, c, beta, alpha), 0.5f);
  EXPECT_FLOAT_EQ(qe::adaste_slope(-0.1f, std::nextafter(c, 0.f), beta, alpha), 1.f / (1.f + beta));
  EXPECT_FLOAT_EQ(qe::adaste_slope(0.3f, 0.f, beta, alpha), 1.f / (1.f + beta));
  EXPECT_EQ(qe::adaste_slope(0.3f, 0.f, 100.f, alpha), 0.5f);
  EXPECT_EQ(qe::adaste_grad(0.f, 0.4f, beta, alpha), 0.f);
}

TEST(SolverMath, AdaSteKeepsPassingGradientsAcrossTheEndOfItsSchedule) {
  // As β crosses 1/α the forward map becomes sign(u) and every weight saturates; a weight that the step moves
  // towards 0 must still get a gradient (the released code: min(½, 1/|u|)), else training stops there. A fixed-τ
  // finite difference passes one only to weights within τ|g| of 0.
  const float alpha = 0.01f;
  std::mt19937 gen(4);
  std::uniform_real_distribution<float> U(-1.f, 1.f), G(-0.05f, 0.05f);
  for (const float beta : {90.f, 99.9f, 100.f, 100.1f, 120.f}) {
    int inward = 0, passed = 0;
    for (int t = 0; t < 1000; ++t) {
      const float u = U(gen), g = G(gen);
      if (u == 0.f || g == 0.f) continue;
      const float got = qe::adaste_grad(g, u, beta, alpha);
      if (g * u > 0) {
        ++inward;
        passed += got != 0.f && (got > 0) == (g > 0);
      } else if (std::fabs(u) >= 1.f - beta * alpha) {
        EXPECT_EQ(got, 0.f) << "saturated, pushed out: u " << u << " g " << g << " beta " << beta;
      }
    }
    EXPECT_GT(inward, 400) << beta;
    EXPECT_EQ(passed, inward) << "beta " << beta;
  }
}

TEST(SolverMath, LsqStepGradientMatchesFiniteDifferences) {
  // ŵ(s) = s·round(clip(v/s, −Q_N, Q_P)). Away from rounding boundaries its true derivative is the code (round is
  // locally constant); LSQ's gradient adds the straight-through term −v/s inside the range: lsq_grad_s + v/s inside,
  // and exactly −Q_N / Q_P outside, equal finite differences of ŵ.
  const float qn = 8, qp = 7;
  std::mt19937 gen(4);
  std::uniform_real_distribution<float> V(-1.2f, 1.2f);
  const float s = 0.1f, h = 1e-4f;
  int checked = 0;
  for (int t = 0; t < 400; ++t) {
    const float v = V(gen);
    const float x = v / s;
    if (std::fabs(x - std::floor(x) - 0.5f) < 0.02f || std::fabs(x + qn) < 0.05f || std::fabs(x - qp) < 0.05f) continue;
    auto what = [&](double st) { return st * qe::uniform_code(float(v / st), -qn, qp); };
    const double fd = (what(s + h) - what(s - h)) / (2 * h);
    const bool inside = x > -qn && x < qp;
    const double lsq = qe::lsq_grad_s(x, qn, qp) + (inside ? x : 0.f);
    EXPECT_NEAR(lsq, fd, 2e-2) << "v " << v;
    ++checked;
  }
  EXPECT_GT(checked, 300);
  EXPECT_EQ(qe::lsq_grad_v(-9.f, qn, qp), 0.f);
  EXPECT_EQ(qe::lsq_grad_v(3.f, qn, qp), 1.f);
}

TEST(SolverMath, MirrorMapAndItsInverseRoundTrip) {
  // Binary mirror map w/s = tanh(2βu) (the softmax over {−1, +1}) and its inverse u = atanh(w/s)/(2β).
  for (double beta : {0.5, 1.0, 3.0}) {
    Tensor u = torch::linspace(-1.5, 1.5, 61, torch::kFloat64);
    Tensor w = torch::tanh(u * (2 * beta));
    Tensor back = torch::atanh(w) / (2 * beta);
    EXPECT_LT((back - u).abs().max().item<double>(), 1e-9);
    // And the softmax form equals tanh.
    Tensor logits = torch::stack({-(u + 1).pow(2) * beta, -(u - 1).pow(2) * beta}, -1);
    Tensor p = torch::softmax(logits, -1);
    Tensor mean = p.select(-1, 1) - p.select(-1, 0);
    EXPECT_LT((mean - w).abs().max().item<double>(), 1e-12);
  }
}

TEST(SolverMath, FlipRuleFlipsExactlyTheWeightsPastTheThreshold) {
  const float tau = 0.1f;
  EXPECT_EQ(qe::flip_code(1.f, 0.11f, tau), -1.f);  // m·q > τ: the descent direction −m opposes q
  EXPECT_EQ(qe::flip_code(1.f, 0.09f, tau), 1.f);
  EXPECT_EQ(qe::flip_code(1.f, -5.f, tau), 1.f);    // the gradient agrees with q
  EXPECT_EQ(qe::flip_code(-1.f, -0.2f, tau), 1.f);
  EXPECT_EQ(qe::flip_code(-1.f, 0.2f, tau), -1.f);
  // Through the solver: after one step with γ = 1, m = G; exactly the weights with G·q > τ flip.
  ExperimentConfig cfg = load_config_text(kSyntheticYaml, "q.yaml",
                                          {"quantization.weights.solver=flip", "quantization.flip.gamma=1",
                                           "quantization.flip.tau=0.05"});
  auto solver = make_flip_solver(cfg);
  auto q = make_quantizer(opts("binary", 1));
  QuantParam p;
  p.weight = randn({6, 10}, 8);
  solver->init(p, *q);
  Tensor before = p.latent.clone();
  Tensor G = randn({6, 10}, 9);
  solver->backward(p, *q, G, QuantClock{});
  Tensor expect = torch::where(G * before > 0.05, -before, before);
  EXPECT_TRUE(torch::equal(p.latent, expect));
  EXPECT_GT(before.ne(p.latent).sum().item<int64_t>(), 0);
}

// ---------------------------------------------------------------- training and export

namespace {

struct TrainResult {
  double first_loss = 0, last_loss = 0;
};

// Trains `epochs` epochs of the synthetic problem; returns the mean training loss of the first and last epoch.
TrainResult train_synthetic(const std::vector<std::string>& overrides, int epochs) {
  std::vector<std::string> o = overrides;
  o.push_back("train.epochs=" + std::to_string(epochs));
  ExperimentConfig cfg = load_config_text(kSyntheticYaml, "q.yaml", o);
  Experiment x = prepare(cfg);
  TrainResult r;
  for (int64_t e = 0; e < epochs; ++e) {
    Batches batches(x.data.train, cfg.train.batch_size, true, cfg.seed, e);
    double loss = 0;
    int64_t seen = 0;
    for (int64_t b = 0; b < batches.count(); ++b) {
      auto [xb, yb] = batches.get(b);
      StepStats s = train_batch(x, e, b, batches.count(), cfg.optimizer.lr, xb, yb);
      loss += s.loss_sum, seen += xb.size(0);
    }
    if (e == 0) r.first_loss = loss / double(seen);
    r.last_loss = loss / double(seen);
  }
  return r;
}

}  // namespace

TEST(QuantizedTraining, EveryRuleLowersTheLossWithBinaryWeights) {
  set_cpu_threads(1);
  const std::vector<std::vector<std::string>> rules = {
      {"rule.name=backprop"},
      {"rule.name=ep", "train.loss=mse", "model.activation=sigmoid4", "rule.beta=0.5", "optimizer.name=sgd",
       "optimizer.lr=0.2"},
      {"rule.name=ep_symmetric", "train.loss=mse", "model.activation=sigmoid4", "rule.beta=0.5",
       "optimizer.name=sgd", "optimizer.lr=0.2"},
      {"rule.name=chl", "train.loss=mse", "model.activation=sigmoid4", "optimizer.name=sgd", "optimizer.lr=0.05"},
      {"rule.name=bptt", "train.loss=mse", "model.activation=sigmoid4", "optimizer.name=sgd", "optimizer.lr=0.2"},
      {"rule.name=implicit", "train.loss=mse", "model.activation=sigmoid4", "optimizer.name=sgd",
       "optimizer.lr=0.2"},
      {"rule.name=dual_prop"},
  };
  for (const auto& r : rules) {
    TrainResult t = train_synthetic(r, 4);
    EXPECT_LT(t.last_loss, 0.9 * t.first_loss) << r[0] << ": " << t.first_loss << " -> " << t.last_loss;
  }
}

TEST(QuantizedTraining, EverySolverLowersTheLoss) {
  set_cpu_threads(1);
  const std::vector<std::vector<std::string>> solvers = {
      {"quantization.weights.solver=ste"},
      {"quantization.weights.solver=ste", "quantization.weights.rounding=stochastic"},
      {"quantization.weights.solver=adaste", "quantization.adaste.growth=10"},
      {"quantization.weights.solver=proxquant", "quantization.proxquant.freeze_epoch=100"},
      {"quantization.weights.solver=mirror"},
      {"quantization.weights.solver=mirror", "quantization.weights.quantizer=uniform", "quantization.weights.bits=2"},
      {"quantization.weights.solver=lsq", "quantization.weights.quantizer=uniform", "quantization.weights.bits=4",
       "quantization.weights.granularity=per_channel"},
      {"quantization.weights.solver=ste", "quantization.weights.quantizer=ternary", "quantization.weights.bits=2"},
      {"quantization.weights.solver=ste", "quantization.weights.quantizer=uniform", "quantization.weights.bits=3",
       "quantization.weights.symmetric=false"},
      {"quantization.weights.solver=flip", "quantization.flip.tau=1e-7", "quantization.flip.gamma=0.05",
       "quantization.weights.learn_scale=true"},
      {"quantization.weights.quantizer=none", "quantization.activations.quantizer=uniform",
       "quantization.activations.bits=2"},
      {"quantization.activations.quantizer=binary", "model.activation=hard_tanh"},
      {"quantization.weights.quantizer=uniform", "quantization.weights.bits=4", "quantization.weights.solver=lsq",
       "quantization.activations.quantizer=uniform", "quantization.activations.bits=4",
       "quantization.activations.solver=lsq", "model.activation=relu"},
  };
  for (const auto& s : solvers) {
    TrainResult t = train_synthetic(s, 4);
    std::string name;
    for (const auto& o : s) name += o + " ";
    EXPECT_LT(t.last_loss, 0.9 * t.first_loss) << name << ": " << t.first_loss << " -> " << t.last_loss;
  }
}

TEST(QuantizedTraining, FusedAdamStepEqualsTheSeparatePasses) {
  // The solver's one-pass step inside FusedAdam (backward, Adam, clip, re-quantize) against LibTorch's Adam with the
  // solver's separate backward and update passes, over two epochs of the synthetic problem.
  set_cpu_threads(1);
  for (const auto& o : std::vector<std::vector<std::string>>{
           {"quantization.weights.solver=ste", "quantization.weights.learn_scale=true",
            "quantization.weights.granularity=per_channel"},
           {"quantization.weights.solver=ste", "quantization.weights.quantizer=uniform", "quantization.weights.bits=3",
            "quantization.weights.symmetric=false", "optimizer.weight_decay=1e-3"},
           {"quantization.weights.solver=ste", "quantization.weights.quantizer=ternary", "quantization.weights.bits=2",
            "quantization.weights.rounding=stochastic"}}) {
    const ExperimentConfig cfg = load_config_text(kSyntheticYaml, "q.yaml", o);
    Experiment fused = prepare(cfg), ref = prepare(cfg);
    ref.optimizer = make_optimizer(cfg, ref.net, ref.quant.get(), /*fused=*/false);
    ASSERT_NE(dynamic_cast<FusedAdam*>(fused.optimizer.impl.get()), nullptr);
    for (int64_t e = 0; e < 2; ++e) {
      Batches batches(fused.data.train, cfg.train.batch_size, true, cfg.seed, e);
      for (int64_t b = 0; b < batches.count(); ++b) {
        auto [xb, yb] = batches.get(b);
        train_batch(fused, e, b, batches.count(), cfg.optimizer.lr, xb, yb);
        train_batch(ref, e, b, batches.count(), cfg.optimizer.lr, xb, yb);
      }
    }
    const auto pf = fused.net->named_parameters(), pr = ref.net->named_parameters();
    for (const auto& kv : pf) {
      const Tensor a = kv.value(), b = pr[kv.key()];
      // float32 rounding differs between one pass and LibTorch's operators, and a latent at a code boundary may
      // then land on the other side: a handful of weights may differ, the latents must agree closely
      const double diff = (a - b).abs().max().item<double>();
      const std::string what = o.back() + " " + kv.key();
      if (kv.key().find("weight") != std::string::npos) {  // codes that differ: a gap of a whole grid step
        const double step = 1e-2 * a.abs().max().item<double>();
        EXPECT_LT((a - b).abs().gt(step).to(torch::kFloat64).mean().item<double>(), 0.02) << what;
      } else {
        EXPECT_LT(diff, 2e-4) << what;
      }
    }
    EXPECT_GT(pf.size(), 4u);
  }
}

TEST(QuantizedTraining, TheProbesLatentGradientsAreTheSolversBackwardAndLeaveTheRunAsItWas) {
  // train.probe_solver's latent gradients: STE's is ∂ℓ/∂w where |θ| ≤ c·s and 0 elsewhere (its equation), the
  // run's own solver's is what its backward writes in training, and computing them changes nothing in the run.
  set_cpu_threads(1);
  const ExperimentConfig cfg = load_config_text(kSyntheticYaml, "q.yaml", {"quantization.weights.solver=adaste"});
  Experiment x = prepare(cfg);
  Batches batches(x.data.train, cfg.train.batch_size, true, cfg.seed, 0);
  for (int64_t b = 0; b < 3; ++b) {
    auto [xb, yb] = batches.get(b);
    train_batch(x, 0, b, batches.count(), cfg.optimizer.lr, xb, yb);
  }
  const QuantClock clock{uint64_t(cfg.seed), 0, 3, batches.count(), cfg.train.epochs, cfg.optimizer.lr};
  const auto ste = make_weight_solver("ste", cfg, "train.probe_solver");
  std::vector<Tensor> g, latents_before, grads_before;
  for (size_t l = 0; l < x.net->num_layers(); ++l) {
    g.push_back(randn(x.net->layer(l).weight.sizes().vec(), 40 + l));
    const QuantParam* p = x.quant->param(l);
    latents_before.push_back(p ? p->latent.detach().clone() : Tensor());
    grads_before.push_back(p && p->latent.grad().defined() ? p->latent.grad().clone() : Tensor());
  }
  const auto by_ste = x.quant->latent_gradients(*ste, g, clock);
  const auto by_own = x.quant->latent_gradients(x.quant->weight_solver(), g, clock);
  size_t quantized = 0;
  for (size_t l = 0; l < g.size(); ++l) {
    const QuantParam* p = x.quant->param(l);
    if (!p) {
      EXPECT_FALSE(by_ste[l].defined());
      continue;
    }
    ++quantized;
    const Tensor s = Quantizer::broadcast(p->grid.scale.detach(), p->latent);
    const Tensor mask = (p->latent.detach().abs() <= ste->saturation() * s).to(g[l].scalar_type());
    EXPECT_TRUE(torch::equal(by_ste[l], g[l] * mask)) << "layer " << l;
    // AdaSTE's backward, written into a scratch copy of the parameter the way training writes it.
    QuantParam copy = *p;
    copy.latent = p->latent.detach().clone();
    x.quant->weight_solver().backward(copy, x.quant->weight_quantizer(), g[l], clock);
    EXPECT_TRUE(torch::equal(by_own[l], copy.latent.grad())) << "layer " << l;
    EXPECT_FALSE(torch::equal(by_own[l], by_ste[l])) << "layer " << l;  // two estimators, two directions
    EXPECT_TRUE(torch::equal(p->latent.detach(), latents_before[l])) << "layer " << l;
    if (grads_before[l].defined()) EXPECT_TRUE(torch::equal(p->latent.grad(), grads_before[l])) << "layer " << l;
    else EXPECT_FALSE(p->latent.grad().defined()) << "layer " << l;
  }
  EXPECT_GT(quantized, 0u);
}

TEST(QuantizedTraining, EpAndDualPropWithQuantizedStates) {
  set_cpu_threads(1);
  for (const auto& r : std::vector<std::vector<std::string>>{
           {"rule.name=ep", "train.loss=mse", "rule.beta=0.5", "optimizer.name=sgd", "optimizer.lr=0.1",
            "quantization.activations.quantizer=uniform", "quantization.activations.bits=3"},
           {"rule.name=dual_prop", "quantization.activations.quantizer=uniform",
            "quantization.activations.bits=2"}}) {
    TrainResult t = train_synthetic(r, 4);
    EXPECT_LT(t.last_loss, 0.9 * t.first_loss) << r[0] << ": " << t.first_loss << " -> " << t.last_loss;
  }
}

TEST(QuantizedTraining, TheWeightsTheRulesSeeAreOnTheGrid) {
  set_cpu_threads(1);
  for (const auto& o : std::vector<std::vector<std::string>>{
           {"quantization.weights.quantizer=uniform", "quantization.weights.bits=3", "quantization.weights.solver=lsq"},
           // ProxQuant's last epoch (here the only one) is hard-quantized and frozen.
           {"quantization.weights.solver=proxquant"}}) {
    ExperimentConfig cfg = load_config_text(kSyntheticYaml, "q.yaml", o);
    Experiment x = prepare(cfg);
    Batches batches(x.data.train, cfg.train.batch_size, true, cfg.seed, 0);
    for (int64_t b = 0; b < 3; ++b) {
      auto [xb, yb] = batches.get(b);
      train_batch(x, 0, b, batches.count(), cfg.optimizer.lr, xb, yb);
      for (size_t l = 0; l < x.net->num_layers(); ++l) {
        const QuantParam* p = x.quant->param(l);
        ASSERT_NE(p, nullptr);
        expect_on_grid(x.quant->weight_quantizer(), x.net->layer(l).weight.detach(), p->grid);
      }
    }
  }
}

namespace {

// Trains a quantized network briefly, exports it, and compares the integer model's outputs with the fake-quantized
// network's on the test split.
void expect_export_matches(const std::vector<std::string>& overrides, double min_agreement) {
  set_cpu_threads(1);
  std::vector<std::string> o = overrides;
  ExperimentConfig cfg = load_config_text(kSyntheticYaml, "q.yaml", o);
  Experiment x = prepare(cfg);
  // A few steps so that the weights and learned steps leave their initial values.
  Batches batches(x.data.train, cfg.train.batch_size, true, cfg.seed, 0);
  for (int64_t b = 0; b < std::min<int64_t>(8, batches.count()); ++b) {
    auto [xb, yb] = batches.get(b);
    train_batch(x, 0, b, batches.count(), cfg.optimizer.lr, xb, yb);
  }
  x.net->eval();
  std::vector<std::string> warnings;
  ExportedModel m = export_model(*x.net, x.quant.get(), &warnings);
  EXPECT_TRUE(warnings.empty());
  testutil::TempDir tmp("bilevel_test_quant");
  const auto path = tmp.path() / "m.bqm";
  write_exported_model(path, m);
  IntegerModel im(read_exported_model(path));
  // Synthetic images are not 8-bit: make them so (the integer model takes k/255 inputs).
  Tensor images = (x.data.test.images.clamp(0, 1) * 255).round() / 255;
  images = images.contiguous();
  const int64_t N = images.size(0);
  Tensor ref = x.rule->predict(x.net, images);
  std::vector<float> out = im.forward(images.data_ptr<float>(), N);
  Tensor got = torch::from_blob(out.data(), {N, m.num_classes}).clone();
  const double agree = got.argmax(1).eq(ref.argmax(1)).to(torch::kFloat64).mean().item<double>();
  EXPECT_GE(agree, min_agreement);
  EXPECT_LT((got - ref).abs().max().item<double>(), 1e-3 * std::max(1.0, ref.abs().max().item<double>()));
}

}  // namespace

TEST(Export, BinaryWeightsAndActivationsXnorPathEqualsTheFakeQuantizedNetwork) {
  expect_export_matches({"model.activation=hard_tanh", "quantization.activations.quantizer=binary",
                         "model.hidden=[70, 33]"},
                        1.0);
}

TEST(Export, KBitLsqPerChannelEqualsTheFakeQuantizedNetwork) {
  expect_export_matches({"quantization.weights.quantizer=uniform", "quantization.weights.bits=4",
                         "quantization.weights.solver=lsq", "quantization.weights.granularity=per_channel",
                         "quantization.activations.quantizer=uniform", "quantization.activations.bits=4",
                         "quantization.activations.solver=lsq", "model.activation=relu"},
                        1.0);
}

TEST(Export, TernaryAsymmetricAndFullPrecisionLayers) {
  expect_export_matches({"quantization.weights.quantizer=ternary", "quantization.weights.bits=2",
                         "quantization.weights.full_precision_layers=[2]"},
                        1.0);
  expect_export_matches({"quantization.weights.quantizer=uniform", "quantization.weights.bits=3",
                         "quantization.weights.symmetric=false", "quantization.activations.quantizer=uniform",
                         "quantization.activations.bits=2"},
                        1.0);
}

TEST(Export, ConvTwoBitEqualsTheFakeQuantizedNetwork) {
  expect_export_matches({"model.kind=conv", "model.channels=[5]", "model.kernel_size=3", "model.padding=1",
                         "model.pool=2", "model.hidden=[]", "quantization.weights.quantizer=uniform",
                         "quantization.weights.bits=2", "quantization.activations.quantizer=uniform",
                         "quantization.activations.bits=2"},
                        1.0);
}

TEST(Export, PackedCodesRoundTrip) {
  for (int bits : {1, 2, 3, 5, 8}) {
    PackedWeights w;
    w.encoding = bits == 1 ? "binary" : "uint";
    w.bits = bits;
    w.code_min = bits == 1 ? -1.f : -float(1 << (bits - 1));
    w.shape = {3, 67};
    std::vector<float> codes(3 * 67);
    std::mt19937 gen(bits);
    for (auto& c : codes) {
      if (bits == 1) c = gen() % 2 ? 1.f : -1.f;
      else c = w.code_min + float(gen() % (1u << bits));
    }
    w.pack(codes);
    EXPECT_EQ(int64_t(w.words.size()), 3 * ((67 * bits + 63) / 64));
    for (int64_t r = 0; r < 3; ++r)
      for (int64_t i = 0; i < 67; ++i) ASSERT_EQ(w.code(r, i), int32_t(codes[size_t(r * 67 + i)])) << bits;
  }
}

TEST(Export, ABadFileIsNamed) {
  testutil::TempDir tmp("bilevel_test_quant");
  const auto bad = tmp.write("bad.bqm", "not a model");
  try {
    read_exported_model(bad);
    FAIL() << "no error";
  } catch (const UserError& e) {
    EXPECT_TRUE(testutil::contains(e.what(), "bad.bqm")) << e.what();
  }
}

// ---------------------------------------------------------------- validation

TEST(QuantConfig, BadInputFailsAtValidationNamingTheKey) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"quantization.weights.bits=9"}, "quantization.weights.bits"},
      {{"quantization.weights.bits=0"}, "quantization.weights.bits"},
      {{"quantization.weights.quantizer=quinary"}, "quantization.weights.quantizer"},
      {{"quantization.weights.solver=magic"}, "quantization.weights.solver"},
      {{"quantization.weights.solver=lsq"}, "quantization.weights.solver"},  // lsq on binary
      {{"quantization.weights.solver=flip", "quantization.weights.quantizer=uniform", "quantization.weights.bits=4"},
       "quantization.weights.solver"},
      {{"quantization.weights.quantizer=ternary"}, "quantization.weights.bits"},
      {{"quantization.activations.quantizer=binary", "rule.name=implicit", "train.loss=mse",
        "model.activation=sigmoid"},
       "quantization.activations.quantizer"},
      {{"quantization.activations.quantizer=uniform", "quantization.activations.bits=4",
        "quantization.activations.solver=lsq", "rule.name=dual_prop"},
       "quantization.activations.solver"},
      {{"quantization.activations.quantizer=binary", "model.activation=relu"}, "quantization.activations.quantizer"},
      {{"quantization.weights.full_precision_layers=[7]"}, "quantization.weights.full_precision_layers"},
      {{"quantization.weights.solver=flip", "quantization.flip.layer_taus=[1e-5,1e-5,1e-5]"},
       "quantization.flip.layer_taus"},  // one more than the layers
      {{"model.layer_gains=[0.5]"}, "model.layer_gains"},
      {{"train.probe_every=1", "train.probe_solver=magic"}, "train.probe_solver"},
      {{"train.probe_every=1", "train.probe_solver=flip"}, "train.probe_solver"},
      {{"train.probe_every=1", "train.probe_solver=ste", "quantization.weights.solver=flip"}, "train.probe_solver"},
      {{"train.probe_every=1", "train.probe_solver=ste", "quantization.enabled=false"}, "train.probe_solver"},
  };
  for (const auto& [overrides, key] : cases) {
    std::string name;
    for (const auto& o : overrides) name += o + " ";
    try {
      ExperimentConfig cfg = load_config_text(kSyntheticYaml, "q.yaml", overrides);
      prepare(cfg);
      ADD_FAILURE() << name << ": no error";
    } catch (const ConfigError& e) {
      EXPECT_TRUE(testutil::contains(e.what(), key)) << name << ": " << e.what();
    }
  }
}

TEST(QuantConfig, CliRejectsBadQuantizationBeforeCreatingARunDirectory) {
  testutil::TempDir tmp("bilevel_test_quant");
  const auto cfg = tmp.write("q.yaml", kSyntheticYaml);
  const auto out = tmp.path() / "out";
  auto r = testutil::run_cli({"train", cfg, "output.root=" + out.string(), "quantization.weights.solver=lsq"});
  EXPECT_EQ(r.exit_code, 2) << r.describe();
  EXPECT_TRUE(testutil::contains(r.err, "quantization.weights.solver")) << r.describe();
  EXPECT_FALSE(std::filesystem::exists(out));
}
