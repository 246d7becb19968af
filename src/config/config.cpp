#include "bilevel/config/config.h"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "bilevel/config/schema.h"
#include "bilevel/config/yaml_location.h"

namespace bilevel {
namespace {

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::stringstream ss(path);
  std::string p;
  while (std::getline(ss, p, '.')) parts.push_back(p);
  return parts;
}

std::string show(const YAML::Node& n) {
  if (n.IsScalar()) return "'" + n.Scalar() + "'";
  YAML::Emitter e;
  e << YAML::Flow << n;
  return e.c_str();
}

bool parse_int(const std::string& s, int64_t& out) {
  if (s.empty()) return false;
  size_t pos = 0;
  try {
    long long v = std::stoll(s, &pos, 10);
    if (pos != s.size()) return false;
    out = v;
    return true;
  } catch (...) {
    return false;
  }
}

bool parse_float(const std::string& s, double& out) {
  if (s.empty()) return false;
  size_t pos = 0;
  try {
    double v = std::stod(s, &pos);
    if (pos != s.size() || !std::isfinite(v)) return false;
    out = v;
    return true;
  } catch (...) {
    return false;
  }
}

bool parse_bool(const std::string& s, bool& out) {
  if (s == "true" || s == "True" || s == "TRUE") return out = true, true;
  if (s == "false" || s == "False" || s == "FALSE") return out = false, true;
  return false;
}

// Checks a single scalar against the spec's element type and range; returns "" or what is wrong.
std::string check_number(const KeySpec& spec, double v) {
  bool below = spec.min && (spec.min_exclusive ? v <= *spec.min : v < *spec.min);
  bool above = spec.max && v > *spec.max;
  if (below || above) return "out of range";
  return "";
}

// Validates `node` against `spec`; throws ConfigError at `where`. Returns the normalized node.
YAML::Node check_value(const KeySpec& spec, const YAML::Node& node, const Location& where) {
  auto fail = [&](const std::string& why) {
    throw ConfigError(where, spec.path, "expected " + describe_expectation(spec) + ", got " + show(node) +
                                            (why.empty() ? "" : " (" + why + ")"));
  };
  const bool is_list = spec.type == ValueType::IntList || spec.type == ValueType::FloatList;
  if (is_list) {
    if (!node.IsSequence()) fail("not a list; write it as [a, b]");
    YAML::Node out(YAML::NodeType::Sequence);
    for (const auto& e : node) {
      if (!e.IsScalar()) fail("an element is not a number");
      if (spec.type == ValueType::IntList) {
        int64_t v;
        if (!parse_int(e.Scalar(), v)) fail("element '" + e.Scalar() + "' is not an integer");
        if (!check_number(spec, double(v)).empty()) fail("element " + e.Scalar() + " is out of range");
        out.push_back(v);
      } else {
        double v;
        if (!parse_float(e.Scalar(), v)) fail("element '" + e.Scalar() + "' is not a number");
        if (!check_number(spec, v).empty()) fail("element " + e.Scalar() + " is out of range");
        out.push_back(v);
      }
    }
    out.SetStyle(YAML::EmitterStyle::Flow);
    return out;
  }
  if (!node.IsScalar()) fail(node.IsMap() ? "a mapping, but this key takes a single value" : "not a single value");
  const std::string& s = node.Scalar();
  switch (spec.type) {
    case ValueType::Int: {
      int64_t v;
      if (!parse_int(s, v)) fail("");
      if (!check_number(spec, double(v)).empty()) fail("");
      return YAML::Node(v);
    }
    case ValueType::Float: {
      double v;
      if (!parse_float(s, v)) fail("");
      if (!check_number(spec, v).empty()) fail("");
      return YAML::Node(v);
    }
    case ValueType::Bool: {
      bool v;
      if (!parse_bool(s, v)) fail("");
      return YAML::Node(v);
    }
    case ValueType::String: {
      if (spec.min && double(s.size()) < *spec.min) fail("must not be empty");
      if (!spec.choices.empty() && std::find(spec.choices.begin(), spec.choices.end(), s) == spec.choices.end()) {
        const std::string best = closest_match(s, spec.choices);
        fail(best.empty() ? "" : "did you mean '" + best + "'?");
      }
      return YAML::Node(s);
    }
    default: break;
  }
  fail("");
  return {};
}

void set_path(YAML::Node root, const std::string& path, const YAML::Node& value) {
  auto parts = split_path(path);
  // yaml-cpp nodes are handles: walk by reassigning a handle to each child.
  std::vector<YAML::Node> chain{root};
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    YAML::Node child = chain.back()[parts[i]];
    if (!child.IsMap()) {
      child = YAML::Node(YAML::NodeType::Map);
      chain.back()[parts[i]] = child;
    }
    chain.push_back(chain.back()[parts[i]]);
  }
  chain.back()[parts.back()] = value;
}

// One command-line override: "key=value", "+key=value", "++key=value" (the same), or "~key" (reset to the default).
struct Override {
  std::string text;
  bool reset = false;
  std::string key;  // "" when there is no "key=" (an error unless reset)
  std::string raw;  // the text after '='

  Location location() const {
    Location loc;
    loc.origin = "command-line override '" + text + "'";
    return loc;
  }
  // The value as YAML reads it; a string key keeps the text when YAML reads null (e.g. an empty or "null" value).
  YAML::Node value(const KeySpec& spec) const {
    YAML::Node v;
    try {
      v = raw.empty() ? YAML::Node(std::string()) : YAML::Load(raw);
    } catch (const YAML::Exception& e) {
      throw ConfigError(location(), key, "cannot parse value '" + raw + "': " + e.msg);
    }
    if (spec.type == ValueType::String && (v.IsNull() || !v.IsDefined())) v = YAML::Node(raw);
    return v;
  }
};

Override parse_override(const std::string& text) {
  Override o;
  o.text = text;
  std::string body = text;
  if (!body.empty() && body[0] == '~') o.reset = true, body = body.substr(1);
  else if (body.size() > 1 && body[0] == '+' && body[1] == '+') body = body.substr(2);
  else if (!body.empty() && body[0] == '+') body = body.substr(1);
  const auto eq = body.find('=');
  if (o.reset) {
    o.key = eq == std::string::npos ? body : body.substr(0, eq);
  } else if (eq != std::string::npos && eq != 0) {
    o.key = body.substr(0, eq);
    o.raw = body.substr(eq + 1);
  }
  return o;
}

// A group's component as the file selects it and as the overrides leave it.
struct Selection {
  const ConfigGroup* group = nullptr;
  std::string in_file;  // "" when the file does not name one
  std::string final;
};

struct Resolver {
  const Schema& schema;        // the global schema with the selected components' keys
  const Schema& base;          // without them (for errors about unselected components)
  std::vector<Selection> selections;
  YAML::Node tree{YAML::NodeType::Map};
  std::map<std::string, Location> where;

  Resolver(const Schema& effective, const Schema& global, std::vector<Selection> sel)
      : schema(effective), base(global), selections(std::move(sel)) {
    for (const auto& k : schema.keys()) {
      Location loc;
      loc.origin = "default";
      set_path(tree, k.path, check_value(k, YAML::Load(k.default_yaml), loc));
      where[k.path] = loc;
    }
  }

  // A key of a group's section that the file gives for its own choice of component, when an override switched the
  // group to another component that does not have the key: dropped (Hydra: choosing a group member replaces it).
  bool switched_away(const std::string& path) const {
    for (const auto& s : selections)
      if (path.rfind(s.group->section + ".", 0) == 0 && !s.in_file.empty() && s.in_file != s.final)
        return true;
    return false;
  }

  [[noreturn]] void unknown(const std::string& path, const Location& loc) {
    const std::string moved = renamed_key(path);
    if (!moved.empty())
      throw ConfigError(loc, path, "this key is now '" + moved + "' (keys of a component live in its group: " +
                                       "rule: {name: ep, beta: 0.1}; see `bilevel train --help`)");
    for (const auto& s : selections) {
      const std::string prefix = s.group->section + ".";
      if (path.rfind(prefix, 0) != 0) continue;
      const std::string key = path.substr(prefix.size());
      std::vector<std::string> owners;
      for (const auto& c : s.group->components)
        for (const auto& k : c.keys)
          if (k.path == key) owners.push_back(c.name);
      if (!owners.empty()) {
        std::string list;
        for (const auto& o : owners) list += (list.empty() ? "'" : ", '") + o + "'";
        throw ConfigError(loc, path, "belongs to " + s.group->kind + " " + list + ", but " + s.group->selector() +
                                         " is '" + s.final + "' (whose keys are listed by `bilevel train --help`)");
      }
    }
    std::string hint = schema.closest(path);
    throw ConfigError(loc, path,
                      "unknown key" + (hint.empty() ? std::string() : "; did you mean '" + hint + "'?") +
                          " (`bilevel train --help` lists every key)");
  }

  // Walks a file's mapping, checking every key.
  void merge_file(const YAML::Node& node, const std::string& prefix, const std::string& file) {
    std::map<std::string, int> seen;  // yaml-cpp keeps duplicate keys silently; a config must not
    for (const auto& kv : node) {
      const Location loc = yaml_location(kv.first, file);
      if (!kv.first.IsScalar())
        throw ConfigError(loc, prefix, "a key must be a plain name, got " + show(kv.first));
      const std::string name = kv.first.Scalar();
      const std::string path = prefix.empty() ? name : prefix + "." + name;
      if (!seen.emplace(name, loc.line).second)
        throw ConfigError(loc, path, "appears twice in the same mapping (first at line " +
                                         std::to_string(seen[name]) + ")");
      // An empty value's position is the next token's; the key's own line is where the user looks.
      const Location value_loc = kv.second.IsNull() ? loc : yaml_location(kv.second, file);
      if (const KeySpec* spec = schema.find(path)) {
        set_path(tree, path, check_value(*spec, kv.second, value_loc));
        where[path] = value_loc;
      } else if (switched_away(path)) {
        continue;
      } else if (schema.is_section(path)) {
        if (kv.second.IsNull()) continue;  // an empty section
        if (!kv.second.IsMap())
          throw ConfigError(value_loc, path,
                            "is a section; expected a mapping of its keys, got " + show(kv.second));
        merge_file(kv.second, path, file);
      } else {
        unknown(path, loc);
      }
    }
  }

  void apply_override(const std::string& text) {
    const Override o = parse_override(text);
    const Location loc = o.location();
    if (o.reset) {
      const KeySpec* spec = schema.find(o.key);
      if (!spec) unknown(o.key, loc);
      Location def;
      def.origin = "default (reset by " + loc.origin + ")";
      set_path(tree, o.key, check_value(*spec, YAML::Load(spec->default_yaml), def));
      where[o.key] = def;
      return;
    }
    if (o.key.empty()) throw ConfigError(loc, "", "expected key.path=value (e.g. train.epochs=3)");
    const KeySpec* spec = schema.find(o.key);
    if (!spec) {
      if (schema.is_section(o.key))
        throw ConfigError(loc, o.key, "is a section; override one of its keys, e.g. " + o.key + ".KEY=value");
      unknown(o.key, loc);
    }
    set_path(tree, o.key, check_value(*spec, o.value(*spec), loc));
    where[o.key] = loc;
  }
};

}  // namespace

Location yaml_location(const YAML::Node& node, const std::string& file) {
  Location loc;
  loc.file = file;
  const auto mark = node.Mark();
  if (!mark.is_null()) loc.line = mark.line + 1, loc.column = mark.column + 1;
  return loc;
}

YAML::Node lookup(const YAML::Node& root, const std::string& path) {
  // Walks handles into `root` without copying it: Node::reset rebinds a handle (assignment would write into the
  // tree), and operator[] on a const node never inserts.
  YAML::Node cur;
  cur.reset(root);
  size_t begin = 0;
  while (begin <= path.size()) {
    const size_t dot = std::min(path.find('.', begin), path.size());
    const YAML::Node& here = cur;
    if (!here.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    const YAML::Node next = here[path.substr(begin, dot - begin)];
    if (!next) return YAML::Node(YAML::NodeType::Undefined);
    cur.reset(next);
    begin = dot + 1;
  }
  return cur;
}

template <class T>
T ExperimentConfig::get(const std::string& path) const {
  YAML::Node n = lookup(tree, path);
  if (!n.IsDefined()) throw std::logic_error("config key '" + path + "' is not in the schema");
  return n.as<T>();
}
template int64_t ExperimentConfig::get<int64_t>(const std::string&) const;
template int ExperimentConfig::get<int>(const std::string&) const;
template double ExperimentConfig::get<double>(const std::string&) const;
template bool ExperimentConfig::get<bool>(const std::string&) const;
template std::string ExperimentConfig::get<std::string>(const std::string&) const;
template std::vector<int64_t> ExperimentConfig::get<std::vector<int64_t>>(const std::string&) const;
template std::vector<double> ExperimentConfig::get<std::vector<double>>(const std::string&) const;

bool ExperimentConfig::has(const std::string& path) const { return lookup(tree, path).IsDefined(); }

Location ExperimentConfig::location(const std::string& path) const {
  auto it = where.find(path);
  if (it != where.end()) return it->second;
  Location l;
  l.file = source_file;
  return l;
}

void ExperimentConfig::fail(const std::string& path, const std::string& message) const {
  throw ConfigError(location(path), path, message);
}

std::string ExperimentConfig::to_yaml() const {
  YAML::Emitter e;
  e << tree;
  return std::string(e.c_str()) + "\n";
}

std::string ExperimentConfig::hash() const {
  // FNV-1a over the canonical YAML text: stable across runs and builds of this program.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : to_yaml()) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

namespace {

// Which component each group selects: the file's choice, then the overrides' (the last one wins; ~key resets it).
// Checked here, before any other key, so that a misspelt name is reported as such and not as its keys' problem.
std::vector<Selection> select_components(const Schema& global, const YAML::Node& file_root, const std::string& name,
                                         const std::vector<std::string>& overrides) {
  std::vector<Selection> out;
  for (const auto& g : global.groups()) {
    Selection s;
    s.group = &g;
    const KeySpec* spec = global.find(g.selector());
    if (!spec) throw std::logic_error("config group " + g.section + " has no selector key");
    s.final = YAML::Load(spec->default_yaml).as<std::string>();
    Location where;
    where.origin = "default";
    if (file_root.IsMap()) {
      const YAML::Node section = file_root[g.section];
      if (section && section.IsMap() && section["name"]) {
        const YAML::Node n = section["name"];
        where = yaml_location(n, name);
        s.final = s.in_file = check_value(*spec, n, where).as<std::string>();
      }
    }
    for (const auto& text : overrides) {
      const Override o = parse_override(text);
      if (o.key != g.selector()) continue;
      s.final = o.reset ? YAML::Load(spec->default_yaml).as<std::string>()
                        : check_value(*spec, o.value(*spec), o.location()).as<std::string>();
    }
    out.push_back(s);
  }
  return out;
}

ExperimentConfig resolve(const YAML::Node& file_root, const std::string& name,
                         const std::vector<std::string>& overrides) {
  const Schema& global = Schema::global();
  if (file_root.IsDefined() && !file_root.IsNull() && !file_root.IsMap()) {
    Location loc = yaml_location(file_root, name);
    throw ConfigError(loc, "", "the config must be a YAML mapping of keys (see configs/quickstart.yaml)");
  }
  std::vector<Selection> selections = select_components(global, file_root, name, overrides);
  std::vector<std::pair<std::string, std::string>> chosen;
  for (const auto& s : selections) chosen.emplace_back(s.group->section, s.final);
  const Schema effective = global.selected(chosen);
  Resolver r(effective, global, selections);
  if (file_root.IsDefined() && !file_root.IsNull()) r.merge_file(file_root, "", name);
  for (const auto& o : overrides) r.apply_override(o);

  ExperimentConfig c;
  c.tree = r.tree;
  c.where = r.where;
  c.source_file = name;
  c.overrides = overrides;
  auto g = [&](const std::string& p) { return lookup(c.tree, p); };
  c.name = g("experiment.name").as<std::string>();
  c.seed = g("seed").as<int64_t>();
  c.deterministic = g("deterministic").as<bool>();
  auto& d = c.data;
  d.name = g("data.name").as<std::string>();
  d.root = g("data.root").as<std::string>();
  d.train_limit = g("data.train_limit").as<int64_t>();
  d.test_limit = g("data.test_limit").as<int64_t>();
  d.validation = g("data.validation").as<int64_t>();
  d.synthetic_train = g("data.synthetic.train").as<int64_t>();
  d.synthetic_test = g("data.synthetic.test").as<int64_t>();
  d.synthetic_image_size = g("data.synthetic.image_size").as<int64_t>();
  d.synthetic_channels = g("data.synthetic.channels").as<int64_t>();
  d.synthetic_classes = g("data.synthetic.classes").as<int64_t>();
  {
    const YAML::Node& tree = c.tree;
    if (tree["data"] && tree["data"][d.name] && tree["data"][d.name].IsMap()) d.keys = YAML::Clone(tree["data"][d.name]);
  }
  auto& m = c.model;
  m.kind = g("model.kind").as<std::string>();
  m.hidden = g("model.hidden").as<std::vector<int64_t>>();
  m.channels = g("model.channels").as<std::vector<int64_t>>();
  m.kernel_size = g("model.kernel_size").as<int64_t>();
  m.padding = g("model.padding").as<int64_t>();
  m.pool = g("model.pool").as<int64_t>();
  m.pooling = g("model.pooling").as<std::string>();
  m.activation = g("model.activation").as<std::string>();
  m.init = g("model.init").as<std::string>();
  m.init_gain = g("model.init_gain").as<double>();
  m.layer_gains = g("model.layer_gains").as<std::vector<double>>();
  auto& t = c.train;
  c.rule.name = g("rule.name").as<std::string>();
  t.loss = g("train.loss").as<std::string>();
  t.epochs = g("train.epochs").as<int64_t>();
  t.batch_size = g("train.batch_size").as<int64_t>();
  t.eval_batch_size = g("train.eval_batch_size").as<int64_t>();
  t.threads = g("train.threads").as<int64_t>();
  t.device = g("train.device").as<std::string>();
  c.log_every = g("train.log_every").as<int64_t>();
  auto& o = c.optimizer;
  o.name = g("optimizer.name").as<std::string>();
  o.lr = g("optimizer.lr").as<double>();
  o.layer_lrs = g("optimizer.layer_lrs").as<std::vector<double>>();
  o.momentum = g("optimizer.momentum").as<double>();
  o.nesterov = g("optimizer.nesterov").as<bool>();
  o.weight_decay = g("optimizer.weight_decay").as<double>();
  o.beta1 = g("optimizer.beta1").as<double>();
  o.beta2 = g("optimizer.beta2").as<double>();
  o.eps = g("optimizer.eps").as<double>();
  auto& s = c.scheduler;
  s.name = g("scheduler.name").as<std::string>();
  s.step_size = g("scheduler.step_size").as<int64_t>();
  s.gamma = g("scheduler.gamma").as<double>();
  s.min_lr = g("scheduler.min_lr").as<double>();
  c.checkpoint_every = g("checkpoint.every").as<int64_t>();
  c.output_root = g("output.root").as<std::string>();

  // Cross-key checks that a single key's range cannot express.
  if (c.name.find('/') != std::string::npos || c.name == "." || c.name == "..")
    c.fail("experiment.name", "must be a plain folder name (no '/', '.' or '..'), got '" + c.name + "'");
  if (d.name == "synthetic" && d.validation >= d.synthetic_train)
    c.fail("data.validation", "holds out " + std::to_string(d.validation) + " examples but data.synthetic.train is " +
                                  std::to_string(d.synthetic_train));
  if (d.train_limit > 0 && d.validation >= d.train_limit)
    c.fail("data.validation", "holds out " + std::to_string(d.validation) +
                                  " examples but data.train_limit leaves only " + std::to_string(d.train_limit));
  if (o.name == "adam" && o.momentum != 0)
    c.fail("optimizer.momentum", "applies to sgd only; adam uses optimizer.beta1");
  if (o.nesterov && (o.name != "sgd" || o.momentum == 0))
    c.fail("optimizer.nesterov", "needs optimizer.name: sgd with optimizer.momentum > 0");
  if (m.kind == "mlp" && m.hidden.empty() && !lookup(c.tree, "model.hidden").IsDefined())
    c.fail("model.hidden", "an mlp needs at least its output layer");
  return c;
}

}  // namespace

ExperimentConfig with_rule(const ExperimentConfig& cfg, const std::string& name) {
  std::vector<std::string> overrides = cfg.overrides;
  overrides.push_back("rule.name=" + name);
  ExperimentConfig out = resolve(YAML::Clone(cfg.tree), cfg.source_file, overrides);
  return out;
}

ExperimentConfig load_config_text(const std::string& text, const std::string& name,
                                  const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    Location loc;
    loc.file = name;
    loc.line = e.mark.line + 1;
    loc.column = e.mark.column + 1;
    throw ConfigError(loc, "", "invalid YAML: " + e.msg);
  }
  return resolve(root, name, overrides);
}

ExperimentConfig load_config(const std::string& file, const std::vector<std::string>& overrides) {
  std::ifstream in(file);
  if (!in) {
    Location loc;
    loc.file = file;
    throw ConfigError(loc, "", "cannot open the config file");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return load_config_text(ss.str(), file, overrides);
}

}  // namespace bilevel
