#include "suite_dir.h"

#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <iostream>
#include <vector>

#include "bilevel/bench/expectations.h"
#include "bilevel/run/dir_lock.h"
#include "bilevel/run/run_dir.h"
#include "bilevel/util/atomic_file.h"
#include "bilevel/util/clock.h"
#include "bilevel/util/error.h"
#include "bilevel/util/log.h"
#include "commands.h"

namespace bilevel::cli {
namespace {

namespace fs = std::filesystem;
using namespace bilevel::bench;

// The newest run directory under runs/ENTRY/ENTRY_seedS/, for a run the bench started but did not record
// (killed between the child creating it and state.yaml being written).
std::string find_unrecorded_run(const fs::path& parent) {
  std::error_code ec;
  if (!fs::is_directory(parent, ec)) return "";
  fs::path best;
  for (const auto& e : fs::directory_iterator(parent, ec))
    if (e.is_directory() && fs::exists(e.path() / "config.yaml") && e.path().filename() > best.filename())
      best = e.path();
  return best.empty() ? "" : best.string();
}

}  // namespace

const SuiteEntry& entry_named(const Suite& suite, const std::string& name) {
  for (const auto& e : suite.entries)
    if (e.name == name) return e;
  throw UserError("state.yaml names entry '" + name + "', which the suite does not have");
}

std::string meta_status(const fs::path& run_dir) {
  try {
    const YAML::Node meta = YAML::LoadFile((run_dir / "meta.yaml").string());
    return meta["status"].as<std::string>("");
  } catch (...) {
    return "";
  }
}

void find_run_dir(RunRecord& rec, const fs::path& parent, const fs::path& dir) {
  if (!rec.run_dir.empty()) return;
  const std::string found = find_unrecorded_run(parent);
  if (!found.empty()) rec.run_dir = fs::relative(found, dir).string();
}

bool report_suite(const fs::path& dir, const Suite& suite, const SuiteState& state, bool plots, bool check) {
  std::vector<RunResult> results;
  for (const auto& w : write_reports(dir, suite, state, plots, &results)) spdlog::warn("{}", w);
  if (suite.expect.empty() || !check) return true;
  bool all = true;
  for (const auto& c : check_expectations(suite, results)) {
    if (c.pass) spdlog::info("{}", expectation_line(c));
    else spdlog::error("{}", expectation_line(c));
    all = all && c.pass;
  }
  spdlog::log(all ? spdlog::level::info : spdlog::level::err, "suite {}: expected figures {}", suite.name,
              all ? "PASS" : "FAIL");
  return all;
}

int start_suite(const NewSuite& n, const SuiteRunOptions& opt) {
  Suite suite = parse_suite(n.text, n.file, n.base_dir);
  SuiteState state;
  state.cli_overrides = split_cli_overrides(n.overrides, suite.output_root);
  // Everything is checked before anything is written.
  for (const auto& w : validate_suite(suite, state.cli_overrides)) spdlog::warn("{}", w);
  state.suite_file = n.file;
  state.base_dir = suite.base_dir.string();
  state.command_line = n.command_line;
  state.created = now_iso();
  for (int64_t seed : suite.seeds)
    for (const auto& e : suite.entries) {
      RunRecord rec;
      rec.entry = e.name, rec.seed = seed;
      state.runs.push_back(rec);
    }
  if (opt.launcher == "slurm" && opt.slurm.dry_run) {
    // Nothing is written: the script names the directory a real submission would create.
    const fs::path would_be = fs::absolute(fs::path(suite.output_root) / n.folder / suite.name / "TIMESTAMP");
    return run_suite_on_slurm(would_be.lexically_normal(), suite, state, opt);
  }
  // A fresh timestamped directory, never reused (RunDir's naming); a suite has no checkpoints of its own.
  const fs::path dir =
      fs::absolute(RunDir::create(fs::path(suite.output_root) / n.folder, suite.name).root).lexically_normal();
  const DirLock lock = DirLock::acquire(dir);  // one bench per suite directory; the children do not inherit it
  std::error_code ec;
  fs::remove(dir / "checkpoints", ec);
  write_file_atomic(dir / "suite.yaml", n.text);
  save_state(dir, state);
  std::cout << dir.string() << std::endl;
  attach_log_file(dir / "bench.log");
  spdlog::info("suite {}: {} entries × {} seed{} = {} runs in {}", suite.name, suite.entries.size(),
               suite.seeds.size(), suite.seeds.size() > 1 ? "s" : "", state.runs.size(), dir.string());
  if (opt.launcher == "slurm") return run_suite_on_slurm(dir, suite, state, opt);
  return run_suite(dir, suite, state, opt);
}

int collect_suite(const fs::path& dir, const Suite& suite, SuiteState& state, const SuiteRunOptions& opt) {
  bool all_done = true;
  for (auto& rec : state.runs) {
    const fs::path parent = run_parent(dir / "runs", entry_named(suite, rec.entry), rec.seed);
    find_run_dir(rec, parent, dir);
    const std::string status = rec.run_dir.empty() ? "" : meta_status(dir / rec.run_dir);
    if (status == "completed" && fs::exists(dir / rec.run_dir / "final.pt")) rec.status = "completed";
    else if (status == "diverged") rec.status = "diverged";
    else if (status == "failed") rec.status = "failed";
    else if (status.empty()) rec.status = "pending";
    else rec.status = "interrupted";  // running (killed), interrupted, preempted
    all_done = all_done && (rec.status == "completed" || rec.status == "diverged");
  }
  save_state(dir, state);
  const bool expected = report_suite(dir, suite, state, opt.plots);
  spdlog::info("suite {}: summary: {}", suite.name, (dir / "summary.md").string());
  if (!all_done) spdlog::warn("some runs did not complete; continue with: bilevel bench --resume {}", dir.string());
  return all_done && expected ? 0 : 1;
}

}  // namespace bilevel::cli
