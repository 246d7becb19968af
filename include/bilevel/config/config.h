// Experiment configuration: YAML file + command-line overrides, validated against the Schema,
// resolved with defaults into typed structs. Nothing runs before validation succeeds.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bilevel/util/error.h"

namespace bilevel {

struct DataConfig {
  std::string name;  // a registered data set (data/data_source.h): fashion_mnist | mnist | cifar10 | synthetic | ...
  std::string root;
  int64_t train_limit = 0;  // 0 = all
  int64_t test_limit = 0;   // 0 = all
  int64_t validation = 0;   // examples held out of the training set
  // synthetic data set: `classes` Gaussian clusters of [channels, image_size, image_size] images
  int64_t synthetic_train = 0, synthetic_test = 0, synthetic_image_size = 0, synthetic_channels = 1,
          synthetic_classes = 0;
  // data.<name>: the selected data set's own keys as resolved (validated, defaults filled); null when it has none.
  YAML::Node keys;
};

struct ModelConfig {
  std::string kind;        // mlp | conv
  std::string activation;  // see nn/activation.h
  std::vector<int64_t> hidden;    // hidden layer widths (mlp) / fully connected widths after the convs (conv)
  std::vector<int64_t> channels;  // conv: output channels of each conv block
  int64_t kernel_size = 5;
  int64_t padding = 2;
  int64_t pool = 2;
  std::string pooling = "max";  // conv: max | avg
  std::string init;  // default | xavier_uniform | kaiming_uniform
  double init_gain = 1.0;
  std::vector<double> layer_gains;  // per layer, input side first: × init_gain (empty = 1 everywhere)
};

// The learning rule's own keys (rule.beta, ...) are read through get<T>() by the rule that declares them.
struct RuleConfig {
  std::string name;  // rule.name
};

struct TrainConfig {
  std::string loss;  // cross_entropy | mse
  int64_t epochs = 10;
  int64_t batch_size = 64;
  int64_t eval_batch_size = 1000;
  int64_t threads = 0;  // 0 = LibTorch default
  std::string device;   // cpu | cuda
};

struct OptimizerConfig {
  std::string name;  // sgd | adam
  double lr = 1e-3;
  std::vector<double> layer_lrs;  // per layer (overrides lr); empty = lr everywhere
  double momentum = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
};

struct SchedulerConfig {
  std::string name;  // none | cosine | step
  int64_t step_size = 1;
  double gamma = 0.1;
  double min_lr = 0.0;
};

struct ExperimentConfig {
  std::string name;
  int64_t seed = 0;
  bool deterministic = false;
  DataConfig data;
  ModelConfig model;
  RuleConfig rule;
  TrainConfig train;
  OptimizerConfig optimizer;
  SchedulerConfig scheduler;
  int64_t checkpoint_every = 1;
  int64_t log_every = 0;
  std::string output_root;

  // The full resolved tree (defaults + file + overrides), as written to config.yaml.
  YAML::Node tree;
  // Where each key's value came from.
  std::map<std::string, Location> where;
  std::string source_file;
  std::vector<std::string> overrides;

  // Generic typed access for component-specific keys, e.g. get<double>("rule.beta").
  template <class T>
  T get(const std::string& path) const;
  // Whether the resolved config has the key (a group's keys are those of the selected component only).
  bool has(const std::string& path) const;
  template <class T>
  T get_or(const std::string& path, T fallback) const {
    return has(path) ? get<T>(path) : fallback;
  }
  Location location(const std::string& path) const;
  // Throws ConfigError naming the key and where its value came from.
  [[noreturn]] void fail(const std::string& path, const std::string& message) const;
  // The resolved config as YAML text.
  std::string to_yaml() const;
  // A stable hash of the resolved config (what checkpoints record).
  std::string hash() const;
};

// Loads FILE, applies overrides ("key.path=value", "+key=value", "~key"), validates everything,
// resolves defaults. Throws ConfigError (with file, line, key, expectation) on any problem.
ExperimentConfig load_config(const std::string& file, const std::vector<std::string>& overrides = {});
// The same from YAML text (tests); `name` stands in for the file name in messages.
ExperimentConfig load_config_text(const std::string& text, const std::string& name,
                                  const std::vector<std::string>& overrides = {});

// The same config with another learning rule (an override rule.name=NAME of the resolved config): keys of cfg's
// rule that NAME also declares keep their values, the others are dropped, NAME's other keys take their defaults.
ExperimentConfig with_rule(const ExperimentConfig& cfg, const std::string& name);

// Looks up a dotted path in a YAML tree; returns an undefined node when absent.
YAML::Node lookup(const YAML::Node& root, const std::string& path);

}  // namespace bilevel
