// --launcher slurm for `bilevel bench` and multirun sweeps: the suite's runs as one Slurm job array. The sbatch
// script (SUITE_DIR/slurm/array.sbatch) has one array task per run, at most --max-parallel at a time, asks for
// SIGUSR2 two minutes before the time limit (--signal=B:USR2@120: to the batch shell, which passes it on), and is
// requeueable with its log appended (--requeue, --open-mode=append). Each task resumes its run when the run has a
// directory already (a requeued task continues from its positional checkpoint), else starts it; a run with
// several ranks goes through `srun`. `bilevel` itself requeues the task on SIGUSR2 (run/preemption.h). After
// submitting, the launcher follows the job (squeue) and writes the suite's state and summary when no task is left.
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>

#include "bilevel/util/atomic_file.h"
#include "bilevel/util/error.h"
#include "commands.h"

namespace bilevel::cli {
namespace {

namespace fs = std::filesystem;
using namespace bilevel::bench;

// 'text' quoted for bash.
std::string quoted(const std::string& text) {
  std::string q = "'";
  for (char c : text) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `command` through the shell; returns its stdout, or throws naming the command.
std::string shell(const std::string& command) {
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) throw std::runtime_error("cannot run " + command);
  std::string out;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  if (status != 0) throw UserError(command + ": failed (exit " + std::to_string(WEXITSTATUS(status)) + ")");
  return out;
}

}  // namespace

std::string slurm_array_script(const fs::path& dir, const Suite& suite, const SuiteState& state,
                               const SlurmOptions& slurm) {
  const fs::path runs_root = dir / "runs";
  const size_t n = state.runs.size();
  const int64_t parallel = slurm.max_parallel > 0 ? slurm.max_parallel : int64_t(n);
  std::ostringstream s;
  s << "#!/bin/bash\n";
  s << "# Written by `bilevel` for the suite " << dir.string() << ": one array task per run.\n";
  s << "#SBATCH --job-name=bilevel-" << suite.name << "\n";
  s << "#SBATCH --array=0-" << (n - 1) << "%" << parallel << "\n";
  s << "#SBATCH --signal=B:USR2@120\n";
  s << "#SBATCH --requeue\n";
  s << "#SBATCH --open-mode=append\n";
  s << "#SBATCH --output=" << (dir / "slurm" / "task_%a.log").string() << "\n";
  s << "#SBATCH --ntasks=" << slurm.ntasks_per_run << "\n";
  if (!slurm.partition.empty()) s << "#SBATCH --partition=" << slurm.partition << "\n";
  if (!slurm.time.empty()) s << "#SBATCH --time=" << slurm.time << "\n";
  if (slurm.gpus_per_task > 0) s << "#SBATCH --gpus-per-task=" << slurm.gpus_per_task << "\n";
  s << "set -u\n";
  s << "BILEVEL=" << quoted(fs::read_symlink("/proc/self/exe").string()) << "\n";
  s << "case \"$SLURM_ARRAY_TASK_ID\" in\n";
  for (size_t k = 0; k < n; ++k) {
    const RunRecord& rec = state.runs[k];
    const SuiteEntry* entry = nullptr;
    for (const auto& e : suite.entries)
      if (e.name == rec.entry) entry = &e;
    if (!entry) throw UserError("state.yaml names entry '" + rec.entry + "', which the suite does not have");
    s << "  " << k << ") parent=" << quoted(run_parent(runs_root, *entry, rec.seed).string()) << "\n";
    s << "     train=(train " << quoted(entry->config_path.string());
    for (const auto& o : run_overrides(suite, *entry, rec.seed, state.cli_overrides, runs_root)) s << " " << quoted(o);
    s << ") ;;\n";
  }
  s << "  *) echo \"no run for array task $SLURM_ARRAY_TASK_ID\" >&2; exit 2 ;;\n";
  s << "esac\n";
  s << "# A requeued task continues its run (from its newest checkpoint); a new one starts it.\n";
  s << "run=$(ls -1d \"$parent\"/*/ 2>/dev/null | tail -n 1)\n";
  s << "if [ -n \"$run\" ] && [ -f \"$run/config.yaml\" ]; then cmd=(resume \"$run\"); else cmd=(\"${train[@]}\"); fi\n";
  s << "launch=(\"$BILEVEL\")\n";
  if (slurm.ntasks_per_run > 1) s << "launch=(srun --ntasks=" << slurm.ntasks_per_run << " \"$BILEVEL\")\n";
  s << "mkdir -p \"$(dirname \"$parent\")\"\n";
  s << "\"${launch[@]}\" \"${cmd[@]}\" &\n";
  s << "child=$!\n";
  s << "# --signal=B:USR2 reaches this shell only: pass it on (bilevel checkpoints, requeues the task, exits 75).\n";
  s << "trap 'kill -USR2 \"$child\" 2>/dev/null' USR2\n";
  s << "while :; do wait \"$child\"; rc=$?; kill -0 \"$child\" 2>/dev/null || break; done\n";
  s << "exit $rc\n";
  return s.str();
}

int run_suite_on_slurm(const fs::path& dir, const Suite& suite, SuiteState& state, const SuiteRunOptions& opt) {
  const std::string script = slurm_array_script(dir, suite, state, opt.slurm);
  if (opt.slurm.dry_run) {
    std::fputs(script.c_str(), stdout);
    return 0;
  }
  fs::create_directories(dir / "slurm");
  const fs::path file = dir / "slurm" / "array.sbatch";
  write_file_atomic(file, script);
  const std::string submitted = shell("sbatch --parsable " + quoted(file.string()));
  const std::string job = submitted.substr(0, submitted.find_first_of(";\n"));
  write_file_atomic(dir / "slurm" / "job_id", job + "\n");
  spdlog::info("submitted {} runs as Slurm job array {} ({}); following it with squeue", state.runs.size(), job,
               file.string());
  // Follow the array until no task of it is pending or running.
  for (;;) {
    const std::string left = shell("squeue -h -j " + job + " -o %i 2>/dev/null || true");
    if (left.find_first_not_of(" \n") == std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::seconds(opt.slurm.poll_seconds));
  }
  spdlog::info("job array {} is done; collecting its runs", job);
  return collect_suite(dir, suite, state, opt);
}

}  // namespace bilevel::cli
