// state.yaml: load_state, save_state (bench/report.h).
#include <yaml-cpp/yaml.h>

#include <fstream>

#include "bilevel/bench/report.h"
#include "bilevel/util/atomic_file.h"

namespace bilevel::bench {
namespace fs = std::filesystem;

// ---- state.yaml ----

RunRecord* SuiteState::find(const std::string& entry, int64_t seed) {
  for (auto& r : runs)
    if (r.entry == entry && r.seed == seed) return &r;
  return nullptr;
}

SuiteState load_state(const fs::path& suite_dir) {
  const fs::path file = suite_dir / "state.yaml";
  if (!fs::exists(file))
    throw UserError(suite_dir.string() + ": not a benchmark suite directory (no state.yaml; `bilevel bench SUITE.yaml` "
                                         "creates one)");
  YAML::Node n;
  try {
    n = YAML::LoadFile(file.string());
  } catch (const YAML::Exception& e) {
    throw UserError(file.string() + ": unreadable: " + e.what());
  }
  SuiteState s;
  try {
    s.suite_file = n["suite_file"].as<std::string>();
    s.base_dir = n["base_dir"].as<std::string>();
    s.command_line = n["command_line"].as<std::string>("");
    s.created = n["created"].as<std::string>("");
    if (n["cli_overrides"])
      for (const auto& o : n["cli_overrides"]) s.cli_overrides.push_back(o.as<std::string>());
    for (const auto& r : n["runs"]) {
      RunRecord rec;
      rec.entry = r["entry"].as<std::string>();
      rec.seed = r["seed"].as<int64_t>();
      rec.run_dir = r["run_dir"].as<std::string>("");
      rec.status = r["status"].as<std::string>("pending");
      rec.exit_code = r["exit_code"].as<int>(0);
      rec.attempts = r["attempts"].as<int64_t>(0);
      rec.wall_seconds = r["wall_seconds"].as<double>(0.0);
      rec.peak_rss_kb = r["peak_rss_kb"].as<int64_t>(0);
      s.runs.push_back(rec);
    }
  } catch (const YAML::Exception& e) {
    throw UserError(file.string() + ": malformed: " + e.what());
  }
  return s;
}

void save_state(const fs::path& suite_dir, const SuiteState& s) {
  YAML::Node n;
  n["suite_file"] = s.suite_file;
  n["base_dir"] = s.base_dir;
  n["command_line"] = s.command_line;
  n["created"] = s.created;
  n["cli_overrides"] = YAML::Node(YAML::NodeType::Sequence);
  for (const auto& o : s.cli_overrides) n["cli_overrides"].push_back(o);
  n["runs"] = YAML::Node(YAML::NodeType::Sequence);
  for (const auto& r : s.runs) {
    YAML::Node x;
    x["entry"] = r.entry;
    x["seed"] = r.seed;
    x["run_dir"] = r.run_dir;
    x["status"] = r.status;
    x["exit_code"] = r.exit_code;
    x["attempts"] = r.attempts;
    x["wall_seconds"] = r.wall_seconds;
    x["peak_rss_kb"] = r.peak_rss_kb;
    n["runs"].push_back(x);
  }
  YAML::Emitter e;
  e << n;
  write_file_atomic(suite_dir / "state.yaml", std::string(e.c_str()) + "\n");
}

}  // namespace bilevel::bench
