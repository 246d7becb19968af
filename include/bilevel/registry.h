// Registries of the framework's components, keyed on a name, each with its config keys and a factory: learning
// rules, inner solvers, quantizers, quantization solvers, outer losses, activations and data sets. The built-in components are registered through the
// same add() as a user's (on first use of a registry), so a program that links the library adds its own with one
// call or one BILEVEL_REGISTER line before bilevel::run_cli, and every command (`train --help`, validation, typo
// suggestions, the resolved config.yaml) sees them:
//
//   BILEVEL_REGISTER(bilevel::rules(), {"dfa", "direct feedback alignment (Nøkland 2016)",
//                                       {bilevel::component_key("feedback_scale", bilevel::ValueType::Float, "1.0",
//                                                               "scale of the fixed random feedback matrices")}},
//                    [](const bilevel::ExperimentConfig& cfg) { return std::make_unique<Dfa>(cfg); });
//
// The group a registry's components live in (its config section) and the key that selects one:
//   rules()           rule:      {name: ..., <the rule's keys>}
//   inner_solvers()   solver:    {name: ..., <the solver's keys>}
//   weight_solvers()  quantization.<name>: {<the solver's keys>}, selected by quantization.{weights,activations}.solver
//   objectives()      train.loss selects one (no keys)
//   activations()     model.activation selects one (no keys; an Activation: ρ, ρ' as functions of tensors, its
//                     range). The energy-based rules' neurons and fused kernels know the built-ins only.
//   quantizers()      quantization.weights.quantizer selects the weights' grid (no keys of its own: the factory
//                     gets QuantizerOptions — bits, symmetric, per channel, stochastic — and throws
//                     std::invalid_argument for options it does not take, e.g. a bit width). A registered grid works
//                     with every solver through Quantizer's virtual interface; the fused CPU loops and the packed
//                     export know the built-ins.
//   data_sets()       data.name selects one; its keys live under data.NAME (e.g. data.synthetic.classes) and reach
//                     the factory as DataConfig::keys (data/data_source.h: files, shape, load).
// The registries add these keys, groups and choices to the config schema themselves (src/registry.cpp, through
// config/schema.h's SchemaExtension): the config layer includes no registry.
#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/config/schema.h"

namespace bilevel {

// Incremented by every add(): the config schema (Schema::global) is rebuilt when it changed.
uint64_t registry_generation();
void bump_registry_generation();

// A factory takes the experiment's config (Arg), or, for components built from narrower options (quantizers: one
// per grid, for the weights and for the activations), those options.
template <class Product, class Arg = const ExperimentConfig&>
class Registry {
 public:
  using Factory = std::function<std::unique_ptr<Product>(Arg)>;
  struct Entry {
    ComponentInfo info;
    Factory make;
    std::vector<std::string> capabilities;  // what the component declares it supports (see kRule* below)
  };

  Registry(std::string kind, std::function<void(Registry&)> builtins)
      : kind_(std::move(kind)), builtins_(std::move(builtins)) {}

  // Adds a component with the capabilities it declares; throws std::invalid_argument for an empty or already
  // registered name or a bad key.
  void add(ComponentInfo info, Factory make, std::vector<std::string> capabilities = {}) {
    load_builtins();
    if (info.name.empty()) throw std::invalid_argument(kind_ + ": a component needs a name");
    if (find(info.name)) throw std::invalid_argument(kind_ + " '" + info.name + "' is already registered");
    for (const auto& k : info.keys)
      if (k.path.empty() || k.path == "name")
        throw std::invalid_argument(kind_ + " '" + info.name + "': a key may not be called '" + k.path + "'");
    entries_.push_back(Entry{std::move(info), std::move(make), std::move(capabilities)});
    bump_registry_generation();
  }
  const Entry* find(const std::string& name) const {
    const_cast<Registry*>(this)->load_builtins();
    for (const auto& e : entries_)
      if (e.info.name == name) return &e;
    return nullptr;
  }
  const std::vector<Entry>& entries() const {
    const_cast<Registry*>(this)->load_builtins();
    return entries_;
  }
  // The one "unknown component" message and lookups every registry shares: "unknown KIND 'NAME' (expected one of:
  // a, b, c)". get() throws it as std::invalid_argument; make_or_fail(name, cfg, key) as a config error at key (its
  // file and line) through cfg.fail.
  std::string unknown(const std::string& name) const {
    std::string list;
    for (const auto& n : names()) list += (list.empty() ? "" : ", ") + n;
    return "unknown " + kind_ + " '" + name + "' (expected one of: " + list + ")";
  }
  const Entry& get(const std::string& name) const {
    if (const Entry* e = find(name)) return *e;
    throw std::invalid_argument(unknown(name));
  }
  std::unique_ptr<Product> make_or_fail(const std::string& name, const ExperimentConfig& cfg,
                                        const std::string& key) const {
    if (const Entry* e = find(name)) return e->make(cfg);
    cfg.fail(key, unknown(name));
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : entries()) out.push_back(e.info.name);
    return out;
  }
  // Whether component `name` declared `capability` (false for an unknown name), and the components that did.
  bool has(const std::string& name, const std::string& capability) const {
    const Entry* e = find(name);
    return e && std::find(e->capabilities.begin(), e->capabilities.end(), capability) != e->capabilities.end();
  }
  std::vector<std::string> names_with(const std::string& capability) const {
    std::vector<std::string> out;
    for (const auto& e : entries())
      if (has(e.info.name, capability)) out.push_back(e.info.name);
    return out;
  }
  std::vector<ComponentInfo> infos() const {
    std::vector<ComponentInfo> out;
    for (const auto& e : entries()) out.push_back(e.info);
    return out;
  }
  const std::string& kind() const { return kind_; }

 private:
  void load_builtins() {
    if (loaded_) return;
    loaded_ = true;
    if (builtins_) builtins_(*this);
  }
  std::string kind_;
  std::function<void(Registry&)> builtins_;
  std::vector<Entry> entries_;
  bool loaded_ = false;
};

// Capabilities a learning rule declares when it registers (rules().add's last argument), which the library checks
// instead of rule names:
//   kRuleQuantizedStates  it trains with quantized hidden states (quantization.activations);
//   kRuleAutograd         its gradient is autograd's through the forward pass (a learned activation step, lsq,
//                         trains through it);
//   kRuleUnrollsFromZero  it differentiates the free phase unrolled from zero states (no other start).
inline const std::string kRuleQuantizedStates = "quantized_states";
inline const std::string kRuleAutograd = "autograd";
inline const std::string kRuleUnrollsFromZero = "unrolls_from_zero";

class LearningRule;
class InnerSolver;
class WeightSolver;
class Objective;
struct Activation;
class Quantizer;
struct QuantizerOptions;
class DataSource;

Registry<LearningRule>& rules();
Registry<InnerSolver>& inner_solvers();
Registry<WeightSolver>& weight_solvers();
Registry<Objective>& objectives();
Registry<Activation>& activations();
Registry<Quantizer, const QuantizerOptions&>& quantizers();
Registry<DataSource, const DataConfig&>& data_sets();

}  // namespace bilevel

#define BILEVEL_CONCAT_INNER(a, b) a##b
#define BILEVEL_CONCAT(a, b) BILEVEL_CONCAT_INNER(a, b)
// Registers a component at static initialisation: BILEVEL_REGISTER(registry, ComponentInfo, factory).
#define BILEVEL_REGISTER(registry, ...) \
  static const bool BILEVEL_CONCAT(bilevel_registered_, __LINE__) = ((registry).add(__VA_ARGS__), true)
