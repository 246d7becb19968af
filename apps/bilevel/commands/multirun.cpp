// bilevel train CONFIG -m key=a,b ... : a multirun sweep. The grid (sweep/sweep.h) becomes a suite: one entry per
// point of the keys other than `seed`, the `seed` values as the suite's seeds. It then runs as `bilevel bench`
// runs a suite (suite_dir.cpp, suite_run.cpp): one run directory per point and seed under
// OUTPUT_ROOT/multirun/NAME/TIMESTAMP/runs/, state.yaml, results.csv, summary.md (mean ± std over seeds per point)
// and plots; `--jobs N` runs N points at a time; `bilevel bench --resume SWEEP_DIR` continues an interrupted sweep
// and skips the finished points.
#include <yaml-cpp/yaml.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/sweep/sweep.h"
#include "bilevel/util/error.h"
#include "bilevel/util/log.h"
#include "commands.h"

namespace bilevel::cli {
namespace {

namespace fs = std::filesystem;

// A suite entry name for a point (letters, digits, '_', '-', '.'): its index, then each key's last part and value.
std::string entry_name(size_t index, const std::vector<std::string>& point) {
  char prefix[16];
  std::snprintf(prefix, sizeof prefix, "%03zu", index);
  std::string name = prefix;
  for (const auto& o : point) {
    const size_t eq = o.find('=');
    std::string key = o.substr(0, eq);
    key = key.substr(key.rfind('.') == std::string::npos ? 0 : key.rfind('.') + 1);
    name += "_" + key + "-";
    for (char c : o.substr(eq + 1)) name += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-') ? c : '_';
  }
  return name.size() > 100 ? name.substr(0, 100) : name;
}

}  // namespace

int multirun(const std::string& config, const Args& overrides, const Args& options, const std::string& command_line) {
  SuiteRunOptions opt;
  for (size_t i = 0; i < options.size(); ++i) {
    if (options[i] == "--jobs") {
      if (i + 1 >= options.size()) throw UserError("bilevel train -m: --jobs needs a number");
      opt.jobs = parse_jobs(options[++i]);
    } else if (options[i] == "--no-plots") {
      opt.plots = false;
    } else if (options[i] == "--verbose") {
      opt.verbose = true;
    } else if (take_launcher_option(options, i, opt)) {
      continue;
    } else {
      throw UserError("bilevel train -m: unknown option '" + options[i] + "'");
    }
  }
  const Sweep sweep = parse_sweep(overrides);
  // The fixed overrides, less `seed` (a suite's seeds are its own key): the base config of every point.
  Args fixed;
  std::vector<int64_t> seeds;
  for (const auto& o : sweep.fixed)
    if (o.rfind("seed=", 0) == 0 || o.rfind("+seed=", 0) == 0) seeds = {-1};  // filled from the config below
    else fixed.push_back(o);
  const ExperimentConfig base = load_config(config, sweep.fixed);
  if (!seeds.empty()) seeds = {base.seed};
  std::vector<SweepParam> params;
  for (const auto& p : sweep.params) {
    if (p.key != "seed") {
      params.push_back(p);
      continue;
    }
    seeds.clear();
    for (const auto& v : p.values) {
      // Checked like any override (an integer >= 0), naming the sweep.
      const ExperimentConfig one = load_config(config, {"seed=" + v});
      seeds.push_back(one.seed);
    }
  }
  if (params.empty() && seeds.size() < 2)
    throw UserError("bilevel train -m: nothing to sweep (give a key several values: key=a,b or key=range(a,b))");
  if (seeds.empty()) seeds = {base.seed};
  Sweep grid;
  grid.params = params;

  YAML::Emitter y;
  y << YAML::BeginMap;
  y << YAML::Key << "name" << YAML::Value << base.name;
  y << YAML::Key << "description" << YAML::Value << command_line;
  y << YAML::Key << "seeds" << YAML::Value << YAML::Flow << seeds;
  y << YAML::Key << "probe_every" << YAML::Value << 0;
  y << YAML::Key << "output_root" << YAML::Value << base.output_root;
  y << YAML::Key << "entries" << YAML::Value << YAML::BeginSeq;
  const auto points = grid.points();
  const std::string config_path = fs::absolute(config).lexically_normal().string();
  for (size_t i = 0; i < points.size(); ++i) {
    y << YAML::BeginMap;
    y << YAML::Key << "name" << YAML::Value << entry_name(i, points[i]);
    y << YAML::Key << "config" << YAML::Value << config_path;
    y << YAML::Key << "overrides" << YAML::Value << YAML::Flow << points[i];
    y << YAML::EndMap;
  }
  y << YAML::EndSeq << YAML::EndMap;

  NewSuite n;
  n.text = std::string(y.c_str()) + "\n";
  n.file = config + " (multirun)";
  n.base_dir = fs::current_path();
  n.overrides = fixed;
  n.folder = "multirun";
  n.command_line = command_line;
  init_console_logging();
  return start_suite(n, opt);  // --launcher slurm: as a job array
}

}  // namespace bilevel::cli
