// Backprop: its gradient equals a finite-difference gradient of the batch-mean loss (float64, mse and
// cross-entropy, mlp and conv), and training with it on synthetic data lowers the loss and learns the task.
#include <gtest/gtest.h>

#include <torch/types.h>
#include <torch/utils.h>

#include <cmath>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/nn/layered_net.h"
#include "bilevel/nn/objective.h"
#include "bilevel/rules/backprop.h"
#include "bilevel/run/run_dir.h"
#include "bilevel/runner.h"
#include "bilevel/train/experiment.h"
#include "bilevel/train/trainer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace bilevel;
using namespace testutil;

namespace {

// ---------------------------------------------------------------- finite differences

ModelConfig mlp_model(const std::string& activation) {
  ModelConfig m;
  m.kind = "mlp";
  m.activation = activation;
  m.hidden = {5, 4};
  m.init = "default";
  m.init_gain = 1.0;
  return m;
}

ModelConfig conv_model(const std::string& activation) {
  ModelConfig m = mlp_model(activation);
  m.kind = "conv";
  m.channels = {2};
  m.kernel_size = 3;
  m.padding = 1;
  m.pool = 2;
  m.hidden = {4};
  return m;
}

// Compares Backprop::train_step's gradient with central differences of the mean loss for a spread of entries
// of every weight and bias.
void check_gradient(const ModelConfig& model, const std::string& loss, std::vector<int64_t> input_shape) {
  torch::manual_seed(3);
  Backprop rule(make_objective(loss));
  LayeredNet net(model, input_shape, 3, rule.objective().activate_output());
  net->to(torch::kFloat64);
  std::vector<int64_t> batch_shape{6};
  batch_shape.insert(batch_shape.end(), input_shape.begin(), input_shape.end());
  const torch::Tensor x = torch::rand(batch_shape, torch::kFloat64);
  const torch::Tensor y = torch::tensor({0, 1, 2, 2, 1, 0}, torch::kInt64);

  auto mean_loss = [&] {
    torch::NoGradGuard no_grad;
    return rule.objective().loss(net->forward(x), y).mean().item<double>();
  };

  net->zero_grad();
  const StepStats stats = rule.train_step(net, x, y);
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor out = net->forward(x);
    EXPECT_NEAR(stats.loss_sum, rule.objective().loss(out, y).sum().item<double>(), 1e-12);
    EXPECT_EQ(stats.correct, out.argmax(1).eq(y).sum().item<int64_t>());
    EXPECT_TRUE(torch::equal(rule.predict(net, x), out));
  }

  const double h = 1e-6;
  int checked = 0;
  for (size_t l = 0; l < net->num_layers(); ++l) {
    for (torch::Tensor p : {net->layer(l).weight, net->layer(l).bias}) {
      ASSERT_EQ(p.scalar_type(), torch::kFloat64);
      ASSERT_TRUE(p.grad().defined()) << "layer " << l << " has no gradient";
      ASSERT_TRUE(p.is_contiguous());
      const torch::Tensor grad = p.grad().contiguous();
      const int64_t n = p.numel();
      for (int64_t k : {int64_t(0), n / 3, n / 2, n - 1}) {
        double* data = p.data_ptr<double>();
        const double orig = data[k];
        data[k] = orig + h;
        const double up = mean_loss();
        data[k] = orig - h;
        const double down = mean_loss();
        data[k] = orig;
        const double fd = (up - down) / (2 * h);
        const double bp = grad.data_ptr<double>()[k];
        EXPECT_NEAR(bp, fd, 1e-6 * std::max(1.0, std::fabs(fd)))
            << loss << " layer " << l << (p.dim() == 1 ? " bias" : " weight") << " entry " << k;
        ++checked;
      }
    }
  }
  EXPECT_GE(checked, 12);
  // Not all zero: the check is not vacuous.
  double norm = 0;
  for (const auto& p : net->parameters()) norm += p.grad().norm().item<double>();
  EXPECT_GT(norm, 1e-6);
}

// ---------------------------------------------------------------- training on synthetic data

const char* kLearnYaml = R"(experiment:
  name: learn
seed: 2
data:
  name: synthetic
  validation: 100
  synthetic:
    train: 600
    test: 200
    image_size: 4
    classes: 4
model:
  kind: mlp
  hidden: [16]
train:
  epochs: 6
  batch_size: 32
  threads: 1
optimizer:
  name: adam
  lr: 0.01
)";

// Trains with prepare + Trainer in a fresh run directory; returns metrics.csv.
Csv train_in_process(const ExperimentConfig& cfg, const fs::path& root) {
  Experiment x = prepare(cfg);
  RunDir dir = RunDir::create(root, cfg.name);
  Trainer trainer(x, dir);
  const TrainProgress p = trainer.run(TrainProgress{});
  EXPECT_EQ(p.epoch, cfg.train.epochs);
  return read_csv(dir.metrics());
}

void expect_learned(const Csv& m, int64_t epochs, double min_accuracy) {
  ASSERT_EQ(m.rows.size(), size_t(epochs));
  const auto train_loss = m.values("train_loss");
  const auto test_loss = m.values("test_loss");
  const double chance = 0.25;
  EXPECT_GT(train_loss.front(), 2 * train_loss.back()) << "the training loss did not fall";
  EXPECT_GT(test_loss.front(), test_loss.back());
  EXPECT_GE(m.values("test_accuracy").back(), min_accuracy);
  EXPECT_GT(m.values("test_accuracy").back(), chance + 0.5);
  EXPECT_GE(m.values("train_accuracy").back(), min_accuracy);
  for (double v : train_loss) EXPECT_TRUE(std::isfinite(v));
}

}  // namespace

TEST(BackpropGradient, MlpMseMatchesFiniteDifferences) { check_gradient(mlp_model("tanh"), "mse", {1, 2, 3}); }

TEST(BackpropGradient, MlpCrossEntropyMatchesFiniteDifferences) {
  check_gradient(mlp_model("tanh"), "cross_entropy", {1, 2, 3});
}

TEST(BackpropGradient, MlpSigmoidMseMatchesFiniteDifferences) {
  check_gradient(mlp_model("sigmoid"), "mse", {2, 2, 2});
}

TEST(BackpropGradient, ConvCrossEntropyMatchesFiniteDifferences) {
  check_gradient(conv_model("tanh"), "cross_entropy", {1, 4, 4});
}

TEST(BackpropGradient, ConvMseMatchesFiniteDifferences) { check_gradient(conv_model("tanh"), "mse", {2, 4, 4}); }

TEST(BackpropGradient, GradientsAccumulateUntilZeroed) {
  // The trainer zeroes gradients before each step; train_step itself adds to them.
  torch::manual_seed(0);
  Backprop rule(make_objective("cross_entropy"));
  LayeredNet net(mlp_model("relu"), std::vector<int64_t>{1, 2, 2}, int64_t{3}, false);
  const torch::Tensor x = torch::rand({4, 1, 2, 2});
  const torch::Tensor y = torch::tensor({0, 1, 2, 0}, torch::kInt64);
  net->zero_grad();
  rule.train_step(net, x, y);
  const torch::Tensor once = net->layer(0).weight.grad().clone();
  rule.train_step(net, x, y);
  EXPECT_TRUE(torch::allclose(net->layer(0).weight.grad(), 2 * once));
}

TEST(BackpropTraining, MlpLearnsSyntheticData) {
  TempDir tmp;
  ExperimentConfig cfg = load_config_text(kLearnYaml, "learn.yaml", {"output.root=" + tmp.path().string()});
  // Through the runner, as `bilevel train` does.
  fs::path created;
  RunOutcome out = start_run(cfg, "test", [&](const RunDir& d) { created = d.root; });
  EXPECT_EQ(out.status, "completed");
  EXPECT_EQ(out.progress.epoch, 6);
  EXPECT_EQ(created, out.dir.root);
  EXPECT_TRUE(fs::exists(out.dir.final_model()));
  expect_learned(read_csv(out.dir.metrics()), 6, 0.9);

  // eval_run evaluates final.pt on the test split: it agrees with the last row.
  const Csv m = read_csv(out.dir.metrics());
  const EvalResult e = eval_run(out.dir.root);
  EXPECT_EQ(e.count, 200);
  EXPECT_DOUBLE_EQ(e.accuracy, m.values("test_accuracy").back());
  EXPECT_NEAR(e.loss, m.values("test_loss").back(), 1e-12);
}

TEST(BackpropTraining, MlpWithMseAndSigmoidLearns) {
  TempDir tmp;
  ExperimentConfig cfg = load_config_text(kLearnYaml, "learn.yaml",
                                          {"train.loss=mse", "model.activation=sigmoid", "train.epochs=8"});
  expect_learned(train_in_process(cfg, tmp.path()), 8, 0.9);
}

TEST(BackpropTraining, ConvLearnsSyntheticData) {
  TempDir tmp;
  ExperimentConfig cfg = load_config_text(kLearnYaml, "learn.yaml",
                                          {"model.kind=conv", "model.channels=[4]", "model.kernel_size=3",
                                           "model.padding=1", "model.pool=2", "data.synthetic.image_size=6"});
  expect_learned(train_in_process(cfg, tmp.path()), 6, 0.9);
}

TEST(BackpropTraining, SgdLowersTheLoss) {
  TempDir tmp;
  ExperimentConfig cfg =
      load_config_text(kLearnYaml, "learn.yaml", {"optimizer.name=sgd", "optimizer.lr=0.2", "optimizer.momentum=0.9"});
  expect_learned(train_in_process(cfg, tmp.path()), 6, 0.9);
}
