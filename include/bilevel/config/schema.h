// The schema of experiment configs: every key, its type, default, allowed range and meaning.
// One table drives validation, defaults, suggestions for typos, `--help` and the resolved config.yaml.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace bilevel {

enum class ValueType { Int, Float, Bool, String, IntList, FloatList };
std::string to_string(ValueType t);

struct KeySpec {
  std::string path;          // dotted, e.g. "train.batch_size"
  ValueType type;
  std::string default_yaml;  // YAML text of the default, e.g. "64", "[512]", "adam", "''"
  std::string help;
  std::optional<double> min;  // inclusive unless min_exclusive
  std::optional<double> max;  // inclusive
  bool min_exclusive = false;
  std::vector<std::string> choices;  // for String: allowed values (empty = any)
};

class Schema {
 public:
  Schema& add(KeySpec spec);
  const KeySpec* find(const std::string& path) const;
  // True when `path` names a section (a prefix of some key), e.g. "train" or "data.synthetic".
  bool is_section(const std::string& path) const;
  const std::vector<KeySpec>& keys() const { return keys_; }
  // Adds a key with no range or choices and returns it, so the caller can set them:
  //   s.key("train.epochs", ValueType::Int, "10", "Epochs").min = 1;
  KeySpec& key(std::string path, ValueType type, std::string default_yaml, std::string help);
  // The key closest to `path` by edit distance, or "" when nothing is close.
  std::string closest(const std::string& path) const;

  // The project's schema: every component's keys.
  static const Schema& global();

 private:
  std::vector<KeySpec> keys_;
};

// Each component adds its keys here (called by Schema::global; see src/config/schema.cpp).
void add_core_keys(Schema& s);
void add_energy_keys(Schema& s);  // solver.*, train.beta and the EP family's keys
void add_dual_keys(Schema& s);
void add_quant_keys(Schema& s);   // quantization.* (weights, activations, each solver's schedule)    // train.alpha, train.dp_* (dual propagation; reuses train.beta)
void add_dist_keys(Schema& s);    // dist.*, checkpoint.every_batches, train.preempt_signal

// The candidate closest to `word` by edit distance, or "" when none is close enough to be a typo.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

// "expected an integer >= 1" etc.
std::string describe_expectation(const KeySpec& spec);

}  // namespace bilevel
