// A plugin as a user would write one (`bilevel --plugin libbilevel_sample_plugin.so ...`): four components the
// library does not ship, each registered with one BILEVEL_REGISTER line through the public API, built against
// bilevel::plugin (headers only: the registries are the host command's). tests/test_plugin.cpp drives it.
#include <torch/torch.h>

#include <cmath>

#include "bilevel/data/data_source.h"
#include "bilevel/nn/activation.h"
#include "bilevel/quant/quantizer.h"
#include "bilevel/registry.h"
#include "bilevel/rules/learning_rule.h"
#include "bilevel/rules/registry.h"

namespace {

// A ternary grid with threshold 0.5·s instead of TWN's 0.7·s: q = sign(x)·[|x| > 0.5].
class HalfTernary final : public bilevel::Quantizer {
 public:
  using Quantizer::Quantizer;
  std::string name() const override { return "half_ternary"; }
  int storage_bits() const override { return 2; }
  float code_min() const override { return -1.f; }
  float code_max() const override { return 1.f; }
  bilevel::GridParams fit(const torch::Tensor& theta) const override { return {mean_abs(theta), torch::Tensor()}; }
  float code(float x) const override { return std::abs(x) > 0.5f ? (x > 0 ? 1.f : -1.f) : 0.f; }
  float code_stochastic(float x, float u) const override {
    const float a = std::min(std::abs(x), 1.f);  // P(|q| = 1) = |x| on [−1, 1]
    return u < a ? (x > 0 ? 1.f : -1.f) : 0.f;
  }
};

// Images of one horizontal stripe: class c lights row 2c of a 1×8×8 image, plus noise drawn from the seed.
class Stripes final : public bilevel::DataSource {
 public:
  explicit Stripes(const bilevel::DataConfig& d)
      : train_(d.keys["train"].as<int64_t>()), test_(d.keys["test"].as<int64_t>()) {}
  bilevel::DataShape shape() const override { return {{1, 8, 8}, 4, train_, test_}; }
  std::pair<bilevel::Dataset, bilevel::Dataset> load(int64_t seed) const override {
    return {make(train_, seed * 2 + 1), make(test_, seed * 2 + 2)};
  }

 private:
  static bilevel::Dataset make(int64_t n, int64_t seed) {
    torch::Generator g = torch::make_generator<at::CPUGeneratorImpl>(uint64_t(seed));
    bilevel::Dataset d;
    d.labels = torch::randint(0, 4, {n}, g, torch::kInt64);
    d.images = torch::rand({n, 1, 8, 8}, g) * 0.3;
    for (int64_t i = 0; i < n; ++i) d.images[i][0][2 * d.labels[i].item<int64_t>()] += 0.7;
    d.num_classes = 4;
    d.name = "stripes";
    return d;
  }
  int64_t train_, test_;
};

// A learning rule: backprop on the loss scaled by rule.gain (a rule defined in one file, with a key of its own).
class GainBackprop final : public bilevel::LearningRule {
 public:
  GainBackprop(std::unique_ptr<bilevel::Objective> o, double gain) : LearningRule(std::move(o)), gain_(gain) {}
  std::string name() const override { return "gain_backprop"; }
  bilevel::StepStats train_step(bilevel::LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) override {
    const torch::Tensor out = net->forward(x);
    const torch::Tensor loss = objective_->loss(out, y);
    (loss.mean() * gain_).backward();
    bilevel::StepStats s;
    s.loss_sum = loss.sum().item<double>();
    s.correct = out.argmax(1).eq(y).sum().item<int64_t>();
    return s;
  }
  torch::Tensor predict(bilevel::LayeredNet& net, const torch::Tensor& x) override { return net->forward(x); }

 private:
  double gain_;
};

torch::Tensor softsign(const torch::Tensor& x) { return x / (1 + x.abs()); }
torch::Tensor softsign_d(const torch::Tensor& x) { return 1 / (1 + x.abs()).pow(2); }

bilevel::KeySpec count(std::string name, std::string def, std::string help) {
  bilevel::KeySpec k = bilevel::component_key(std::move(name), bilevel::ValueType::Int, std::move(def), std::move(help));
  k.min = 1;
  return k;
}

}  // namespace

BILEVEL_REGISTER(bilevel::quantizers(), {"half_ternary", "{-1, 0, 1}·scale with threshold 0.5·scale (a plugin's)", {}},
                 [](const bilevel::QuantizerOptions& o) { return std::make_unique<HalfTernary>(o); });
BILEVEL_REGISTER(bilevel::data_sets(),
                 {"stripes", "one horizontal stripe per class, 1×8×8 (a plugin's)",
                  {count("train", "400", "training examples"), count("test", "200", "test examples")}},
                 [](const bilevel::DataConfig& d) { return std::make_unique<Stripes>(d); });
BILEVEL_REGISTER(bilevel::rules(),
                 {"gain_backprop", "backprop on the loss times rule.gain (a plugin's)",
                  {[] {
                    bilevel::KeySpec k = bilevel::component_key("gain", bilevel::ValueType::Float, "1.0", "loss factor");
                    k.min = 0, k.min_exclusive = true;
                    return k;
                  }()}},
                 [](const bilevel::ExperimentConfig& cfg) {
                   return std::make_unique<GainBackprop>(bilevel::objective_for(cfg), cfg.get<double>("rule.gain"));
                 });
BILEVEL_REGISTER(bilevel::activations(), {"softsign", "x / (1 + |x|) (a plugin's)", {}},
                 [](const bilevel::ExperimentConfig&) {
                   return std::make_unique<bilevel::Activation>(bilevel::Activation{"softsign", softsign, softsign_d, -1, 1});
                 });
