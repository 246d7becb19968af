// Device smoke test (issue 25): every quantization solver with backprop, ep and dual_prop, and every learning rule
// in full precision, two training steps on every available device: the CPU always; CUDA in builds with the CUDA
// kernels, where each case skips cleanly (GTEST_SKIP) on a machine without a GPU. Tiny networks on the synthetic data set, so the whole
// suite runs in seconds. Each case checks what a device bug would break: the steps run, the loss is finite, every
// parameter is still on the device and finite, and training moved the weights.
//
// Combinations the config validation rejects are skipped with its message. None is rejected today: every solver
// is given a grid it serves (lsq: uniform 4-bit, symmetric; the others: binary), and the energy rules (ep) train
// with mse and sigmoid4, as their validation requires.
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <cmath>
#include <ostream>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/data/batches.h"
#include "bilevel/kernels/fused_ops.h"
#include "bilevel/registry.h"
#include "bilevel/train/experiment.h"
#include "bilevel/train/trainer.h"
#include "bilevel/util/error.h"
#include "bilevel/util/threads.h"

using namespace bilevel;

namespace {

const char* kYaml = R"(experiment:
  name: smoke
seed: 5
data:
  name: synthetic
  validation: 0
  synthetic:
    train: 64
    test: 32
    image_size: 4
    classes: 4
model:
  kind: mlp
  hidden: [12]
  activation: hard_sigmoid
solver:
  name: fixed_point
  free_steps: 8
  nudged_steps: 3
train:
  epochs: 1
  batch_size: 16
  threads: 1
optimizer:
  name: adam
  lr: 0.01
)";

struct SmokeCase {
  std::string name;                    // test name suffix
  std::vector<std::string> overrides;  // on kYaml
  std::string device;                  // cpu | cuda
};

std::vector<std::string> rule_overrides(const std::string& rule) {
  std::vector<std::string> o{"rule.name=" + rule};
  if (rule != "backprop" && rule != "dual_prop")  // the energy rules: a bounded activation and mse outputs
    for (const char* k : {"train.loss=mse", "model.activation=sigmoid4"}) o.push_back(k);
  return o;
}

std::vector<std::string> solver_overrides(const std::string& solver) {
  std::vector<std::string> o{"quantization.enabled=true", "quantization.weights.solver=" + solver};
  if (solver == "lsq")
    for (const char* k : {"quantization.weights.quantizer=uniform", "quantization.weights.bits=4"}) o.push_back(k);
  else
    o.push_back("quantization.weights.quantizer=binary");
  return o;
}

// CUDA cases only in builds with the CUDA kernels (they skip there without a GPU): a CPU-only build would start
// a test process per case just to skip it, which CI pays for twice (native and against LibTorch 2.6).
std::vector<SmokeCase> all_cases() {
  std::vector<SmokeCase> out;
  for (const std::string device : {"cpu", "cuda"}) {
    if (device == "cuda" && !kernels::cuda_kernels_built()) continue;
    for (const std::string solver : {"ste", "adaste", "lsq", "proxquant", "mirror", "flip"})
      for (const std::string rule : {"backprop", "ep", "dual_prop"}) {
        std::vector<std::string> o = rule_overrides(rule);
        for (const auto& s : solver_overrides(solver)) o.push_back(s);
        out.push_back({solver + "_" + rule + "_" + device, o, device});
      }
    for (const std::string& rule : rules().names())
      out.push_back({"fp32_" + rule + "_" + device, rule_overrides(rule), device});
  }
  return out;
}

// gtest prints a parameter with this (otherwise as raw bytes, in every skipped test's line of ctest's summary).
void PrintTo(const SmokeCase& c, std::ostream* os) { *os << c.name; }

class DeviceSmoke : public ::testing::TestWithParam<SmokeCase> {};

}  // namespace

TEST_P(DeviceSmoke, TwoStepsTrainOnTheDevice) {
  const SmokeCase& c = GetParam();
  if (c.device == "cuda") {
    if (!kernels::cuda_kernels_built()) GTEST_SKIP() << "this build has no CUDA kernels";
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  }
  set_cpu_threads(1);
  std::vector<std::string> o = c.overrides;
  o.push_back("train.device=" + c.device);
  ExperimentConfig cfg = load_config_text(kYaml, "smoke.yaml", o);
  Experiment x;
  try {
    x = prepare(cfg);
  } catch (const ConfigError& e) {
    GTEST_SKIP() << "the config validation rejects this combination: " << e.what();
  }
  const torch::Device device(c.device);
  std::vector<torch::Tensor> before;
  for (const auto& p : x.net->parameters()) before.push_back(p.detach().clone());
  Batches batches(x.data.train, cfg.train.batch_size, true, cfg.seed, 0);
  ASSERT_GE(batches.count(), 2);
  for (int64_t b = 0; b < 2; ++b) {
    auto [xb, yb] = batches.get(b);
    const StepStats s = train_batch(x, 0, b, batches.count(), cfg.optimizer.lr, xb.to(device), yb.to(device));
    EXPECT_TRUE(std::isfinite(s.loss_sum)) << "step " << b;
    EXPECT_GT(s.loss_sum, 0.0) << "step " << b;
    EXPECT_GE(s.correct, 0);
    EXPECT_LE(s.correct, xb.size(0));
  }
  double moved = 0;
  size_t i = 0;
  for (const auto& p : x.net->parameters()) {
    EXPECT_EQ(p.device().type(), device.type());
    EXPECT_TRUE(torch::isfinite(p.detach()).all().item<bool>());
    moved += (p.detach().to(torch::kCPU, torch::kFloat64) - before[i++].to(torch::kCPU, torch::kFloat64)).abs().sum().item<double>();
  }
  EXPECT_GT(moved, 0.0) << "two steps changed no parameter";
}

INSTANTIATE_TEST_SUITE_P(EverySolverAndRule, DeviceSmoke, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<SmokeCase>& info) { return info.param.name; });
