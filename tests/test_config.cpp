// The config loader: defaults, file values, typed command-line overrides, validation errors that name the key,
// the file and the line, cross-key checks, and the resolved config's round trip and hash.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/data/data_source.h"
#include "bilevel/nn/activation.h"
#include "bilevel/nn/objective.h"
#include "bilevel/quant/quantization.h"
#include "bilevel/quant/quantizer.h"
#include "bilevel/registry.h"
#include "bilevel/rules/registry.h"
#include "bilevel/config/schema.h"
#include "bilevel/train/experiment.h"
#include "bilevel/util/error.h"
#include "test_util.h"

using namespace bilevel;
using testutil::contains;

namespace {

// Loads `yaml` as "cfg.yaml"; returns the ConfigError it throws, or nothing when it loads.
std::optional<ConfigError> config_error(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    load_config_text(yaml, "cfg.yaml", overrides);
  } catch (const ConfigError& e) {
    return e;
  }
  return std::nullopt;
}

// The ConfigError thrown by prepare() on a config that loads.
std::optional<ConfigError> prepare_error(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  ExperimentConfig cfg = load_config_text(yaml, "cfg.yaml", overrides);
  try {
    prepare(cfg);
  } catch (const ConfigError& e) {
    return e;
  }
  return std::nullopt;
}

// Asserts the error names `key`, "cfg.yaml:LINE" and every fragment of `expect`.
void expect_file_error(const std::optional<ConfigError>& e, const std::string& key, int line,
                       const std::vector<std::string>& expect = {}) {
  ASSERT_TRUE(e.has_value()) << "expected a ConfigError for key " << key;
  const std::string what = e->what();
  EXPECT_EQ(e->key(), key) << what;
  EXPECT_EQ(e->where().file, "cfg.yaml") << what;
  EXPECT_EQ(e->where().line, line) << what;
  EXPECT_TRUE(contains(what, "cfg.yaml:" + std::to_string(line) + ":")) << what;
  if (!key.empty()) {
    EXPECT_TRUE(contains(what, "'" + key + "'")) << what;
  }
  for (const auto& s : expect) EXPECT_TRUE(contains(what, s)) << "missing '" << s << "' in: " << what;
}

// A small synthetic experiment that prepare() can build in milliseconds.
const char* kSynthetic = R"(experiment:
  name: cfgtest
data:
  name: synthetic
  validation: 10
  synthetic:
    train: 60
    test: 20
    image_size: 4
    classes: 3
model:
  kind: mlp
  hidden: [8]
train:
  threads: 1
)";

}  // namespace

// ---------------------------------------------------------------- defaults, file values, overrides

TEST(ConfigDefaults, EmptyFileResolvesEveryDefault) {
  ExperimentConfig c = load_config_text("", "cfg.yaml");
  EXPECT_EQ(c.name, "experiment");
  EXPECT_EQ(c.seed, 0);
  EXPECT_FALSE(c.deterministic);
  EXPECT_EQ(c.data.name, "fashion_mnist");
  EXPECT_EQ(c.data.validation, 5000);
  EXPECT_EQ(c.data.train_limit, 0);
  EXPECT_EQ(c.data.synthetic_train, 2000);
  EXPECT_EQ(c.data.synthetic_classes, 4);
  EXPECT_EQ(c.model.kind, "mlp");
  EXPECT_EQ(c.model.hidden, (std::vector<int64_t>{512}));
  EXPECT_EQ(c.model.channels, (std::vector<int64_t>{32, 64}));
  EXPECT_EQ(c.model.activation, "relu");
  EXPECT_EQ(c.rule.name, "backprop");
  EXPECT_EQ(c.train.loss, "cross_entropy");
  EXPECT_EQ(c.train.epochs, 10);
  EXPECT_EQ(c.train.batch_size, 64);
  EXPECT_EQ(c.train.device, "cpu");
  EXPECT_EQ(c.optimizer.name, "adam");
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 1e-3);
  EXPECT_TRUE(c.optimizer.layer_lrs.empty());
  EXPECT_DOUBLE_EQ(c.optimizer.momentum, 0.0);
  EXPECT_DOUBLE_EQ(c.optimizer.beta2, 0.999);
  EXPECT_DOUBLE_EQ(c.optimizer.eps, 1e-8);
  EXPECT_EQ(c.scheduler.name, "none");
  EXPECT_EQ(c.checkpoint_every, 1);
  EXPECT_EQ(c.output_root, "runs");
  EXPECT_EQ(c.location("train.epochs").origin, "default");
  EXPECT_EQ(c.source_file, "cfg.yaml");
}

TEST(ConfigDefaults, EverySchemaKeyHasAResolvedValue) {
  ExperimentConfig c = load_config_text("", "cfg.yaml");
  ASSERT_FALSE(Schema::global().keys().empty());
  for (const auto& k : Schema::global().keys()) {
    EXPECT_TRUE(lookup(c.tree, k.path).IsDefined()) << k.path;
    EXPECT_EQ(c.location(k.path).origin, "default") << k.path;
  }
}

TEST(ConfigDefaults, EmptySectionIsAccepted) {
  ExperimentConfig c = load_config_text("train:\noptimizer:\n", "cfg.yaml");
  EXPECT_EQ(c.train.epochs, 10);
}

TEST(ConfigFile, FileValuesOverrideDefaults) {
  const std::string yaml = R"(experiment:
  name: mine
seed: 7
model:
  hidden: [256, 128]
  activation: tanh
train:
  epochs: 3
  batch_size: 16
optimizer:
  name: sgd
  lr: 0.05
  momentum: 0.9
scheduler:
  name: cosine
  min_lr: 1e-4
)";
  ExperimentConfig c = load_config_text(yaml, "cfg.yaml");
  EXPECT_EQ(c.name, "mine");
  EXPECT_EQ(c.seed, 7);
  EXPECT_EQ(c.model.hidden, (std::vector<int64_t>{256, 128}));
  EXPECT_EQ(c.model.activation, "tanh");
  EXPECT_EQ(c.train.epochs, 3);
  EXPECT_EQ(c.train.batch_size, 16);
  EXPECT_EQ(c.optimizer.name, "sgd");
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 0.05);
  EXPECT_DOUBLE_EQ(c.optimizer.momentum, 0.9);
  EXPECT_EQ(c.scheduler.name, "cosine");
  EXPECT_DOUBLE_EQ(c.scheduler.min_lr, 1e-4);
  // Untouched keys keep their defaults.
  EXPECT_EQ(c.train.eval_batch_size, 1000);
  EXPECT_EQ(c.data.name, "fashion_mnist");
  // Each value remembers its line.
  EXPECT_EQ(c.location("train.epochs").file, "cfg.yaml");
  EXPECT_EQ(c.location("train.epochs").line, 8);
  EXPECT_EQ(c.location("optimizer.lr").line, 12);
  EXPECT_EQ(c.location("train.eval_batch_size").origin, "default");
  // Generic typed access reads the same tree.
  EXPECT_EQ(c.get<int64_t>("train.epochs"), 3);
  EXPECT_DOUBLE_EQ(c.get<double>("optimizer.lr"), 0.05);
  EXPECT_EQ(c.get<std::string>("model.activation"), "tanh");
  EXPECT_EQ(c.get<std::vector<int64_t>>("model.hidden"), (std::vector<int64_t>{256, 128}));
  EXPECT_FALSE(c.get<bool>("optimizer.nesterov"));
  EXPECT_THROW(c.get<int64_t>("train.no_such_key"), std::logic_error);
}

TEST(ConfigFile, LoadConfigReadsAFile) {
  testutil::TempDir dir;
  const std::string file = dir.write("exp.yaml", "train:\n  epochs: 4\n");
  ExperimentConfig c = load_config(file, {"train.batch_size=8"});
  EXPECT_EQ(c.train.epochs, 4);
  EXPECT_EQ(c.train.batch_size, 8);
  EXPECT_EQ(c.source_file, file);
  EXPECT_EQ(c.location("train.epochs").file, file);
  EXPECT_EQ(c.location("train.epochs").line, 2);
  EXPECT_EQ(c.overrides, (std::vector<std::string>{"train.batch_size=8"}));
}

TEST(ConfigFile, MissingFileIsAConfigErrorNamingIt) {
  try {
    load_config("/nonexistent/dir/exp.yaml");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), "/nonexistent/dir/exp.yaml")) << e.what();
  }
}

TEST(ConfigFile, QuickstartConfigLoads) {
  ExperimentConfig c = load_config(std::string(BILEVEL_SOURCE_DIR) + "/configs/quickstart.yaml");
  EXPECT_EQ(c.name, "quickstart");
  EXPECT_EQ(c.rule.name, "backprop");
  EXPECT_EQ(c.model.hidden, (std::vector<int64_t>{256}));
}

TEST(ConfigOverrides, OverridesBeatTheFile) {
  const std::string yaml = "train:\n  epochs: 3\n  batch_size: 16\n";
  ExperimentConfig c = load_config_text(yaml, "cfg.yaml", {"train.epochs=5"});
  EXPECT_EQ(c.train.epochs, 5);
  EXPECT_EQ(c.train.batch_size, 16);
  EXPECT_TRUE(contains(c.location("train.epochs").origin, "command-line override")) << c.location("train.epochs").str();
  EXPECT_EQ(c.location("train.batch_size").line, 3);
  // The last override of a key wins.
  ExperimentConfig d = load_config_text(yaml, "cfg.yaml", {"train.epochs=5", "train.epochs=2"});
  EXPECT_EQ(d.train.epochs, 2);
}

TEST(ConfigOverrides, TypedGrammar) {
  ExperimentConfig c = load_config_text("", "cfg.yaml",
                                        {"train.epochs=7", "optimizer.lr=1e-3", "optimizer.weight_decay=.5",
                                         "optimizer.name=sgd", "optimizer.momentum=0.9", "optimizer.nesterov=true",
                                         "deterministic=true", "experiment.name=my_run", "model.hidden=[256,128]",
                                         "optimizer.layer_lrs=[0.1,1e-2]", "scheduler.gamma=1"});
  EXPECT_EQ(c.train.epochs, 7);
  EXPECT_DOUBLE_EQ(c.optimizer.lr, 0.001);
  EXPECT_DOUBLE_EQ(c.optimizer.weight_decay, 0.5);
  EXPECT_EQ(c.optimizer.name, "sgd");
  EXPECT_DOUBLE_EQ(c.optimizer.momentum, 0.9);
  EXPECT_TRUE(c.optimizer.nesterov);
  EXPECT_TRUE(c.deterministic);
  EXPECT_EQ(c.name, "my_run");
  EXPECT_EQ(c.model.hidden, (std::vector<int64_t>{256, 128}));
  EXPECT_EQ(c.optimizer.layer_lrs, (std::vector<double>{0.1, 0.01}));
  EXPECT_DOUBLE_EQ(c.scheduler.gamma, 1.0);  // an integer is a valid float
}

TEST(ConfigOverrides, ListWithSpacesAndQuotedString) {
  ExperimentConfig c = load_config_text("", "cfg.yaml", {"model.hidden=[64, 32, 16]", "experiment.name='a b'"});
  EXPECT_EQ(c.model.hidden, (std::vector<int64_t>{64, 32, 16}));
  EXPECT_EQ(c.name, "a b");
}

TEST(ConfigOverrides, PlusPrefixSetsAKey) {
  ExperimentConfig c = load_config_text("train:\n  batch_size: 8\n", "cfg.yaml", {"+train.batch_size=16", "++seed=3"});
  EXPECT_EQ(c.train.batch_size, 16);
  EXPECT_EQ(c.seed, 3);
}

TEST(ConfigOverrides, TildeResetsToTheDefault) {
  const std::string yaml = "train:\n  epochs: 3\nmodel:\n  hidden: [8]\n";
  ExperimentConfig c = load_config_text(yaml, "cfg.yaml", {"~train.epochs", "~model.hidden"});
  EXPECT_EQ(c.train.epochs, 10);
  EXPECT_EQ(c.model.hidden, (std::vector<int64_t>{512}));
  EXPECT_TRUE(contains(c.location("train.epochs").origin, "default")) << c.location("train.epochs").str();
  // A reset followed by a set: the set wins.
  ExperimentConfig d = load_config_text(yaml, "cfg.yaml", {"~train.epochs", "train.epochs=4"});
  EXPECT_EQ(d.train.epochs, 4);
  // Resetting a key equals never having set it.
  EXPECT_EQ(load_config_text(yaml, "cfg.yaml", {"~train.epochs"}).hash(),
            load_config_text("model:\n  hidden: [8]\n", "cfg.yaml").hash());
}

// ---------------------------------------------------------------- validation errors: unknown keys

TEST(ConfigErrors, UnknownTopLevelKeyNamesFileLineAndKey) {
  const std::string yaml = "experiment:\n  name: t\ntrian:\n  epochs: 3\n";
  expect_file_error(config_error(yaml), "trian", 3, {"unknown key"});
}

TEST(ConfigErrors, UnknownSectionSuggestsTheClosestSection) {
  const std::string yaml = "experiment:\n  name: t\ntrian:\n  epochs: 3\n";
  auto e = config_error(yaml);
  ASSERT_TRUE(e);
  EXPECT_TRUE(contains(e->what(), "did you mean 'train")) << e->what();
}

TEST(ConfigErrors, UnknownNestedKeySuggestsTheClosestKey) {
  const std::string yaml = "experiment:\n  name: t\ntrain:\n  batch_size: 8\n  epoch: 3\n";
  expect_file_error(config_error(yaml), "train.epoch", 5, {"unknown key", "did you mean 'train.epochs'?"});
}

TEST(ConfigErrors, UnknownKeyDeepInASection) {
  const std::string yaml = "data:\n  name: synthetic\n  synthetic:\n    train: 10\n    clases: 3\n";
  expect_file_error(config_error(yaml), "data.synthetic.clases", 5, {"did you mean 'data.synthetic.classes'?"});
}

TEST(ConfigErrors, LearningRateSuggestsLr) {
  // src/config/schema.cpp documents that Schema::closest finds "optimizer.lr" for "optimizer.learning_rate".
  const std::string yaml = "optimizer:\n  name: sgd\n  learning_rate: 0.1\n";
  expect_file_error(config_error(yaml), "optimizer.learning_rate", 3, {"unknown key", "'optimizer.lr'"});
}

TEST(ConfigErrors, FarFetchedKeyGetsNoSuggestion) {
  auto e = config_error("zzzzzzzzzzzzzzzzzz: 1\n");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->key(), "zzzzzzzzzzzzzzzzzz");
  EXPECT_FALSE(contains(e->what(), "did you mean")) << e->what();
}

TEST(ConfigErrors, SchemaClosestFindsKeys) {
  const Schema& s = Schema::global();
  EXPECT_EQ(s.closest("train.epoch"), "train.epochs");
  EXPECT_EQ(s.closest("train.batchsize"), "train.batch_size");
  EXPECT_EQ(s.closest("optimizer.momentun"), "optimizer.momentum");
  EXPECT_EQ(closest_match("backprob", {"backprop", "ep", "chl"}), "backprop");
  EXPECT_EQ(closest_match("qqqqqqqq", {"backprop", "ep", "chl"}), "");
}

// ---------------------------------------------------------------- validation errors: types

TEST(ConfigErrors, StringForAnInt) {
  const std::string yaml = "# header comment\nexperiment:\n  name: t\ntrain:\n  epochs: three\n";
  expect_file_error(config_error(yaml), "train.epochs", 5, {"expected an integer", "three"});
}

TEST(ConfigErrors, FloatForAnInt) {
  expect_file_error(config_error("train:\n  batch_size: 2.5\n"), "train.batch_size", 2, {"expected an integer"});
}

TEST(ConfigErrors, ListForAScalar) {
  expect_file_error(config_error("train:\n  epochs: [1, 2]\n"), "train.epochs", 2, {"expected an integer"});
}

TEST(ConfigErrors, MappingForAScalar) {
  const std::string yaml = "optimizer:\n  lr:\n    value: 0.1\n";
  auto e = config_error(yaml);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->key(), "optimizer.lr");
  EXPECT_TRUE(contains(e->what(), "mapping")) << e->what();
  EXPECT_TRUE(contains(e->what(), "expected a number")) << e->what();
  // The value's mapping starts on line 3.
  EXPECT_EQ(e->where().line, 3) << e->what();
}

TEST(ConfigErrors, ScalarForAList) {
  expect_file_error(config_error("model:\n  kind: mlp\n  hidden: 5\n"), "model.hidden", 3,
                    {"expected a list of integers", "not a list"});
}

TEST(ConfigErrors, BadListElement) {
  expect_file_error(config_error("model:\n  hidden: [8, x]\n"), "model.hidden", 2, {"'x'"});
}

TEST(ConfigErrors, BadBoolean) {
  expect_file_error(config_error("deterministic: maybe\n"), "deterministic", 1, {"expected a boolean"});
}

TEST(ConfigErrors, ScalarForASection) {
  expect_file_error(config_error("experiment:\n  name: t\ntrain: 3\n"), "train", 3, {"section"});
}

TEST(ConfigErrors, EmptyValueReportsTheKeysLine) {
  // "epochs:" with nothing after it is a null value; the error belongs to line 2, where the key is.
  expect_file_error(config_error("train:\n  epochs:\nmodel:\n  kind: mlp\n"), "train.epochs", 2,
                    {"expected an integer"});
}

TEST(ConfigErrors, NonScalarKeyIsAConfigError) {
  // A mapping key that is not a plain name must be reported as a config error (exit 2), not escape as a
  // YAML conversion exception (exit 1).
  auto e = config_error("train:\n  epochs: 3\n[1, 2]: 3\n");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->where().line, 3) << e->what();
}

TEST(ConfigErrors, ConfigMustBeAMapping) {
  auto e = config_error("- a\n- b\n");
  ASSERT_TRUE(e);
  EXPECT_TRUE(contains(e->what(), "cfg.yaml:1")) << e->what();
  EXPECT_TRUE(contains(e->what(), "mapping")) << e->what();
}

// ---------------------------------------------------------------- validation errors: ranges and choices

TEST(ConfigErrors, BatchSizeZero) {
  const std::string yaml = "experiment:\n  name: t\ntrain:\n  epochs: 3\n  batch_size: 0\n";
  expect_file_error(config_error(yaml), "train.batch_size", 5, {"expected an integer >= 1", "'0'"});
}

TEST(ConfigErrors, NegativeLearningRate) {
  const std::string yaml = "optimizer:\n  name: sgd\n  lr: -0.1\n";
  expect_file_error(config_error(yaml), "optimizer.lr", 3, {"> 0", "-0.1"});
}

TEST(ConfigErrors, ZeroLearningRate) {
  expect_file_error(config_error("optimizer:\n  lr: 0\n"), "optimizer.lr", 2, {"> 0"});
}

TEST(ConfigErrors, NegativeListElement) {
  expect_file_error(config_error("optimizer:\n  layer_lrs: [0.1, -1]\n"), "optimizer.layer_lrs", 2, {"-1"});
}

TEST(ConfigErrors, BetaAboveOne) {
  expect_file_error(config_error("optimizer:\n  beta1: 1.5\n"), "optimizer.beta1", 2, {"[0, 1]"});
}

TEST(ConfigErrors, NegativeValidation) {
  expect_file_error(config_error("data:\n  validation: -1\n"), "data.validation", 2, {">= 0"});
}

TEST(ConfigErrors, UnknownAlgorithmListsTheChoices) {
  const std::string yaml = "experiment:\n  name: t\nrule:\n  name: foo\n";
  expect_file_error(config_error(yaml), "rule.name", 4, {"foo", "backprop"});
}

TEST(ConfigErrors, MisspelledAlgorithmSuggestsBackprop) {
  const std::string yaml = "rule:\n  name: backprob\n";
  expect_file_error(config_error(yaml), "rule.name", 2, {"did you mean 'backprop'?"});
}

TEST(ConfigErrors, UnknownActivation) {
  const std::string yaml = "model:\n  kind: mlp\n  activation: relux\n";
  expect_file_error(config_error(yaml), "model.activation", 3, {"relux", "tanh", "did you mean 'relu'?"});
}

TEST(ConfigErrors, UnknownChoiceOfOptimizer) {
  expect_file_error(config_error("optimizer:\n  name: rmsprop\n"), "optimizer.name", 2, {"sgd", "adam"});
}

// ---------------------------------------------------------------- invalid YAML

TEST(ConfigErrors, InvalidYamlReportsTheLine) {
  const std::string yaml = "experiment:\n  name: t\ntrain:\n  epochs: 3\n    batch_size: 4\noptimizer:\n  lr: 0.1\n";
  auto e = config_error(yaml);
  ASSERT_TRUE(e);
  EXPECT_TRUE(contains(e->what(), "invalid YAML")) << e->what();
  EXPECT_EQ(e->where().line, 5) << e->what();
  EXPECT_TRUE(contains(e->what(), "cfg.yaml:5:")) << e->what();
}

TEST(ConfigErrors, UnterminatedFlowListIsInvalidYaml) {
  auto e = config_error("model:\n  hidden: [1,\ntrain: {\n");
  ASSERT_TRUE(e);
  EXPECT_TRUE(contains(e->what(), "invalid YAML")) << e->what();
  EXPECT_TRUE(contains(e->what(), "cfg.yaml:")) << e->what();
  EXPECT_GT(e->where().line, 0) << e->what();
}

// ---------------------------------------------------------------- bad overrides

TEST(ConfigOverrideErrors, MissingEquals) {
  auto e = config_error("", {"train.epochs"});
  ASSERT_TRUE(e);
  EXPECT_TRUE(contains(e->what(), "command-line override 'train.epochs'")) << e->what();
  EXPECT_TRUE(contains(e->what(), "key.path=value")) << e->what();
  EXPECT_TRUE(contains(e->where().origin, "command-line override")) << e->what();
}

TEST(ConfigOverrideErrors, UnknownKeySuggestsTheClosest) {
  auto e = config_error("train:\n  epochs: 3\n", {"train.epoch=3"});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->key(), "train.epoch");
  EXPECT_EQ(e->where().line, 0);
  EXPECT_TRUE(contains(e->what(), "command-line override 'train.epoch=3'")) << e->what();
  EXPECT_TRUE(contains(e->what(), "did you mean 'train.epochs'?")) << e->what();
}

TEST(ConfigOverrideErrors, UnknownKeyInReset) {
  auto e = config_error("", {"~train.epoch"});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->key(), "train.epoch");
  EXPECT_TRUE(contains(e->what(), "command-line override")) << e->what();
}

TEST(ConfigOverrideErrors, SectionOverride) {
  auto e = config_error("", {"train=3"});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->key(), "train");
  EXPECT_TRUE(contains(e->what(), "section")) << e->what();
}

TEST(ConfigOverrideErrors, WrongTypes) {
  struct Case {
    std::string override_text, key, fragment;
  };
  for (const Case& c : std::vector<Case>{{"optimizer.lr=abc", "optimizer.lr", "expected a number"},
                                         {"train.epochs=2.5", "train.epochs", "expected an integer"},
                                         {"train.batch_size=0", "train.batch_size", ">= 1"},
                                         {"optimizer.lr=-1e-3", "optimizer.lr", "> 0"},
                                         {"model.hidden=5", "model.hidden", "not a list"},
                                         {"train.epochs=[1,2]", "train.epochs", "expected an integer"},
                                         {"optimizer.nesterov=yes please", "optimizer.nesterov", "boolean"},
                                         {"rule.name=backprob", "rule.name", "did you mean 'backprop'?"}}) {
    auto e = config_error("", {c.override_text});
    ASSERT_TRUE(e) << c.override_text;
    EXPECT_EQ(e->key(), c.key) << e->what();
    EXPECT_TRUE(contains(e->what(), "command-line override '" + c.override_text + "'")) << e->what();
    EXPECT_TRUE(contains(e->what(), c.fragment)) << e->what();
  }
}

TEST(ConfigOverrideErrors, FileErrorsComeBeforeOverrides) {
  // A bad file value is reported even when an override would replace it: the file is validated as written.
  auto e = config_error("train:\n  epochs: x\n", {"train.epochs=3"});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->where().line, 2);
}

// ---------------------------------------------------------------- cross-key checks

TEST(ConfigCrossKey, ValidationNotBelowTrainLimit) {
  const std::string yaml = "data:\n  train_limit: 100\n  validation: 100\n";
  expect_file_error(config_error(yaml), "data.validation", 3, {"data.train_limit"});
  EXPECT_FALSE(config_error("data:\n  train_limit: 100\n  validation: 99\n"));
}

TEST(ConfigCrossKey, ValidationNotBelowSyntheticTrain) {
  const std::string yaml = "data:\n  name: synthetic\n  validation: 50\n  synthetic:\n    train: 50\n";
  expect_file_error(config_error(yaml), "data.validation", 3, {"data.synthetic.train"});
}

TEST(ConfigCrossKey, ValidationSetByOverrideIsReportedAsOverride) {
  auto e = config_error("data:\n  train_limit: 100\n", {"data.validation=500"});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->key(), "data.validation");
  EXPECT_TRUE(contains(e->what(), "command-line override 'data.validation=500'")) << e->what();
}

TEST(ConfigCrossKey, AdamWithMomentum) {
  const std::string yaml = "optimizer:\n  name: adam\n  momentum: 0.9\n";
  expect_file_error(config_error(yaml), "optimizer.momentum", 3, {"sgd"});
  EXPECT_FALSE(config_error("optimizer:\n  name: sgd\n  momentum: 0.9\n"));
}

TEST(ConfigCrossKey, NesterovNeedsSgdMomentum) {
  const std::string yaml = "optimizer:\n  name: sgd\n  nesterov: true\n";
  expect_file_error(config_error(yaml), "optimizer.nesterov", 3, {"momentum"});
}

TEST(ConfigCrossKey, LayerLrsCountIsCheckedByPrepare) {
  // hidden [8] + the output layer = 2 layers; 3 learning rates on line 17.
  const std::string yaml = std::string(kSynthetic) + "optimizer:\n  layer_lrs: [0.1, 0.2, 0.3]\n";
  ASSERT_NO_THROW(load_config_text(yaml, "cfg.yaml"));
  expect_file_error(prepare_error(yaml), "optimizer.layer_lrs", 17, {"3 entries", "2 layers"});
}

TEST(ConfigCrossKey, LayerLrsWithOneEntryPerLayerSetsEachGroup) {
  ExperimentConfig cfg = load_config_text(kSynthetic, "cfg.yaml", {"optimizer.layer_lrs=[0.1,0.02]"});
  Experiment x = prepare(cfg);
  auto& groups = x.optimizer.impl->param_groups();
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_DOUBLE_EQ(groups[0].options().get_lr(), 0.1);
  EXPECT_DOUBLE_EQ(groups[1].options().get_lr(), 0.02);
  EXPECT_EQ(x.optimizer.base_lrs, (std::vector<double>{0.1, 0.02}));
}

TEST(ConfigCrossKey, MissingDataFileNamesDataRootAndTheFile) {
  const std::string yaml = "data:\n  name: fashion_mnist\n  root: /nonexistent/fmnist\n  validation: 10\n";
  expect_file_error(prepare_error(yaml), "data.root", 3, {"/nonexistent/fmnist/", "does not exist"});
}

TEST(ConfigCrossKey, MissingDataFileFromOverride) {
  auto e = prepare_error("data:\n  name: mnist\n", {"data.root=/nonexistent/mnist"});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->key(), "data.root");
  EXPECT_TRUE(contains(e->what(), "/nonexistent/mnist/")) << e->what();
  EXPECT_TRUE(contains(e->what(), "command-line override 'data.root=/nonexistent/mnist'")) << e->what();
}

TEST(ConfigCrossKey, ConvWithoutChannels) {
  auto e = prepare_error(kSynthetic, {"model.kind=conv", "model.channels=[]"});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->key(), "model.channels");
}

TEST(ConfigCrossKey, ConvKernelLargerThanTheImage) {
  auto e = prepare_error(kSynthetic, {"model.kind=conv", "model.channels=[2]", "model.kernel_size=9",
                                      "model.padding=0"});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->key(), "model.channels");
  EXPECT_TRUE(contains(e->what(), "kernel")) << e->what();
}

TEST(ConfigCrossKey, SyntheticConfigPrepares) {
  ExperimentConfig cfg = load_config_text(kSynthetic, "cfg.yaml");
  Experiment x = prepare(cfg);
  EXPECT_EQ(x.data.train.size(), 50);
  EXPECT_EQ(x.data.validation.size(), 10);
  EXPECT_EQ(x.data.test.size(), 20);
  EXPECT_EQ(x.net->num_layers(), 2u);
}

// ---------------------------------------------------------------- resolved config: round trip and hash

TEST(ConfigResolved, ToYamlReloadsToTheSameConfig) {
  const std::string yaml = R"(experiment:
  name: roundtrip
seed: 3
model:
  hidden: [64, 32]
  activation: tanh
optimizer:
  name: sgd
  lr: 0.1
  momentum: 0.5
  layer_lrs: [0.1, 0.01, 1e-3]
scheduler:
  name: step
  gamma: 0.3333333333333333
)";
  ExperimentConfig a = load_config_text(yaml, "cfg.yaml", {"train.epochs=4", "data.root=/some/where"});
  const std::string text = a.to_yaml();
  ExperimentConfig b = load_config_text(text, "config.yaml");
  EXPECT_EQ(a.hash(), b.hash());
  EXPECT_EQ(text, b.to_yaml());
  EXPECT_EQ(b.train.epochs, 4);
  EXPECT_EQ(b.data.root, "/some/where");
  EXPECT_EQ(b.model.hidden, (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(b.optimizer.layer_lrs, (std::vector<double>{0.1, 0.01, 1e-3}));
  EXPECT_EQ(b.scheduler.gamma, a.scheduler.gamma);  // floats survive exactly
  // Every key is written out: the resolved file does not depend on this build's defaults.
  YAML::Node tree = YAML::Load(text);
  for (const auto& k : Schema::global().keys()) EXPECT_TRUE(lookup(tree, k.path).IsDefined()) << k.path;

  // Through a file too.
  testutil::TempDir dir;
  ExperimentConfig c = load_config(dir.write("config.yaml", text));
  EXPECT_EQ(a.hash(), c.hash());
}

TEST(ConfigResolved, HashDependsOnValuesNotOnWhereTheyCameFrom) {
  ExperimentConfig from_file = load_config_text("train:\n  epochs: 3\n", "a.yaml");
  ExperimentConfig from_override = load_config_text("", "b.yaml", {"train.epochs=3"});
  EXPECT_EQ(from_file.hash(), from_override.hash());
  EXPECT_EQ(from_file.hash(), load_config_text("train:\n  epochs: 3\n", "a.yaml").hash());  // stable
  EXPECT_TRUE(std::regex_match(from_file.hash(), std::regex("[0-9a-f]{16}"))) << from_file.hash();
}

TEST(ConfigResolved, HashDiffersWhenAValueDiffers) {
  const std::string base = load_config_text("", "cfg.yaml").hash();
  for (const std::string o : {"train.epochs=11", "optimizer.lr=0.0011", "model.hidden=[512,10]", "seed=1",
                              "rule.name=ep", "data.root=/x", "experiment.name=other", "deterministic=true"}) {
    EXPECT_NE(load_config_text("", "cfg.yaml", {o}).hash(), base) << o;
  }
  // A value equal to the default gives the same config.
  EXPECT_EQ(load_config_text("", "cfg.yaml", {"train.epochs=10"}).hash(), base);
}

// ---------------------------------------------------------------- config groups and registration from user code

TEST(ConfigGroups, AnOldLayoutKeyFailsWithItsNewName) {
  expect_file_error(config_error("train:\n  epochs: 2\n  algorithm: ep\n"), "train.algorithm", 3, {"now 'rule.name'"});
  expect_file_error(config_error("train:\n  beta: 0.2\n"), "train.beta", 2, {"now 'rule.beta'"});
  expect_file_error(config_error("solver:\n  implicit_tol: 1e-6\n"), "solver.implicit_tol", 2, {"now 'rule.linear_tol'"});
  const auto e = config_error("", {"train.dp_inference=iterative"});
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(contains(e->what(), "now 'rule.inference'")) << e->what();
}

TEST(ConfigGroups, AKeyOfAComponentNotSelectedNamesItsOwner) {
  expect_file_error(config_error("rule:\n  name: backprop\n  beta: 0.1\n"), "rule.beta", 3,
                    {"belongs to rule 'ep'", "'dual_prop'", "rule.name is 'backprop'"});
  expect_file_error(config_error("rule:\n  name: ep\n  alpha: 0.5\n"), "rule.alpha", 3, {"'dual_prop'"});
  // Both solvers have a kernel key, with their own choices: layerwise has no fused kernel.
  expect_file_error(config_error("solver:\n  name: layerwise\n  kernel: fused\n"), "solver.kernel", 3,
                    {"{auto, compact, generic}", "'fused'"});
}

TEST(ConfigGroups, TwoRulesHaveTheirOwnBeta) {
  // ep's β may be negative (its sign is used); dual_prop's must be > 0: the same name, two specs.
  EXPECT_NO_THROW(load_config_text("rule:\n  name: ep\n  beta: -0.2\n", "cfg.yaml"));
  expect_file_error(config_error("rule:\n  name: dual_prop\n  beta: -0.2\n"), "rule.beta", 3, {"> 0"});
  // A selected component's keys take its defaults; the others are absent from the resolved config.
  const ExperimentConfig dp = load_config_text("rule:\n  name: dual_prop\n", "cfg.yaml");
  EXPECT_DOUBLE_EQ(dp.get<double>("rule.alpha"), 0.5);
  EXPECT_FALSE(dp.has("rule.random_sign"));
  EXPECT_TRUE(contains(dp.to_yaml(), "inference: closed_form"));
}

TEST(ConfigGroups, SwitchingTheRuleByAnOverrideKeepsOnlySharedKeys) {
  const std::string yaml = "rule:\n  name: ep\n  beta: 0.3\n  random_sign: true\n";
  const ExperimentConfig dp = load_config_text(yaml, "cfg.yaml", {"rule.name=dual_prop"});
  EXPECT_EQ(dp.rule.name, "dual_prop");
  EXPECT_DOUBLE_EQ(dp.get<double>("rule.beta"), 0.3);  // dual_prop declares beta too
  EXPECT_FALSE(dp.has("rule.random_sign"));             // ep's own key is dropped with ep
  const ExperimentConfig bp = load_config_text(yaml, "cfg.yaml", {"rule.name=backprop"});
  EXPECT_FALSE(bp.has("rule.beta"));
  // But naming an unselected component's key explicitly is still an error.
  EXPECT_THROW(load_config_text(yaml, "cfg.yaml", {"rule.name=backprop", "rule.beta=0.2"}), ConfigError);
  // The selection reads an override's value as every override is read (YAML: quotes, ++key).
  EXPECT_EQ(load_config_text(yaml, "cfg.yaml", {"rule.name='dual_prop'"}).rule.name, "dual_prop");
  EXPECT_EQ(load_config_text(yaml, "cfg.yaml", {"++rule.name=backprop"}).rule.name, "backprop");
  // with_rule (the gradient probe's reference rule) switches the same way.
  const ExperimentConfig ref = with_rule(load_config_text(yaml, "cfg.yaml"), "ep_symmetric");
  EXPECT_EQ(ref.rule.name, "ep_symmetric");
  EXPECT_DOUBLE_EQ(ref.get<double>("rule.beta"), 0.3);
}

namespace {

// A rule from "user code": scales backprop's gradient by rule.gain.
class ScaledBackprop : public LearningRule {
 public:
  ScaledBackprop(std::unique_ptr<Objective> o, double gain) : LearningRule(std::move(o)), gain_(gain) {}
  std::string name() const override { return "scaled_backprop"; }
  StepStats train_step(LayeredNet& net, const torch::Tensor& x, const torch::Tensor& y) override {
    auto out = net->forward(x);
    (objective_->loss(out, y).mean() * gain_).backward();
    return {};
  }
  torch::Tensor predict(LayeredNet& net, const torch::Tensor& x) override { return net->forward(x); }
  double gain() const { return gain_; }

 private:
  double gain_;
};

KeySpec gain_key() {
  auto k = component_key("gain", ValueType::Float, "2.0", "factor on the loss");
  k.min = 0, k.min_exclusive = true;
  return k;
}

// Registered at static initialisation, as a user's program would.
BILEVEL_REGISTER(rules(), {"scaled_backprop", "backprop with a scaled loss (a test of user registration)", {gain_key()}},
                 [](const ExperimentConfig& cfg) {
                   return std::make_unique<ScaledBackprop>(objective_for(cfg), cfg.get<double>("rule.gain"));
                 });

}  // namespace

TEST(Registration, AUserRuleGetsItsKeysValidationAndHelp) {
  EXPECT_NE(rules().find("scaled_backprop"), nullptr);
  const KeySpec* name = Schema::global().find("rule.name");
  ASSERT_NE(name, nullptr);
  EXPECT_NE(std::find(name->choices.begin(), name->choices.end(), "scaled_backprop"), name->choices.end());
  const ExperimentConfig cfg = load_config_text("rule:\n  name: scaled_backprop\n  gain: 3.5\n", "cfg.yaml");
  auto rule = make_rule(cfg);
  ASSERT_NE(dynamic_cast<ScaledBackprop*>(rule.get()), nullptr);
  EXPECT_DOUBLE_EQ(static_cast<ScaledBackprop&>(*rule).gain(), 3.5);
  EXPECT_TRUE(contains(cfg.to_yaml(), "gain: 3.5"));
  expect_file_error(config_error("rule:\n  name: scaled_backprop\n  gain: -1\n"), "rule.gain", 3, {"> 0"});
  expect_file_error(config_error("rule:\n  name: scaled_backprop\n  gian: 1\n"), "rule.gian", 3,
                    {"did you mean 'rule.gain'?"});
  // A second component of the same name is refused.
  EXPECT_THROW(rules().add({"scaled_backprop", "again", {}}, nullptr), std::invalid_argument);
  // The library checks what a rule declared, not its name: this one declared no capability, so quantized states
  // are refused for it, as for the built-ins that did not declare them either.
  EXPECT_TRUE(rules().has("backprop", kRuleQuantizedStates));
  EXPECT_FALSE(rules().has("scaled_backprop", kRuleQuantizedStates));
  EXPECT_FALSE(rules().has("implicit", kRuleQuantizedStates));
  const std::string quantized_states = "model:\n  activation: sigmoid\nquantization:\n  enabled: true\n  activations:\n"
                                       "    quantizer: binary\nrule:\n  name: ";
  EXPECT_NO_THROW(validate_quantization(load_config_text(quantized_states + "backprop\n", "cfg.yaml")));
  try {
    validate_quantization(load_config_text(quantized_states + "scaled_backprop\n", "cfg.yaml"));
    ADD_FAILURE() << "no error for quantized states with a rule that did not declare them";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), "quantization.activations.quantizer")) << e.what();
  }
}

// Every registry answers an unknown name with the same message, listing its components (the user's included).
TEST(Registration, EveryRegistryNamesTheChoicesOfAnUnknownComponent) {
  const std::string rule_msg = rules().unknown("sgd");
  EXPECT_TRUE(contains(rule_msg, "unknown learning rule 'sgd' (expected one of: backprop, ")) << rule_msg;
  EXPECT_TRUE(contains(rule_msg, "scaled_backprop")) << rule_msg;
  try {
    activation("softplus2");
    ADD_FAILURE() << "no error for an unknown activation";
  } catch (const std::invalid_argument& e) {
    EXPECT_TRUE(contains(e.what(), "unknown activation 'softplus2' (expected one of: ")) << e.what();
  }
  EXPECT_THROW(make_objective("hinge"), std::invalid_argument);
  EXPECT_THROW(quantizers().get("fp4"), std::invalid_argument);
  // make_or_fail: a config error at the key that selected it.
  const ExperimentConfig cfg = load_config_text("seed: 1\n", "cfg.yaml");
  try {
    weight_solvers().make_or_fail("ste2", cfg, "quantization.weights.solver");
    ADD_FAILURE() << "no error for an unknown solver";
  } catch (const std::exception& e) {
    EXPECT_TRUE(contains(e.what(), "quantization.weights.solver")) << e.what();
    EXPECT_TRUE(contains(e.what(), "unknown quantization solver 'ste2' (expected one of: ste, ")) << e.what();
  }
}

namespace {
torch::Tensor softsign(const torch::Tensor& x) { return x / (1 + x.abs()); }
torch::Tensor softsign_d(const torch::Tensor& x) { return 1 / (1 + x.abs()).pow(2); }
}  // namespace

TEST(Registration, AUserActivationTrainsWithBackprop) {
  if (!activations().find("softsign"))
    activations().add({"softsign", "x / (1 + |x|)", {}}, [](const ExperimentConfig&) {
      return std::make_unique<Activation>(Activation{"softsign", softsign, softsign_d, -1, 1});
    });
  const ExperimentConfig cfg = load_config_text(kSynthetic, "cfg.yaml", {"model.activation=softsign"});
  Experiment x = prepare(cfg);
  EXPECT_EQ(x.net->rho().name, "softsign");
  const torch::Tensor in = torch::linspace(-3, 3, 7);
  EXPECT_TRUE(torch::allclose(x.net->rho().f(in), in / (1 + in.abs())));
  // The energy-based rules know their neurons' activations and refuse another, naming the key.
  const auto e = prepare_error(kSynthetic, {"model.activation=softsign", "rule.name=ep", "train.loss=mse"});
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->key(), "model.activation") << e->what();
}

namespace {
// A five-level grid {−2..2}·s with nearest rounding, registered from the test as a user would.
class FiveLevels final : public Quantizer {
 public:
  using Quantizer::Quantizer;
  std::string name() const override { return "five_levels"; }
  int storage_bits() const override { return 3; }
  float code_min() const override { return -2.f; }
  float code_max() const override { return 2.f; }
  GridParams fit(const torch::Tensor& theta) const override { return {mean_abs(theta), torch::Tensor()}; }
  float code(float x) const override { return std::min(2.f, std::max(-2.f, std::nearbyint(x))); }
  float code_stochastic(float x, float u) const override {
    const float lo = std::floor(x);
    return std::min(2.f, std::max(-2.f, u < x - lo ? lo + 1 : lo));
  }
};

// n examples of 1×2×2 images, label = which pixel is brightest; its own key data.brightest.n.
class Brightest final : public DataSource {
 public:
  explicit Brightest(const DataConfig& d) : n_(d.keys["n"].as<int64_t>()) {}
  DataShape shape() const override { return {{1, 2, 2}, 4, n_, n_ / 2}; }
  std::pair<Dataset, Dataset> load(int64_t seed) const override { return {make(n_, seed), make(n_ / 2, seed + 1)}; }

 private:
  static Dataset make(int64_t n, int64_t seed) {
    torch::manual_seed(uint64_t(seed));
    Dataset d;
    d.images = torch::rand({n, 1, 2, 2});
    d.labels = d.images.view({n, 4}).argmax(1);
    d.num_classes = 4;
    d.name = "brightest";
    return d;
  }
  int64_t n_;
};
}  // namespace

TEST(Registration, AUserQuantizerIsUsedByTheSolvers) {
  if (!quantizers().find("five_levels"))
    quantizers().add({"five_levels", "{-2..2}·s", {}}, [](const QuantizerOptions& o) { return std::make_unique<FiveLevels>(o); });
  const ExperimentConfig cfg = load_config_text(
      kSynthetic, "cfg.yaml",
      {"quantization.enabled=true", "quantization.weights.quantizer=five_levels", "quantization.weights.bits=3",
       "optimizer.name=adam"});
  Experiment x = prepare(cfg);
  ASSERT_TRUE(x.quant);
  EXPECT_EQ(x.quant->weight_quantizer().name(), "five_levels");
  // Every quantized layer's weights lie on its five-level grid.
  for (size_t l = 0; l < x.net->num_layers(); ++l) {
    if (!x.quant->quantized(l)) continue;
    const torch::Tensor w = x.net->layer(l).weight.detach();
    const torch::Tensor s = x.quant->param(l)->grid.scale.detach();
    const torch::Tensor q = w / s;
    EXPECT_LE((q - q.round()).abs().max().item<double>(), 1e-5) << "layer " << l;
    EXPECT_LE(q.abs().max().item<double>(), 2 + 1e-5) << "layer " << l;
  }
  // The fused STE + Adam loop inlines the built-in grids only.
  EXPECT_FALSE(is_builtin_quantizer(x.quant->weight_quantizer()));
  // An unknown grid is a config error listing the registered ones.
  const auto e = config_error(kSynthetic, {"quantization.enabled=true", "quantization.weights.quantizer=six"});
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->key(), "quantization.weights.quantizer") << e->what();
  EXPECT_TRUE(contains(e->what(), "five_levels")) << e->what();
}

TEST(Registration, AUserDataSetHasItsOwnKeys) {
  if (!data_sets().find("brightest"))
    data_sets().add({"brightest", "which pixel is brightest", {[] {
                       KeySpec k = component_key("n", ValueType::Int, "40", "training examples");
                       k.min = 2;
                       return k;
                     }()}},
                    [](const DataConfig& d) { return std::make_unique<Brightest>(d); });
  const ExperimentConfig cfg = load_config_text(kSynthetic, "cfg.yaml", {"data.name=brightest", "data.brightest.n=50"});
  EXPECT_EQ(cfg.data.keys["n"].as<int64_t>(), 50);
  const DataSplits s = load_experiment_data(cfg);
  EXPECT_EQ(s.train.size(), 40);  // 50 less data.validation's 10
  EXPECT_EQ(s.test.size(), 25);
  EXPECT_EQ(s.train.example_shape(), (std::vector<int64_t>{1, 2, 2}));
  EXPECT_TRUE(required_files(cfg.data).empty());
  // Defaults fill in; its keys are validated, and belong to it alone.
  EXPECT_EQ(load_config_text(kSynthetic, "cfg.yaml", {"data.name=brightest"}).data.keys["n"].as<int64_t>(), 40);
  expect_file_error(config_error("data:\n  name: brightest\n  brightest:\n    n: 1\n"), "data.brightest.n", 4, {">= 2"});
}
