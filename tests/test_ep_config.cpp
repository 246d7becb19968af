// Config validation of the energy-based family: invalid hyperparameters fail when the config is validated
// (load_config_text + make_rule, as the trainer does before anything runs), with the key in the message; the
// shipped EP configs load and build their rules.
#include <gtest/gtest.h>

#include "bilevel/config/config.h"
#include "bilevel/config/schema.h"
#include "bilevel/rules/ep.h"
#include "bilevel/rules/registry.h"
#include "test_paths.h"

using namespace bilevel;

namespace {

const std::string kBase = R"(
model:
  kind: mlp
  hidden: [13]
  activation: sigmoid4
rule:
  name: ep
train:
  loss: mse
)";

// Expects validation of `overrides` on kBase to throw a ConfigError about `key` whose message contains `words`.
void expect_invalid(const std::vector<std::string>& overrides, const std::string& key, const std::string& words) {
  try {
    auto cfg = load_config_text(kBase, "test.yaml", overrides);
    make_rule(cfg);
    ADD_FAILURE() << "no error for " << overrides.front();
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), key) << e.what();
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(EpConfig, SchemaHasTheEnergyKeys) {
  for (const char* k : {"rule.beta", "rule.random_sign", "solver.name", "solver.free_steps", "solver.nudged_steps",
                        "solver.tol", "rule.linear_solver", "rule.linear_steps", "rule.linear_tol"}) {
    const Schema schema = Schema::global().selected({{"rule", k[5] == 'l' ? "implicit" : "ep"}, {"solver", "fixed_point"}});
    const KeySpec* spec = schema.find(k);
    ASSERT_NE(spec, nullptr) << k << " (registered with its rule or solver)";
    EXPECT_FALSE(spec->help.empty()) << k;
  }
  for (const char* r : {"ep", "ep_symmetric", "chl", "bptt", "implicit"}) {
    auto names = rule_names();
    EXPECT_NE(std::find(names.begin(), names.end(), r), names.end()) << r;
  }
}

TEST(EpConfig, ValidConfigBuildsEveryRule) {
  for (const std::string algo : {"ep", "ep_symmetric", "chl", "bptt", "implicit"}) {
    auto cfg = load_config_text(kBase, "test.yaml", {"rule.name=" + algo, "solver.name=layerwise"});
    auto rule = make_rule(cfg);
    EXPECT_EQ(rule->name(), algo);
    auto* er = dynamic_cast<EnergyRule*>(rule.get());
    ASSERT_NE(er, nullptr);
    EXPECT_EQ(er->options().solver, "layerwise");
    EXPECT_EQ(er->options().free_steps, 30);
    EXPECT_EQ(er->options().nudged_steps, 10);
    EXPECT_DOUBLE_EQ(er->options().beta, 0.1);
  }
}

TEST(EpConfig, ZeroBetaFailsForEp) {
  expect_invalid({"rule.beta=0"}, "rule.beta", "nonzero");
  expect_invalid({"rule.name=ep_symmetric", "rule.beta=0.0"}, "rule.beta", "nonzero");
  // chl and the exact-gradient rules have no β: setting one is an error that names the rules that do.
  for (const std::string algo : {"chl", "bptt", "implicit"})
    expect_invalid({"rule.name=" + algo, "rule.beta=0"}, "rule.beta", "belongs to rule 'ep'");
  // A negative β is a valid one-sided estimate.
  EXPECT_NO_THROW(make_rule(load_config_text(kBase, "test.yaml", {"rule.beta=-0.1"})));
}

TEST(EpConfig, ZeroStepsFailAtValidation) {
  EXPECT_THROW(load_config_text(kBase, "test.yaml", {"solver.free_steps=0"}), ConfigError);
  EXPECT_THROW(load_config_text(kBase, "test.yaml", {"solver.nudged_steps=0"}), ConfigError);
  EXPECT_THROW(load_config_text(kBase, "test.yaml", {"solver.tol=-1"}), ConfigError);
  EXPECT_THROW(load_config_text(kBase, "test.yaml", {"rule.linear_steps=0"}), ConfigError);
  try {
    load_config_text(kBase, "test.yaml", {"solver.free_steps=0"});
  } catch (const ConfigError& e) {
    EXPECT_EQ(e.key(), "solver.free_steps");
    EXPECT_NE(std::string(e.what()).find("solver.free_steps"), std::string::npos) << e.what();
  }
}

TEST(EpConfig, BadActivationOrSolverFails) {
  EXPECT_THROW(load_config_text(kBase, "test.yaml", {"model.activation=sigmoid5"}), ConfigError);
  EXPECT_THROW(load_config_text(kBase, "test.yaml", {"solver.name=anderson"}), ConfigError);
  EXPECT_THROW(load_config_text(kBase, "test.yaml", {"rule.linear_solver=gmres"}), ConfigError);
  // A real activation that defines no energy (non-monotone): the rule factory rejects it.
  expect_invalid({"model.activation=silu"}, "model.activation", "not monotone");
  // backprop is happy with it.
  EXPECT_NO_THROW(
      make_rule(load_config_text(kBase, "test.yaml", {"model.activation=silu", "rule.name=backprop"})));
}

TEST(EpConfig, CrossKeyChecks) {
  expect_invalid({"rule.name=chl", "train.loss=cross_entropy"}, "train.loss", "mse");
  expect_invalid({"rule.name=ep_symmetric", "rule.random_sign=true"}, "rule.random_sign", "belongs to rule 'ep'");
  expect_invalid({"train.loss=cross_entropy", "model.hidden=[]"}, "model.hidden", "hidden layer");
}

TEST(EpConfig, ShippedConfigsLoad) {
  for (const std::string name :
       {"fmnist_mlp_ep", "fmnist_mlp_ep_symmetric", "fmnist_mlp_chl", "fmnist_conv_ep"}) {
    const std::string path = std::string(BILEVEL_SOURCE_DIR) + "/configs/" + name + ".yaml";
    auto cfg = load_config(path);
    auto rule = make_rule(cfg);
    EXPECT_EQ(cfg.name, name);
    EXPECT_FALSE(rule->diagnostic_columns().empty()) << name;
  }
  auto cfg = load_config(std::string(BILEVEL_SOURCE_DIR) + "/configs/fmnist_mlp_ep.yaml");
  EXPECT_EQ(cfg.train.batch_size, 50);
  EXPECT_EQ(cfg.model.activation, "sigmoid4");
  EXPECT_DOUBLE_EQ(cfg.optimizer.lr, 5e-4);
  EXPECT_EQ((cfg.get<int64_t>("solver.free_steps")), 30);
  EXPECT_EQ((cfg.get<int64_t>("solver.nudged_steps")), 10);
  // Any layered model trains with any rule by changing only rule.name.
  for (const std::string algo : {"backprop", "ep_symmetric", "chl", "bptt", "implicit"})
    EXPECT_NO_THROW(make_rule(load_config(std::string(BILEVEL_SOURCE_DIR) + "/configs/fmnist_mlp_ep.yaml",
                                          {"rule.name=" + algo})))
        << algo;
}
