#include "bilevel/bench/suite.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "bilevel/config/schema.h"
#include "bilevel/config/yaml_location.h"
#include "bilevel/data/dataset.h"
#include "bilevel/rules/learning_rule.h"
#include "bilevel/train/experiment.h"
#include "bilevel/train/memory_estimate.h"

namespace bilevel::bench {
namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail(const Location& where, const std::string& key, const std::string& message) {
  throw ConfigError(where, key, message);
}

// Entry names become folder names: keep them plain.
bool plain_name(const std::string& s) {
  if (s.empty() || s == "." || s == "..") return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

std::string scalar(const YAML::Node& n, const std::string& key, const std::string& file) {
  if (!n.IsScalar()) fail(yaml_location(n, file), key, "expected a single value (a string)");
  return n.Scalar();
}

int64_t integer(const YAML::Node& n, const std::string& key, const std::string& file, int64_t min) {
  if (!n.IsScalar()) fail(yaml_location(n, file), key, "expected an integer >= " + std::to_string(min));
  try {
    size_t pos = 0;
    const long long v = std::stoll(n.Scalar(), &pos);
    if (pos == n.Scalar().size() && v >= min) return v;
  } catch (...) {
  }
  fail(yaml_location(n, file), key, "expected an integer >= " + std::to_string(min) + ", got '" + n.Scalar() + "'");
}

std::vector<SuiteOverride> overrides_of(const YAML::Node& n, const std::string& key, const std::string& file) {
  std::vector<SuiteOverride> out;
  if (n.IsNull()) return out;
  if (!n.IsSequence())
    fail(yaml_location(n, file), key,
         "expected a list of key.path=value strings, e.g. [train.epochs=2] (write values with brackets, like "
         "model.hidden=[64], as a block list item or in quotes)");
  for (const auto& o : n) {
    if (!o.IsScalar() || o.Scalar().find('=') == std::string::npos || o.Scalar()[0] == '=') {
      if (o.IsScalar() && !o.Scalar().empty() && o.Scalar()[0] == '~') {
        out.push_back({o.Scalar(), yaml_location(o, file)});
        continue;
      }
      fail(yaml_location(o, file), key,
           "expected key.path=value, got " + (o.IsScalar() ? "'" + o.Scalar() + "'" : std::string("a mapping or list")) +
               (o.IsMap() ? " (a value with brackets inside a [...] list must be quoted: \"model.hidden=[64]\")" : ""));
    }
    out.push_back({o.Scalar(), yaml_location(o, file)});
  }
  return out;
}

void check_keys(const YAML::Node& map, const std::vector<std::string>& allowed, const std::string& prefix,
                const std::string& file) {
  for (const auto& kv : map) {
    const std::string k = kv.first.as<std::string>();
    if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
    const std::string hint = closest_match(k, allowed);
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    fail(yaml_location(kv.first, file), prefix + k,
         "unknown suite key" + (hint.empty() ? "" : "; did you mean '" + hint + "'?") + " (expected one of: " + list +
             ")");
  }
}

fs::path resolve_config(const std::string& config, const fs::path& base_dir) {
  const fs::path p(config);
  if (p.is_absolute()) return p.lexically_normal();
  std::error_code ec;
  const fs::path beside = base_dir / p;
  if (fs::exists(beside, ec)) return fs::absolute(beside, ec).lexically_normal();
  if (fs::exists(p, ec)) return fs::absolute(p, ec).lexically_normal();
  return {};
}

}  // namespace

Suite parse_suite(const std::string& text, const std::string& file, const fs::path& base_dir) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    Location loc;
    loc.file = file, loc.line = e.mark.line + 1, loc.column = e.mark.column + 1;
    fail(loc, "", "invalid YAML: " + e.msg);
  }
  Location top;
  top.file = file;
  if (!root.IsMap()) fail(top, "", "a suite must be a YAML mapping with at least `entries:` (see docs/bench.md)");
  check_keys(root,
             {"name", "description", "seeds", "baseline", "probe_every", "probe_reference", "probe_solver", "output_root",
              "overrides", "entries", "expect"},
             "", file);

  Suite s;
  s.file = file;
  s.base_dir = base_dir;
  s.probe_where = top;
  s.name = fs::path(file).stem().string();
  if (root["name"]) s.name = scalar(root["name"], "name", file);
  if (!plain_name(s.name)) fail(yaml_location(root["name"], file), "name", "use letters, digits, '_', '-' and '.' only");
  if (root["description"]) s.description = scalar(root["description"], "description", file);
  if (const auto n = root["seeds"]) {
    if (!n.IsSequence() || n.size() == 0) fail(yaml_location(n, file), "seeds", "expected a non-empty list of seeds, e.g. [0, 1, 2]");
    s.seeds.clear();
    for (const auto& e : n) {
      const int64_t seed = integer(e, "seeds", file, 0);
      if (std::find(s.seeds.begin(), s.seeds.end(), seed) != s.seeds.end())
        fail(yaml_location(e, file), "seeds", "seed " + std::to_string(seed) + " is listed twice");
      s.seeds.push_back(seed);
    }
  }
  if (root["baseline"]) s.baseline = scalar(root["baseline"], "baseline", file);
  if (const auto n = root["probe_every"]) s.probe_every = integer(n, "probe_every", file, 0), s.probe_where = yaml_location(n, file);
  if (const auto n = root["probe_reference"]) {
    s.probe_reference = scalar(n, "probe_reference", file);
    s.probe_where = yaml_location(n, file);
  }
  if (const auto n = root["probe_solver"]) {
    s.probe_solver = scalar(n, "probe_solver", file);
    s.probe_where = yaml_location(n, file);
  }
  if (root["output_root"]) s.output_root = scalar(root["output_root"], "output_root", file);
  if (s.output_root.empty()) fail(yaml_location(root["output_root"], file), "output_root", "must not be empty");
  if (root["overrides"]) s.overrides = overrides_of(root["overrides"], "overrides", file);

  const auto entries = root["entries"];
  if (!entries || !entries.IsSequence() || entries.size() == 0)
    fail(entries ? yaml_location(entries, file) : top, "entries",
         "expected a non-empty list of entries, each with `config:` (and `name:`, `overrides:`)");
  std::set<std::string> names;
  for (size_t i = 0; i < entries.size(); ++i) {
    const auto e = entries[i];
    const std::string key = "entries[" + std::to_string(i) + "]";
    if (!e.IsMap()) fail(yaml_location(e, file), key, "expected a mapping with `name:`, `config:` and `overrides:`");
    check_keys(e, {"name", "config", "overrides"}, key + ".", file);
    SuiteEntry entry;
    entry.where = yaml_location(e, file);
    if (!e["config"]) fail(yaml_location(e, file), key + ".config", "every entry needs `config:` (a config file)");
    entry.config = scalar(e["config"], key + ".config", file);
    entry.config_where = yaml_location(e["config"], file);
    entry.config_path = resolve_config(entry.config, base_dir);
    if (entry.config_path.empty())
      fail(entry.config_where, key + ".config",
           "config file '" + entry.config + "' not found (looked in " + (base_dir / entry.config).string() +
               " and " + (fs::current_path() / entry.config).string() + ")");
    if (e["overrides"]) entry.overrides = overrides_of(e["overrides"], key + ".overrides", file);
    if (e["name"]) {
      entry.name = scalar(e["name"], key + ".name", file);
    } else {
      // Default: the algorithm the entry's overrides select, else the config file's stem.
      entry.name = entry.config_path.stem().string();
      for (const auto& o : entry.overrides)
        if (o.text.rfind("rule.name=", 0) == 0) entry.name = o.text.substr(10);
    }
    const Location name_at = e["name"] ? yaml_location(e["name"], file) : entry.where;
    if (!plain_name(entry.name))
      fail(name_at, key + ".name", "'" + entry.name + "': use letters, digits, '_', '-' and '.' only");
    if (!names.insert(entry.name).second)
      fail(name_at, key + ".name", "entry name '" + entry.name + "' is used twice; give each entry its own `name:`");
    s.entries.push_back(std::move(entry));
  }
  if (!s.baseline.empty() && !names.count(s.baseline))
    fail(yaml_location(root["baseline"], file), "baseline", "no entry is named '" + s.baseline + "'");
  if (const auto ex = root["expect"]) {
    if (!ex.IsSequence())
      fail(yaml_location(ex, file), "expect",
           "expected a list of {entry: NAME, metric: test_accuracy, min: 0.85, max: 0.87, note: ...}");
    for (size_t i = 0; i < ex.size(); ++i) {
      const auto e = ex[i];
      const std::string key = "expect[" + std::to_string(i) + "]";
      if (!e.IsMap()) fail(yaml_location(e, file), key, "expected a mapping with entry, metric and min and/or max");
      check_keys(e, {"entry", "metric", "min", "max", "note"}, key + ".", file);
      Expectation x;
      x.where = yaml_location(e, file);
      if (!e["entry"] || !e["metric"]) fail(x.where, key, "every expectation needs `entry:` and `metric:`");
      x.entry = scalar(e["entry"], key + ".entry", file);
      if (!names.count(x.entry)) fail(yaml_location(e["entry"], file), key + ".entry", "no entry is named '" + x.entry + "'");
      x.metric = scalar(e["metric"], key + ".metric", file);
      const std::vector<std::string> metrics = expectation_metrics();
      if (std::find(metrics.begin(), metrics.end(), x.metric) == metrics.end()) {
        std::string list;
        for (const auto& m : metrics) list += (list.empty() ? "" : ", ") + m;
        fail(yaml_location(e["metric"], file), key + ".metric", "unknown metric '" + x.metric + "' (expected one of: " + list + ")");
      }
      auto number = [&](const char* k) {
        try {
          return e[k].as<double>();
        } catch (const YAML::Exception&) {
          fail(yaml_location(e[k], file), key + "." + k, "expected a number");
        }
      };
      if (!e["min"] && !e["max"]) fail(x.where, key, "an expectation needs `min:`, `max:` or both");
      if (e["min"]) x.min = number("min");
      if (e["max"]) x.max = number("max");
      if (x.min > x.max) fail(x.where, key, "min is above max");
      if (e["note"]) x.note = scalar(e["note"], key + ".note", file);
      s.expect.push_back(std::move(x));
    }
  }
  return s;
}

Suite load_suite(const std::string& file) {
  std::ifstream in(file);
  if (!in) throw UserError(file + ": cannot read the suite file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_suite(ss.str(), file, fs::absolute(fs::path(file)).parent_path());
}

std::vector<std::string> split_cli_overrides(const std::vector<std::string>& args, std::string& output_root) {
  std::vector<std::string> out;
  for (const auto& a : args) {
    std::string body = a;
    while (!body.empty() && (body[0] == '+' || body[0] == '~')) body = body.substr(1);
    const std::string key = body.substr(0, body.find('='));
    if (key == "output.root") {
      if (a[0] == '~' || body.find('=') == std::string::npos || body.size() == key.size() + 1)
        throw UserError("bilevel bench: output.root needs a folder (output.root=DIR)");
      output_root = body.substr(key.size() + 1);
    } else if (key == "seed") {
      throw UserError("bilevel bench: '" + a + "': the suite's `seeds:` list sets each run's seed");
    } else if (key == "experiment.name") {
      throw UserError("bilevel bench: '" + a + "': the bench names each run ENTRY_seedS");
    } else {
      out.push_back(a);
    }
  }
  return out;
}

std::string run_name(const SuiteEntry& entry, int64_t seed) { return entry.name + "_seed" + std::to_string(seed); }

fs::path run_parent(const fs::path& runs_root, const SuiteEntry& entry, int64_t seed) {
  return runs_root / entry.name / run_name(entry, seed);
}

std::vector<std::string> run_overrides(const Suite& suite, const SuiteEntry& entry, int64_t seed,
                                       const std::vector<std::string>& cli_overrides, const fs::path& runs_root) {
  std::vector<std::string> o;
  o.push_back("train.probe_every=" + std::to_string(suite.probe_every));
  if (suite.probe_every > 0) o.push_back("train.probe_reference=" + suite.probe_reference);
  if (suite.probe_every > 0 && suite.probe_solver != "none") o.push_back("train.probe_solver=" + suite.probe_solver);
  for (const auto& x : suite.overrides) o.push_back(x.text);
  for (const auto& x : entry.overrides) o.push_back(x.text);
  o.insert(o.end(), cli_overrides.begin(), cli_overrides.end());
  o.push_back("seed=" + std::to_string(seed));
  o.push_back("experiment.name=" + run_name(entry, seed));
  o.push_back("output.root=" + (runs_root / entry.name).string());
  return o;
}

namespace {

// Strips ConfigError's "WHERE: key 'K': " prefix, leaving the message.
std::string bare_message(const ConfigError& e) {
  std::string what = e.what();
  const std::string prefix = e.where().str() + ": ";
  if (what.rfind(prefix, 0) == 0) what = what.substr(prefix.size());
  const std::string key = "key '" + e.key() + "': ";
  if (!e.key().empty() && what.rfind(key, 0) == 0) what = what.substr(key.size());
  return what;
}

// Re-throws a config error of one entry so that it names the suite file's line: the override that caused it,
// or the entry's `config:` when the config file itself is wrong.
[[noreturn]] void rethrow_for_entry(const ConfigError& e, const Suite& suite, const SuiteEntry& entry) {
  const std::string origin = e.where().origin;
  const std::string tag = "command-line override '";
  if (origin.rfind(tag, 0) == 0) {
    const std::string text = origin.substr(tag.size(), origin.size() - tag.size() - 1);
    for (const auto* list : {&entry.overrides, &suite.overrides})
      for (const auto& o : *list)
        if (o.text == text)
          throw ConfigError(o.where, e.key(), bare_message(e) + " (entry '" + entry.name + "', override '" + text + "')");
    if (text.rfind("train.probe_", 0) == 0)
      throw ConfigError(suite.probe_where, e.key(), bare_message(e) + " (the suite's probe settings)");
    // A command-line override: its own message names it.
    throw UserError("entry '" + entry.name + "': " + std::string(e.what()));
  }
  if (e.where().file.empty() || e.where().line == 0) {
    // A cross-key check (e.g. a rule factory) on a value that came from a default: point at the entry.
    throw ConfigError(entry.where, e.key(), bare_message(e) + " (entry '" + entry.name + "')");
  }
  throw UserError(entry.config_where.str() + ": entry '" + entry.name + "': " + e.what());
}

}  // namespace

std::vector<std::string> validate_suite(Suite& suite, const std::vector<std::string>& cli_overrides) {
  std::vector<std::string> warnings;
  const fs::path runs_root = fs::path(suite.output_root) / "bench" / suite.name / "TIMESTAMP" / "runs";
  // Keys that must agree across entries for a comparison on equal terms.
  const std::vector<std::string> same = {"data.name",       "data.train_limit", "data.test_limit", "data.validation",
                                         "model.kind",      "model.hidden",     "model.channels",  "train.epochs",
                                         "train.batch_size", "train.threads"};
  std::map<std::string, std::string> first_value;
  for (auto& entry : suite.entries) {
    ExperimentConfig cfg;
    try {
      cfg = load_config(entry.config_path.string(),
                        run_overrides(suite, entry, suite.seeds.front(), cli_overrides, runs_root));
      make_rule(cfg);
      check_memory(cfg);
      if (cfg.get<int64_t>("train.probe_every") > 0) {
        make_rule(with_rule(cfg, cfg.get<std::string>("train.probe_reference")));
        make_probe_solver(cfg);
      }
      for (const auto& f : required_files(cfg.data))
        if (!fs::exists(f))
          cfg.fail("data.root", "data file " + f + " does not exist (for data.name: " + cfg.data.name + ")");
    } catch (const ConfigError& e) {
      rethrow_for_entry(e, suite, entry);
    }
    entry.algorithm = cfg.rule.name;
    for (const auto& key : same) {
      YAML::Emitter em;
      em << YAML::Flow << lookup(cfg.tree, key);
      const std::string v = em.c_str();
      auto it = first_value.find(key);
      if (it == first_value.end()) first_value[key] = v;
      else if (it->second != v)
        warnings.push_back("entry '" + entry.name + "' has " + key + " = " + v + " but entry '" +
                           suite.entries.front().name + "' has " + it->second + " (not equal terms)");
    }
  }
  if (suite.baseline.empty()) {
    for (const auto& e : suite.entries)
      if (e.algorithm == "backprop") {
        suite.baseline = e.name;
        break;
      }
    if (suite.baseline.empty()) warnings.push_back("no entry uses backprop and no `baseline:` is set: no ratios");
  }
  return warnings;
}

int baseline_index(const Suite& suite) {
  for (size_t i = 0; i < suite.entries.size(); ++i)
    if (suite.entries[i].name == suite.baseline) return static_cast<int>(i);
  return -1;
}

}  // namespace bilevel::bench
