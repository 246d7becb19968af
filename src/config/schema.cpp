#include "bilevel/config/schema.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace bilevel {

std::string to_string(ValueType t) {
  switch (t) {
    case ValueType::Int: return "an integer";
    case ValueType::Float: return "a number";
    case ValueType::Bool: return "a boolean (true/false)";
    case ValueType::String: return "a string";
    case ValueType::IntList: return "a list of integers";
    case ValueType::FloatList: return "a list of numbers";
  }
  return "?";
}

const ComponentInfo* ConfigGroup::component(const std::string& name) const {
  for (const auto& c : components)
    if (c.name == name) return &c;
  return nullptr;
}

void Schema::add_group(ConfigGroup g) { groups_.push_back(std::move(g)); }

namespace {

// A component's key as the schema holds it: under `section`, its help naming the component.
KeySpec owned_key(const ComponentInfo& c, const std::string& section, KeySpec k) {
  k.path = section + "." + k.path;
  if (k.help.rfind(c.name + ":", 0) != 0) k.help = c.name + ": " + k.help;
  return k;
}

}  // namespace

void Schema::add_registered_choices(const std::string& path, const std::vector<std::string>& names) {
  for (auto& k : keys_)
    if (k.path == path) {
      k.choices.insert(k.choices.begin(), names.begin(), names.end());
      return;
    }
  throw std::logic_error("registered choices for '" + path + "', which is not a config key");
}

void Schema::add_component_keys(const ComponentInfo& c, const std::string& section) {
  for (const KeySpec& k : c.keys) add(owned_key(c, section, k));
}

Schema Schema::selected(const std::vector<std::pair<std::string, std::string>>& selection) const {
  Schema out = *this;
  for (const auto& [section, name] : selection)
    for (const auto& g : groups_)
      if (g.section == section)
        if (const ComponentInfo* c = g.component(name))
          for (const KeySpec& k : c->keys) out.keys_.push_back(owned_key(*c, section, k));
  return out;
}

std::string renamed_key(const std::string& old_path) {
  static const std::vector<std::pair<std::string, std::string>> moved = {
      {"train.algorithm", "rule.name"},
      {"train.beta", "rule.beta"},
      {"train.random_sign", "rule.random_sign"},
      {"train.alpha", "rule.alpha"},
      {"train.dp_inference", "rule.inference"},
      {"train.dp_iterations", "rule.iterations"},
      {"solver.implicit_method", "rule.linear_solver"},
      {"solver.implicit_steps", "rule.linear_steps"},
      {"solver.implicit_tol", "rule.linear_tol"},
  };
  for (const auto& [from, to] : moved)
    if (from == old_path) return to;
  return "";
}

Schema& Schema::add(KeySpec spec) {
  keys_.push_back(std::move(spec));
  return *this;
}

KeySpec& Schema::key(std::string path, ValueType type, std::string default_yaml, std::string help) {
  keys_.push_back(KeySpec{std::move(path), type, std::move(default_yaml), std::move(help), {}, {}, false, {}});
  return keys_.back();
}

const KeySpec* Schema::find(const std::string& path) const {
  for (const auto& k : keys_)
    if (k.path == path) return &k;
  return nullptr;
}

bool Schema::is_section(const std::string& path) const {
  const std::string prefix = path + ".";
  return std::any_of(keys_.begin(), keys_.end(),
                     [&](const KeySpec& k) { return k.path.compare(0, prefix.size(), prefix) == 0; });
}

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string last_component(const std::string& path) {
  auto dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

}  // namespace

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  return best_d <= std::max<size_t>(2, word.size() / 3) ? best : "";
}

std::string Schema::closest(const std::string& path) const {
  // Candidates: every key and every section ("train", "data.synthetic"). A whole path is compared, and so is its
  // last component alone (cheaper by a small penalty), so "train.epoch" and "trian" both find their key, and a few
  // common synonyms from other frameworks map to ours.
  static const std::vector<std::pair<std::string, std::string>> synonyms = {
      {"learning_rate", "lr"}, {"lr_per_layer", "layer_lrs"}, {"bs", "batch_size"}, {"n_epochs", "epochs"},
      {"num_epochs", "epochs"}, {"activation_function", "activation"}, {"algo", "algorithm"}};
  std::string query = path;
  for (const auto& [from, to] : synonyms)
    if (last_component(path) == from) query = path.substr(0, path.size() - from.size()) + to;
  std::vector<std::string> candidates;
  for (const auto& k : keys_) {
    candidates.push_back(k.path);
    for (auto dot = k.path.find('.'); dot != std::string::npos; dot = k.path.find('.', dot + 1))
      candidates.push_back(k.path.substr(0, dot));
  }
  std::string best;
  size_t best_d = std::string::npos;
  for (const auto& c : candidates) {
    size_t d = std::min(edit_distance(query, c), edit_distance(last_component(query), last_component(c)) + 2);
    if (query.find('.') != std::string::npos && c.find('.') == std::string::npos) d += 2;  // prefer keys
    if (d < best_d) best_d = d, best = c;
  }
  const size_t limit = std::max<size_t>(3, path.size() / 3);
  return best_d <= limit ? best : "";
}

std::string describe_expectation(const KeySpec& spec) {
  std::ostringstream os;
  if (spec.type == ValueType::String && spec.min && *spec.min >= 1 && spec.choices.empty()) return "a non-empty string";
  os << to_string(spec.type);
  if (!spec.choices.empty()) {
    os << " in {";
    for (size_t i = 0; i < spec.choices.size(); ++i) os << (i ? ", " : "") << spec.choices[i];
    os << "}";
  }
  if (spec.min && spec.max) {
    os << (spec.min_exclusive ? " in (" : " in [") << *spec.min << ", " << *spec.max << "]";
  } else if (spec.min) {
    os << (spec.min_exclusive ? " > " : " >= ") << *spec.min;
  } else if (spec.max) {
    os << " <= " << *spec.max;
  }
  if ((spec.type == ValueType::IntList || spec.type == ValueType::FloatList) && spec.min)
    os << " (each element)";
  return os.str();
}

// The keys that select a registered component (data.name, model.activation, rule.name, solver.name, train.loss,
// train.probe_reference) get their choices from the registries (SchemaExtension, src/registry.cpp).
void add_core_keys(Schema& s) {
  using V = ValueType;
  s.key("experiment.name", V::String, "experiment", "Name of the experiment; runs go to output.root/NAME/").min = 1;
  s.key("seed", V::Int, "0", "Seeds every random number generator (init, shuffling, rules)").min = 0;
  s.key("deterministic", V::Bool, "false", "Use LibTorch's deterministic algorithms only");

  s.key("data.name", V::String, "fashion_mnist", "Data set (a registered one: `bilevel train --help` lists them)");
  s.key("data.root", V::String, BILEVEL_DEFAULT_DATA_ROOT, "Folder with the data set's files");
  s.key("data.train_limit", V::Int, "0", "Use only the first N training examples (0 = all)").min = 0;
  s.key("data.test_limit", V::Int, "0", "Use only the first N test examples (0 = all)").min = 0;
  s.key("data.validation", V::Int, "5000", "Examples held out of the training set for model selection").min = 0;

  s.key("model.kind", V::String, "mlp", "Network family").choices = {"mlp", "conv"};
  s.key("model.hidden", V::IntList, "[512]", "Widths of the fully connected hidden layers").min = 1;
  s.key("model.channels", V::IntList, "[32, 64]", "conv: output channels of each conv + pool block").min = 1;
  s.key("model.kernel_size", V::Int, "5", "conv: kernel size").min = 1;
  s.key("model.padding", V::Int, "2", "conv: zero padding").min = 0;
  s.key("model.pool", V::Int, "2", "conv: pooling size and stride after each conv (1 = none)").min = 1;
  s.key("model.pooling", V::String, "max",
        "conv: max (a piecewise-linear map with switches) or avg (linear: the layer-wise solver's steps are exact)")
      .choices = {"max", "avg"};
  s.key("model.activation", V::String, "relu", "Activation ρ of every hidden layer");
  s.key("model.init", V::String, "default", "Weight initialisation")
      .choices = {"default", "xavier_uniform", "kaiming_uniform"};
  s.key("model.init_gain", V::Float, "1.0", "Scale applied to the initial weights").min = 0;
  s.key("model.layer_gains", V::FloatList, "[]",
        "Per-layer factors on the initial weights (with model.init_gain) and biases, input side first (empty = 1 "
        "for every layer; else one per layer)")
      .min = 0;

  s.key("rule.name", V::String, "backprop", "Learning rule (its keys: rule.KEY; see the list below)");
  s.key("solver.name", V::String, "fixed_point", "Inner solver of the energy-based rules (its keys: solver.KEY)");
  s.key("train.loss", V::String, "cross_entropy", "Outer loss");
  s.key("train.epochs", V::Int, "10", "Training epochs").min = 1;
  s.key("train.batch_size", V::Int, "64", "Mini-batch size").min = 1;
  s.key("train.eval_batch_size", V::Int, "1000", "Batch size for evaluation").min = 1;
  s.key("train.threads", V::Int, "0", "CPU threads for LibTorch and OpenBLAS (0 = OMP_NUM_THREADS if set, else the CPUs this process may use)").min = 0;
  s.key("train.device", V::String, "cpu", "Device").choices = {"cpu", "cuda"};
  s.key("train.log_every", V::Int, "0", "Log a line every N batches when not on a terminal (0 = per epoch only)").min = 0;
  s.key("train.on_nonfinite", V::String, "stop",
      "A non-finite loss or gradient: stop (status diverged, exit code 4) or warn and go on")
      .choices = {"stop", "warn"};

  s.key("train.probe_every", V::Int, "0",
      "Every N epochs, compare the rule's gradient with train.probe_reference's on a fixed batch (0 = never)")
      .min = 0;
  s.key("train.probe_reference", V::String, "backprop",
      "Reference rule for the gradient probe (its keys: their defaults, or rule.KEY where the two rules share it)");
  s.key("train.probe_size", V::Int, "256", "Examples in the probe batch (the first N training examples)").min = 1;
  s.key("train.probe_solver", V::String, "none",
      "Quantized weights: compare latent-weight gradients ∂ℓ/∂θ instead, the run's solver's backward of its rule's "
      "∂ℓ/∂w against this solver's backward of train.probe_reference's (e.g. ste: how far an estimator turns "
      "from the straight-through direction); none: compare ∂ℓ/∂w");

  s.key("optimizer.name", V::String, "adam", "Optimizer").choices = {"sgd", "adam"};
  {
    auto& k = s.key("optimizer.lr", V::Float, "0.001", "Learning rate");
    k.min = 0;
    k.min_exclusive = true;
  }
  s.key("optimizer.layer_lrs", V::FloatList, "[]", "Per-layer learning rates, input side first (empty = lr for all)")
      .min = 0;
  s.key("optimizer.momentum", V::Float, "0.0", "sgd: momentum").min = 0;
  s.key("optimizer.nesterov", V::Bool, "false", "sgd: Nesterov momentum");
  s.key("optimizer.weight_decay", V::Float, "0.0", "L2 weight decay").min = 0;
  {
    auto& k = s.key("optimizer.beta1", V::Float, "0.9", "adam: β1");
    k.min = 0, k.max = 1;
  }
  {
    auto& k = s.key("optimizer.beta2", V::Float, "0.999", "adam: β2");
    k.min = 0, k.max = 1;
  }
  {
    auto& k = s.key("optimizer.eps", V::Float, "1e-8", "adam: ε");
    k.min = 0, k.min_exclusive = true;
  }

  s.key("scheduler.name", V::String, "none", "Learning-rate schedule, applied per epoch")
      .choices = {"none", "cosine", "step"};
  s.key("scheduler.step_size", V::Int, "1", "step: epochs between decays").min = 1;
  s.key("scheduler.gamma", V::Float, "0.1", "step: decay factor").min = 0;
  s.key("scheduler.min_lr", V::Float, "0.0", "cosine: final learning rate").min = 0;

  s.key("checkpoint.every", V::Int, "1", "Write a checkpoint every N epochs (and always at the end)").min = 1;
  s.key("output.root", V::String, "runs", "Folder that receives run directories").min = 1;
}

namespace {

// The registries' part of the global schema (set_schema_extension); none until it is installed. Constant-initialised.
SchemaExtension extension;

}  // namespace

void set_schema_extension(SchemaExtension e) { extension = e; }

const Schema& Schema::global() {
  static Schema schema;
  static uint64_t built = ~uint64_t(0);
  static void (*built_with)(Schema&) = nullptr;
  auto generation = [] { return extension.generation ? extension.generation() : 0; };
  if (built != generation() || built_with != extension.extend) {
    Schema s;
    add_core_keys(s);
    add_quant_keys(s);
    add_dist_keys(s);
    // Without the registries (src/registry.cpp installs them when it is linked, i.e. when the program uses one)
    // the schema would lack every component's keys and choices: say so instead of rejecting valid configs.
    if (!extension.extend)
      throw std::logic_error("the config schema has no registries: this program does not link bilevel's "
                             "registries (use one, e.g. bilevel::rules(), so that src/registry.cpp is linked)");
    extension.extend(s);
    schema = std::move(s);
    built = generation();  // after the build: the first use of a registry registers its built-ins
    built_with = extension.extend;
  }
  return schema;
}

}  // namespace bilevel
