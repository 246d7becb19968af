// The energy-based rules on every layered model: conv + max/avg-pool gradients (implicit vs BPTT vs EP), every rule
// trains every model (mlp/conv × mse/cross_entropy), predict is the free equilibrium's output, diagnostics are
// reported as declared, and the random sign of β is a deterministic function of the batch.
#include <gtest/gtest.h>
#include <torch/optim/adam.h>

#include <set>

#include "oracle/ep_test_support.h"

using namespace ep_test;
using namespace bilevel;
using torch::Tensor;

namespace {

std::unique_ptr<EnergyRule> make(const std::string& name, const std::string& loss, EnergyRuleOptions o) {
  auto obj = make_objective(loss);
  if (name == "ep") return std::make_unique<EquilibriumPropagation>(std::move(obj), o, EquilibriumPropagation::Estimator::OneSided);
  if (name == "ep_symmetric")
    return std::make_unique<EquilibriumPropagation>(std::move(obj), o, EquilibriumPropagation::Estimator::Symmetric);
  if (name == "chl") return std::make_unique<ContrastiveHebbian>(std::move(obj), o);
  if (name == "bptt") return std::make_unique<BackpropThroughTime>(std::move(obj), o);
  return std::make_unique<ImplicitDifferentiation>(std::move(obj), o);
}

std::pair<Tensor, Tensor> batch_for(LayeredNet& net, int64_t B, uint64_t seed, torch::ScalarType dtype) {
  torch::manual_seed(seed);
  auto shape = net->input_shape();
  shape.insert(shape.begin(), B);
  return {torch::rand(shape, dtype), torch::randint(0, net->num_classes(), {B}, torch::kLong)};
}

}  // namespace

TEST(EpRules, ConvPoolingGradientsAgree) {
  for (const std::string pooling : {"max", "avg"})
  for (const std::string loss : {"mse", "cross_entropy"}) {
    auto net = make_conv("sigmoid4", loss, 0.5, 21, {3, 2}, 10, 2, pooling);
    auto [x, y] = batch_for(net, 4, 5, torch::kFloat64);
    auto opt = converged_options();
    auto implicit = make("implicit", loss, opt);
    Tensor gi = gradient_of(*implicit, net, x, y);
    opt.free_steps = 400;
    opt.tol = 0;
    auto bptt = make("bptt", loss, opt);
    Tensor gb = gradient_of(*bptt, net, x, y);
    EXPECT_LT(rel(gi, gb), 1e-8) << pooling << "/" << loss;
    auto o2 = converged_options();
    o2.beta = 0.01;
    auto sym = make("ep_symmetric", loss, o2);
    const double e_sym = rel(gradient_of(*sym, net, x, y), gi);
    auto one = make("ep", loss, o2);
    const double e_one = rel(gradient_of(*one, net, x, y), gi);
    std::cout << pooling << "/" << loss << ": conv implicit vs bptt " << rel(gi, gb) << ", ep_symmetric(β=0.01) " << e_sym
              << ", ep(β=0.01) " << e_one << "\n";
    EXPECT_LT(e_sym, 1e-3) << pooling << "/" << loss;
    EXPECT_LT(e_one, 0.05) << pooling << "/" << loss;
    EXPECT_LT(e_sym, e_one) << pooling << "/" << loss;
  }
}

TEST(EpRules, PiecewiseLinearImplicitMatchesBptt) {
  // hard_sigmoid: D ∈ {0, 1}; the IFT holds away from the box faces.
  for (const std::string loss : {"mse", "cross_entropy"}) {
    auto net = make_mlp(9, {12, 6}, 4, "hard_sigmoid", loss, 1.0, 4);
    auto [x, y] = batch_for(net, 6, 8, torch::kFloat64);
    auto opt = converged_options();
    Tensor gi = gradient_of(*make("implicit", loss, opt), net, x, y);
    opt.free_steps = 300;
    opt.tol = 0;
    Tensor gb = gradient_of(*make("bptt", loss, opt), net, x, y);
    EXPECT_LT(rel(gi, gb), 1e-8) << loss;
    opt = converged_options("layerwise");
    opt.beta = 0.01;
    EXPECT_LT(rel(gradient_of(*make("ep_symmetric", loss, opt), net, x, y), gi), 1e-2) << loss;
  }
}

TEST(EpRules, EveryRuleTrainsEveryModel) {
  for (const std::string kind : {"mlp", "conv"}) {
    for (const std::string loss : {"mse", "cross_entropy"}) {
      for (const std::string name : {"ep", "ep_symmetric", "chl", "bptt", "implicit"}) {
        if (name == "chl" && loss == "cross_entropy") continue;
        for (const std::string solver : {"fixed_point", "layerwise"}) {
          const std::string what = kind + "/" + loss + "/" + name + "/" + solver;
          torch::manual_seed(2);
          ModelConfig m;
          m.kind = kind;
          m.activation = "sigmoid4";
          m.hidden = kind == "mlp" ? std::vector<int64_t>{17} : std::vector<int64_t>{};
          m.channels = {4};
          m.kernel_size = 3;
          m.padding = 1;
          m.pool = 2;
          m.init = "default";
          LayeredNet net(m, std::vector<int64_t>{1, 9, 9}, 3, loss == "mse");
          EnergyRuleOptions o;
          o.solver = solver;
          o.free_steps = 20;
          o.nudged_steps = 8;
          o.beta = 0.5;
          auto rule = make(name, loss, o);
          torch::manual_seed(3);
          // A learnable problem: the class is which third of the image is brightest.
          auto x = torch::rand({30, 1, 9, 9}) * 0.3;
          auto y = torch::randint(0, 3, {30}, torch::kLong);
          for (int64_t i = 0; i < 30; ++i) {
            const int64_t c = y[i].item<int64_t>();
            x[i].narrow(1, 3 * c, 3).add_(0.7);
          }
          torch::optim::Adam adam(net->parameters(), torch::optim::AdamOptions(0.02));
          double first = 0, last = 0;
          for (int it = 0; it < 25; ++it) {
            adam.zero_grad();
            auto st = rule->train_step(net, x, y);
            st.resolve();
            if (it == 0) {
              first = st.loss_sum;
              auto cols = rule->diagnostic_columns();
              ASSERT_EQ(cols.size(), st.diagnostics.size()) << what;
              for (auto& c : cols) EXPECT_TRUE(st.diagnostics.count(c)) << what << " " << c;
              EXPECT_GE(st.diagnostics.at("free_steps"), 1) << what;
              for (auto& p : net->parameters()) {
                ASSERT_TRUE(p.grad().defined()) << what;
                EXPECT_TRUE(torch::isfinite(p.grad()).all().item<bool>()) << what;
              }
            }
            last = st.loss_sum;
            adam.step();
          }
          EXPECT_LT(last, 0.7 * first) << what << ": loss " << first << " -> " << last;
          auto out = rule->predict(net, x);
          EXPECT_EQ(out.sizes(), (std::vector<int64_t>{30, 3})) << what;
          EXPECT_FALSE(out.requires_grad()) << what;
        }
      }
    }
  }
}

TEST(EpRules, PredictIsTheFreeEquilibriumOutput) {
  // Two hidden layers: with one, the read-out sends no feedback and the equilibrium is the feedforward pass.
  auto net = make_mlp(7, {8, 6}, 3, "sigmoid4", "cross_entropy", 1.0, 9);
  auto [x, y] = batch_for(net, 5, 1, torch::kFloat64);
  auto rule = make("ep", "cross_entropy", converged_options());
  auto out = rule->predict(net, x);
  const auto& free = rule->relax_free(net, x, y);
  auto logits = torch::addmm(net->layer(2).bias, free.s[1], net->layer(2).weight.t());
  EXPECT_LT((out - logits).abs().max().item<double>(), 1e-14);
  // The equilibrium is not the feedforward pass (the feedback matters).
  EXPECT_GT((out - net->forward(x)).abs().max().item<double>(), 1e-6);
}

TEST(EpRules, RandomSignIsADeterministicFunctionOfTheBatch) {
  EnergyRuleOptions o;
  o.random_sign = true;
  o.beta = 0.2;
  o.seed = 5;
  EquilibriumPropagation a(make_objective("mse"), o, EquilibriumPropagation::Estimator::OneSided);
  EquilibriumPropagation b(make_objective("mse"), o, EquilibriumPropagation::Estimator::OneSided);
  std::set<double> seen;
  for (int i = 0; i < 40; ++i) {
    torch::manual_seed(100 + i);
    auto y = torch::randint(0, 10, {50}, torch::kLong);
    const double beta = a.batch_beta(y);
    EXPECT_EQ(beta, b.batch_beta(y.clone()));
    EXPECT_EQ(std::abs(beta), 0.2);
    seen.insert(beta);
  }
  EXPECT_EQ(seen.size(), 2u);
  o.random_sign = false;
  o.beta = -0.2;
  EquilibriumPropagation fixed(make_objective("mse"), o, EquilibriumPropagation::Estimator::OneSided);
  EXPECT_EQ(fixed.batch_beta(torch::zeros({3}, torch::kLong)), -0.2);
}

// Backprop through a float32 conv net (the channels-last path) gives float64 autograd's gradients up to float32
// rounding: every layer's weight gradient, so the input gradients between the conv layers are right too.
TEST(EpRules, Float32ConvBackpropMatchesFloat64) {
  auto net64 = make_conv("sigmoid4", "mse", 0.5, 23, {4, 5}, 12);
  auto net32 = make_conv("sigmoid4", "mse", 0.5, 23, {4, 5}, 12);
  net32->to(torch::kFloat32);
  auto [x, y] = batch_for(net64, 6, 9, torch::kFloat64);
  auto grads = [&](LayeredNet& net, const Tensor& xb) {
    for (auto& p : net->parameters()) p.mutable_grad() = Tensor();
    net->forward(xb).pow(2).sum().backward();
    std::vector<Tensor> g;
    for (auto& p : net->parameters()) g.push_back(p.grad().to(torch::kFloat64));
    return g;
  };
  const auto g64 = grads(net64, x), g32 = grads(net32, x.to(torch::kFloat32));
  ASSERT_EQ(g64.size(), g32.size());
  for (size_t i = 0; i < g64.size(); ++i) EXPECT_LT(rel(g32[i], g64[i]), 1e-4) << "parameter " << i;
}

// float32 conv layers take the channels-last path inside the relaxation (layered_energy.cpp, conv_input); float64
// keeps NCHW. The same network and batch in both precisions: same free states, same switches, same EP gradient
// up to float32 rounding.
TEST(EpRules, Float32ConvRelaxationMatchesFloat64) {
  for (const std::string loss : {"mse", "cross_entropy"}) {
    auto net64 = make_conv("sigmoid4", loss, 0.5, 23, {4, 5}, 12);
    auto net32 = make_conv("sigmoid4", loss, 0.5, 23, {4, 5}, 12);
    net32->to(torch::kFloat32);
    auto [x, y] = batch_for(net64, 6, 9, torch::kFloat64);
    auto opt = converged_options();
    opt.free_steps = 60;
    opt.nudged_steps = 20;
    opt.tol = 0;
    opt.beta = 0.1;
    auto r64 = make("ep", loss, opt), r32 = make("ep", loss, opt);
    const auto& f64 = r64->relax_free(net64, x, y);
    const auto& f32 = r32->relax_free(net32, x.to(torch::kFloat32), y);
    for (size_t k = 0; k < f64.s.size(); ++k)
      EXPECT_LT((f32.s[k].to(torch::kFloat64) - f64.s[k]).abs().max().item<double>(), 1e-5) << loss << " state " << k;
    for (size_t l = 0; l < f64.pool.size(); ++l)
      if (f64.pool[l].defined()) EXPECT_TRUE(torch::equal(f32.pool[l], f64.pool[l])) << loss << " switches " << l;
    const Tensor g64 = gradient_of(*r64, net64, x, y);
    const Tensor g32 = gradient_of(*r32, net32, x.to(torch::kFloat32), y).to(torch::kFloat64);
    EXPECT_LT(rel(g32, g64), 1e-4) << loss;
  }
}
