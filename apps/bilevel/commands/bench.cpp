// bilevel bench: runs a benchmark suite (every entry × seed as a child `bilevel train` process) and compares
// accuracy, speed, memory and gradient alignment. Suite parsing, validation and the reports live in the library
// (bilevel/bench/*.h); this file is the command line (its options, a new suite, --resume, --report). The runs:
// suite_run.cpp (on this machine, each a child process: child_run.h) and slurm_launcher.cpp (a Slurm job array);
// the suite directory: suite_dir.h.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "bilevel/bench/report.h"
#include "bilevel/bench/suite.h"
#include "bilevel/run/dir_lock.h"
#include "bilevel/util/error.h"
#include "bilevel/util/log.h"
#include "bilevel/util/parse_int.h"
#include "child_run.h"
#include "commands.h"
#include "suite_dir.h"

namespace bilevel::cli {
namespace {

namespace fs = std::filesystem;
using namespace bilevel::bench;

constexpr const char* kHelp = R"(usage: bilevel bench SUITE.yaml [key.path=value ...] [--jobs N | --launcher slurm ...] [--verbose] [--no-plots]
       bilevel bench --resume SUITE_DIR [--jobs N] [--verbose] [--no-plots]
       bilevel bench --report SUITE_DIR

Runs a benchmark suite: every entry (a config plus overrides) with every seed, each as an ordinary run
(a child `bilevel train` process with train.probe_every and train.probe_reference=backprop set, so gradient
alignment with backprop is recorded), then writes, in the suite directory
OUTPUT_ROOT/bench/SUITE_NAME/YYYY-MM-DD_HH-MM-SS/ (printed on stdout):
  results.csv   one row per entry and seed: test accuracy (final, and at the epoch chosen on the validation
                split), median epoch time, total time, peak host RSS, gradient alignment per layer
  summary.md    per entry: mean ± std over seeds, ratios to the baseline entry (backprop by default), and
                the study's expected figures (the suite's `expect:` list): PASS or FAIL each; the bench
                exits 1 when one fails
  plots/        test accuracy against epoch and against time, gradient cosine per layer (needs gnuplot)
  runs/ENTRY/ENTRY_seedS/TIMESTAMP/   the runs' directories

The whole suite (every entry's config and overrides, its learning rule, its data files) is validated before
anything runs. key.path=value overrides after the suite file apply to every entry (e.g. train.epochs=1 for a
smoke test); output.root=DIR sets OUTPUT_ROOT (default: the suite's output_root, else runs).

  --resume SUITE_DIR   continue an interrupted suite: completed runs are skipped, unfinished ones continued
                       with `bilevel resume`, the rest started
  --report SUITE_DIR   rewrite results.csv, summary.md and the plots from what the suite directory holds
  --verbose            show every line the runs log (default: their epoch lines and warnings; the rest is in
                       runs/ENTRY/ENTRY_seedS.log and each run's train.log)
  --no-plots           skip gnuplot
  --jobs N             run N runs at a time (each with OMP_NUM_THREADS = CPUs / N unless set)
  --launcher slurm     run the suite as one Slurm job array (SUITE_DIR/slurm/array.sbatch: --array=0-(n-1)%K,
                       --signal=B:USR2@120, --requeue, --open-mode=append), follow it with squeue, then write
                       state.yaml and the summary; a requeued task resumes its run from its checkpoint.
                       Options: --partition P, --time T, --gpus-per-task G, --ntasks-per-run N (ranks per run,
                       through srun), --max-parallel K, --dry-run (print the script; nothing is written)

Ctrl-C (or SIGTERM) stops the current run after its batch and the suite after it; resume with --resume.
A run that diverges (exit code 4, see train.on_nonfinite) is recorded as `diverged` and the suite goes on.
Only one bench may work in a suite directory at a time (another exits with code 2).
Exit codes: 0 every run completed or diverged, 1 some run failed (or a file could not be written), 2 bad input,
130 interrupted.
The suite format: docs/bench.md.
)";

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw UserError(p.string() + ": cannot read");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string command_line(const Args& args) {
  std::string s = "bilevel bench";
  for (const auto& a : args) s += " " + a;
  return s;
}

}  // namespace

bool take_launcher_option(const Args& args, size_t& i, SuiteRunOptions& opt) {
  const std::string& a = args[i];
  auto value = [&]() -> std::string {
    if (i + 1 >= args.size()) throw UserError(a + " needs a value");
    return args[++i];
  };
  auto count = [&](int64_t min) {
    const std::string v = value();
    const auto n = parse_integer(v, min, 1LL << 40);
    if (!n) throw UserError(a + " " + v + ": expected an integer >= " + std::to_string(min));
    return int64_t(*n);
  };
  if (a == "--launcher") {
    opt.launcher = value();
    if (opt.launcher != "local" && opt.launcher != "slurm")
      throw UserError("--launcher " + opt.launcher + ": expected local or slurm");
  } else if (a == "--partition") {
    opt.slurm.partition = value();
  } else if (a == "--time") {
    opt.slurm.time = value();
  } else if (a == "--gpus-per-task") {
    opt.slurm.gpus_per_task = count(0);
  } else if (a == "--ntasks-per-run") {
    opt.slurm.ntasks_per_run = count(1);
  } else if (a == "--max-parallel") {
    opt.slurm.max_parallel = count(1);
  } else if (a == "--dry-run") {
    opt.slurm.dry_run = true;
  } else {
    return false;
  }
  return true;
}

int bench(const Args& args) {
  SuiteRunOptions opt;
  std::string resume_dir, report_dir;
  Args rest;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") return std::fputs(kHelp, stdout), 0;
    if (a == "--verbose") opt.verbose = true;
    else if (a == "--no-plots") opt.plots = false;
    else if (a == "--jobs") {
      if (i + 1 >= args.size()) throw UserError("bilevel bench: --jobs needs a number");
      opt.jobs = parse_jobs(args[++i]);
    } else if (take_launcher_option(args, i, opt)) {
      continue;
    } else if (a == "--resume" || a == "--report") {
      if (i + 1 >= args.size()) throw UserError("bilevel bench: " + a + " needs a SUITE_DIR");
      (a == "--resume" ? resume_dir : report_dir) = args[++i];
    } else if (a.rfind("--", 0) == 0) {
      throw UserError("bilevel bench: unknown option '" + a + "' (see `bilevel bench --help`)");
    } else {
      rest.push_back(a);
    }
  }
  init_console_logging();

  if ((opt.slurm.dry_run || opt.slurm.ntasks_per_run > 1 || !opt.slurm.partition.empty()) && opt.launcher != "slurm")
    throw UserError("bilevel bench: --dry-run, --partition, --time, --gpus-per-task, --ntasks-per-run and "
                    "--max-parallel go with --launcher slurm");
  if (resume_dir.empty() && report_dir.empty()) {
    if (rest.empty()) throw UserError("bilevel bench: expected a suite file (see `bilevel bench --help`)");
    if (rest[0].find('=') != std::string::npos)
      throw UserError("bilevel bench: expected a suite file first, got '" + rest[0] + "'");
    NewSuite n;
    n.file = rest[0];
    n.text = read_text(n.file);
    n.base_dir = fs::absolute(fs::path(n.file)).parent_path();
    n.overrides = Args(rest.begin() + 1, rest.end());
    n.folder = "bench";
    n.command_line = command_line(args);
    return start_suite(n, opt);
  }
  if (!resume_dir.empty() && !report_dir.empty()) throw UserError("bilevel bench: --resume or --report, not both");
  if (!rest.empty())
    throw UserError("bilevel bench: '" + rest[0] +
                    "': a resumed suite keeps the overrides it started with (see its state.yaml)");
  const fs::path dir = fs::absolute(resume_dir.empty() ? report_dir : resume_dir).lexically_normal();
  // One bench per suite directory at a time (run/dir_lock.h); the children do not inherit the lock.
  std::optional<DirLock> lock;
  if (!resume_dir.empty()) {
    if (!fs::is_directory(dir)) throw UserError(dir.string() + ": not a directory");
    lock.emplace(DirLock::acquire(dir));
  }
  SuiteState state = load_state(dir);
  Suite suite = parse_suite(read_text(dir / "suite.yaml"), state.suite_file, state.base_dir);
  if (!report_dir.empty()) {
    validate_suite(suite, state.cli_overrides);
    const bool expected = report_suite(dir, suite, state, opt.plots);
    std::cout << dir.string() << std::endl;
    spdlog::info("wrote {}", (dir / "summary.md").string());
    return expected ? 0 : 1;
  }
  for (const auto& w : validate_suite(suite, state.cli_overrides)) spdlog::warn("{}", w);
  std::cout << dir.string() << std::endl;
  attach_log_file(dir / "bench.log");
  spdlog::info("suite {}: resuming {} runs in {}", suite.name, state.runs.size(), dir.string());
  if (opt.launcher == "slurm") return run_suite_on_slurm(dir, suite, state, opt);
  return run_suite(dir, suite, state, opt);
}

int parse_jobs(const std::string& value) {
  const auto n = parse_integer(value, 1, kMaxJobs);
  if (!n)
    throw UserError("--jobs " + value + ": expected a number of parallel runs in [1, " + std::to_string(kMaxJobs) + "]");
  return int(*n);
}


}  // namespace bilevel::cli
