// The schema of experiment configs: every key, its type, default, allowed range and meaning.
// One table drives validation, defaults, suggestions for typos, `--help` and the resolved config.yaml.
#pragma once

#include <cstdint>
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

// A component of the framework as the config sees it (bilevel/registry.h): a name (what its group's `name` key
// selects), a one-line help and its own keys, declared relative to its group's section (Hydra's config groups). A
// learning rule's key "beta" is written `rule: {name: ep, beta: 0.1}`; two rules may both declare "beta", each
// with its own default, range and help; a key of a component that is not selected is an error naming its owner.
struct ComponentInfo {
  std::string name;
  std::string help;           // one line, for `--help`
  std::vector<KeySpec> keys;  // paths relative to the group's section, e.g. "beta"
};

// A component's key: a KeySpec with a relative path. Set min/max/choices on the result as on any KeySpec.
inline KeySpec component_key(std::string name, ValueType type, std::string default_yaml, std::string help) {
  return KeySpec{std::move(name), type, std::move(default_yaml), std::move(help), {}, {}, false, {}};
}

// A config group (Hydra): the section whose `name` key selects one component; the selected component's own keys
// are valid under the section (section.KEY), the other components' keys are not.
struct ConfigGroup {
  std::string section;  // "rule", "solver"
  std::string kind;     // "rule", "inner solver": for messages
  std::vector<ComponentInfo> components;
  std::string selector() const { return section + ".name"; }
  const ComponentInfo* component(const std::string& name) const;
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

  // The names of the registered components that a key selects from (bilevel/registry.h), ahead of the key's own
  // choices (quantization.weights.quantizer's none). Throws std::logic_error for a path that is not a key.
  void add_registered_choices(const std::string& path, const std::vector<std::string>& names);
  // Adds a component's own keys under `section` (section.KEY), their help naming the component: the keys of every
  // registered data set (data.NAME.KEY) and quantization solver (quantization.NAME.KEY).
  void add_component_keys(const ComponentInfo& c, const std::string& section);

  // Groups: their selector keys are ordinary keys (add them too); their components' keys are added by selected().
  void add_group(ConfigGroup g);
  const std::vector<ConfigGroup>& groups() const { return groups_; }
  // This schema plus the keys of the component each group's selector names in `selection` (section → name).
  Schema selected(const std::vector<std::pair<std::string, std::string>>& selection) const;

  // The project's schema: the core keys, then what the registries add (SchemaExtension below: every registered
  // component's name, keys and groups), rebuilt when a component is registered.
  static const Schema& global();

 private:
  std::vector<KeySpec> keys_;
  std::vector<ConfigGroup> groups_;
};

// What the layer above the config adds to Schema::global(): the component registries (bilevel/registry.h) name the
// components each selector key accepts (rule.name, data.name, ...) and add their groups and keys. The config layer
// includes nothing of theirs: src/registry.cpp installs the extension at static initialisation; global() calls
// `extend` after the core keys, and again whenever `generation` changes (a component was registered, e.g. by a
// plugin). Plain function pointers: their slot in schema.cpp is constant-initialised, so installing them from
// another file's static initialiser does not depend on the order in which the files' initialisers run.
struct SchemaExtension {
  uint64_t (*generation)() = nullptr;
  void (*extend)(Schema&) = nullptr;
};
void set_schema_extension(SchemaExtension extension);

// Keys that moved when the config grew groups, old path → new path ("" when none). Used in error messages.
std::string renamed_key(const std::string& old_path);

// Keys that belong to no registered component (called by Schema::global; see src/config/schema.cpp). The choices
// of the keys that select a registered component are the registries' (SchemaExtension).
void add_core_keys(Schema& s);
void add_quant_keys(Schema& s);   // quantization.* (weights, activations; each solver's keys are its own)
void add_dist_keys(Schema& s);    // dist.*, checkpoint.every_batches, train.preempt_signal

// The candidate closest to `word` by edit distance, or "" when none is close enough to be a typo.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

// "expected an integer >= 1" etc.
std::string describe_expectation(const KeySpec& spec);

}  // namespace bilevel
