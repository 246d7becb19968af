// The example's rules against theory and through the CLI: fa with B = W and dfa (one hidden layer) with D = W_2
// equal backprop's gradient; random feedback still trains; the keys validate; the project's CLI lists them.
#include <gtest/gtest.h>

#include <bilevel/config/config.h>
#include <bilevel/data/batches.h>
#include <bilevel/registry.h>
#include <bilevel/train/experiment.h>
#include <bilevel/train/trainer.h>

#include <cstdio>
#include <memory>
#include <string>

#include "feedback_alignment.h"

using namespace bilevel;
using torch::Tensor;

namespace {

const char* kYaml = R"(experiment:
  name: fa_test
data:
  name: synthetic
  validation: 0
  synthetic:
    train: 512
    test: 128
    image_size: 5
    classes: 3
model:
  kind: mlp
  hidden: [17, 11]
  activation: tanh
rule:
  name: fa
train:
  batch_size: 32
  epochs: 3
  threads: 1
optimizer:
  name: adam
  lr: 0.003
)";

struct Registered : ::testing::Environment {
  void SetUp() override { fa::register_rules(); }
};
const auto* env = ::testing::AddGlobalTestEnvironment(new Registered);

// Backprop's gradient of every parameter on one batch, and the rule's.
std::vector<Tensor> gradients(Experiment& x, LearningRule& rule, const Tensor& xb, const Tensor& yb) {
  x.net->zero_grad();
  rule.train_step(x.net, xb, yb);
  std::vector<Tensor> g;
  for (size_t l = 0; l < x.net->num_layers(); ++l) {
    g.push_back(x.net->layer(l).weight.grad().clone());
    g.push_back(x.net->layer(l).bias.grad().clone());
  }
  return g;
}

}  // namespace

TEST(FeedbackAlignment, WithTheTrueWeightsFaIsBackprop) {
  auto cfg = load_config_text(kYaml, "fa.yaml");
  Experiment x = prepare(cfg);
  auto [xb, yb] = Batches(x.data.train, 32, true, 0, 0).get(0);
  auto bp = make_rule(with_rule(cfg, "backprop"));
  auto& rule = dynamic_cast<fa::FeedbackAlignment&>(*x.rule);
  std::vector<Tensor> w;
  for (size_t l = 1; l < x.net->num_layers(); ++l) w.push_back(x.net->layer(l).weight.detach().clone());
  rule.set_feedback(w);
  const auto ga = gradients(x, rule, xb, yb), gb = gradients(x, *bp, xb, yb);
  for (size_t i = 0; i < ga.size(); ++i) EXPECT_TRUE(torch::allclose(ga[i], gb[i], 1e-5, 1e-7)) << i;
  // and random feedback differs from backprop in the hidden layers
  rule.set_feedback({});
  const auto gr = gradients(x, rule, xb, yb);
  EXPECT_FALSE(torch::allclose(gr[0], gb[0], 1e-3, 1e-5));
  EXPECT_TRUE(torch::allclose(gr[4], gb[4], 1e-5, 1e-7));  // the output layer's gradient is backprop's
}

TEST(FeedbackAlignment, DfaWithOneHiddenLayerAndDEqualW2IsBackprop) {
  auto cfg = load_config_text(kYaml, "fa.yaml", {"rule.name=dfa", "model.hidden=[19]"});
  Experiment x = prepare(cfg);
  auto [xb, yb] = Batches(x.data.train, 32, true, 0, 0).get(0);
  auto bp = make_rule(with_rule(cfg, "backprop"));
  auto& rule = dynamic_cast<fa::FeedbackAlignment&>(*x.rule);
  rule.set_feedback({x.net->layer(1).weight.detach().clone()});
  const auto ga = gradients(x, rule, xb, yb), gb = gradients(x, *bp, xb, yb);
  for (size_t i = 0; i < ga.size(); ++i) EXPECT_TRUE(torch::allclose(ga[i], gb[i], 1e-5, 1e-7)) << i;
}

TEST(FeedbackAlignment, FeedbackIsDrawnFromTheSeedAlone) {
  auto cfg = load_config_text(kYaml, "fa.yaml", {"rule.name=dfa"});
  Experiment a = prepare(cfg), b = prepare(cfg);
  auto& ra = dynamic_cast<fa::FeedbackAlignment&>(*a.rule);
  auto& rb = dynamic_cast<fa::FeedbackAlignment&>(*b.rule);
  ASSERT_EQ(ra.feedback(a.net).size(), 2u);
  for (size_t i = 0; i < 2; ++i) EXPECT_TRUE(torch::equal(ra.feedback(a.net)[i], rb.feedback(b.net)[i]));
  Experiment c = prepare(load_config_text(kYaml, "fa.yaml", {"rule.name=dfa", "rule.feedback_seed=2"}));
  EXPECT_FALSE(torch::equal(ra.feedback(a.net)[0], dynamic_cast<fa::FeedbackAlignment&>(*c.rule).feedback(c.net)[0]));
}

TEST(FeedbackAlignment, BothRulesTrain) {
  for (const std::string rule : {"fa", "dfa"}) {
    auto cfg = load_config_text(kYaml, "fa.yaml", {"rule.name=" + rule});
    Experiment x = prepare(cfg);
    double first = 0, last = 0;
    const int64_t epochs = 8;
    for (int64_t e = 0; e < epochs; ++e) {
      Batches batches(x.data.train, cfg.train.batch_size, true, cfg.seed, e);
      double loss = 0;
      for (int64_t b = 0; b < batches.count(); ++b) {
        auto [xb, yb] = batches.get(b);
        loss += train_batch(x, e, b, batches.count(), cfg.optimizer.lr, xb, yb).loss_sum;
      }
      if (e == 0) first = loss;
      last = loss;
    }
    EXPECT_LT(last, 0.8 * first) << rule << ": first epoch's loss " << first << ", last " << last;
  }
}

TEST(FeedbackAlignment, KeysAreValidatedAndBelongToTheRules) {
  EXPECT_THROW(load_config_text(kYaml, "fa.yaml", {"rule.feedback_scale=0"}), ConfigError);
  EXPECT_THROW(load_config_text(kYaml, "fa.yaml", {"rule.name=backprop", "rule.feedback_seed=3"}), ConfigError);
  try {
    load_config_text(kYaml, "fa.yaml", {"rule.feedback_scal=2"});
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("rule.feedback_scale"), std::string::npos) << e.what();
  }
}

TEST(FeedbackAlignment, TheProjectsCliListsTheRulesAndTheirKeys) {
  std::string out;
  FILE* p = popen(FA_CLI " train --help", "r");
  ASSERT_NE(p, nullptr);
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0);
  for (const char* s : {"dfa", "direct feedback alignment", "rule.feedback_seed", "rule.feedback_scale", "ep"})
    EXPECT_NE(out.find(s), std::string::npos) << s;
}
