// bilevel train / resume / eval.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <set>
#include <string>

#include "bilevel/registry.h"
#include "bilevel/config/schema.h"
#include "bilevel/dist/data_parallel.h"
#include "bilevel/dist/local_launcher.h"
#include "bilevel/rules/registry.h"
#include "bilevel/run/preemption.h"
#include "bilevel/runner.h"
#include "bilevel/util/error.h"
#include "bilevel/util/log.h"
#include "commands.h"

namespace bilevel::cli {
namespace {

std::string command_line(const std::string& command, const Args& args) {
  std::string s = "bilevel " + command;
  for (const auto& a : args) s += " " + a;
  return s;
}

int exit_code(const RunOutcome& out) {
  if (out.status == "completed") return 0;
  if (out.status == "interrupted") return 130;
  if (out.status == "preempted") return kExitPreempted;
  if (out.status == "diverged") return 4;
  return 1;
}

void print_train_help() {
  std::printf(R"(usage: bilevel train CONFIG.yaml [key.path=value ...] [--nproc N]
       bilevel train CONFIG.yaml -m key=a,b key2=range(a,b[,step]) seed=0,1,2 [--jobs N] [--no-plots]
                     [--launcher slurm [--partition P] [--time T] [--gpus-per-task G] [--ntasks-per-run N]
                      [--max-parallel K] [--dry-run]]

Validates the config (file + overrides), loads the data, creates a run directory
OUTPUT_ROOT/EXPERIMENT_NAME/YYYY-MM-DD_HH-MM-SS/ and trains. The run directory is printed on stdout;
progress and logs go to stderr and to RUN_DIR/train.log. Ctrl-C stops after the current batch
(resume later with `bilevel resume RUN_DIR`). SIGTERM or train.preempt_signal (SIGUSR2) preempts: the
current batch finishes, a checkpoint records the position inside the epoch, and the run exits with code 75
(under Slurm, the preemption signal also requeues the job); `bilevel resume` continues with the next batch.

Data parallelism: --nproc N starts N ranks on this machine (loopback); under torchrun (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT) or srun (SLURM_PROCID, SLURM_NTASKS) this process is one rank. Each rank trains on
its shard of every batch (train.batch_size / N examples) and the gradients are averaged (dist.backend: gloo).
Rank 0 owns the run directory and prints it.

Multirun (-m): every override whose value is a list (a,b,c; brackets keep [1,2] one value), range(a,b[,step])
or choice(a,b) is swept; the grid's points (x seeds) run as a suite under OUTPUT_ROOT/multirun/NAME/TIMESTAMP/
(printed on stdout), one run directory each, then results.csv and summary.md (mean ± std over seeds per point)
as `bilevel bench` writes them. --jobs N runs N at a time; `bilevel bench --resume SWEEP_DIR` continues an
interrupted sweep, skipping finished points.

Overrides use Hydra's grammar: key.path=value (typed: 3, 0.1, true, adam, [256,128]);
+key=value is accepted too; ~key resets a key to its default.
  e.g. bilevel train configs/quickstart.yaml train.epochs=3 optimizer.lr=1e-3 model.hidden=[256,128]

Config keys (default in brackets):
)");
  const Schema& schema = Schema::global();
  std::string section;
  for (const auto& k : schema.keys()) {
    const auto dot = k.path.find('.');
    const std::string sec = dot == std::string::npos ? "" : k.path.substr(0, dot);
    if (sec != section) std::printf("\n"), section = sec;
    std::printf("  %-28s %s [%s]\n      %s\n", k.path.c_str(), describe_expectation(k).c_str(),
                k.default_yaml.c_str(), k.help.c_str());
  }
  // Config groups: each component with its own keys (valid only when the group's name selects it).
  for (const auto& g : schema.groups()) {
    std::printf("\nConfig group %s (%s: {name: NAME, KEY: value}): the %ss and their keys\n", g.section.c_str(),
                g.section.c_str(), g.kind.c_str());
    for (const auto& c : g.components) {
      std::printf("  %-16s %s\n", c.name.c_str(), c.help.c_str());
      for (const auto& k : c.keys)
        std::printf("      %s.%-20s %s [%s]\n          %s\n", g.section.c_str(), k.path.c_str(),
                    describe_expectation(k).c_str(), k.default_yaml.c_str(), k.help.c_str());
    }
  }
  // The other registries: components a key names (their own keys, if any, are in the list above).
  std::printf("\nOther components, by the key that selects them (registered ones included):\n");
  auto list = [](const char* key, const auto& registry) {
    std::printf("  %s\n", key);
    for (const auto& c : registry.infos()) std::printf("      %-16s %s\n", c.name.c_str(), c.help.c_str());
  };
  list("data.name", data_sets());
  list("model.activation", activations());
  list("train.loss", objectives());
  list("quantization.weights.quantizer", quantizers());
  list("quantization.weights.solver", weight_solvers());
}

}  // namespace

int train(const Args& all_args) {
  if (wants_help(all_args)) return print_train_help(), 0;
  Args args = all_args;
  const int nproc = take_nproc(args);
  if (args.empty() || args[0].find('=') != std::string::npos)
    throw UserError("bilevel train: expected a config file first (see `bilevel train --help`)");
  // -m / --multirun: a sweep over the overrides (multirun.cpp); --jobs, --no-plots and --verbose are its options.
  if (std::find(args.begin(), args.end(), "-m") != args.end() ||
      std::find(args.begin(), args.end(), "--multirun") != args.end()) {
    if (nproc > 0) throw UserError("bilevel train: --nproc and -m together are not supported yet");
    Args overrides, options;
    for (size_t i = 1; i < args.size(); ++i) {
      if (args[i] == "-m" || args[i] == "--multirun") continue;
      static const std::set<std::string> with_value{"--jobs",          "--launcher",       "--partition", "--time",
                                                    "--gpus-per-task", "--ntasks-per-run", "--max-parallel"};
      if (with_value.count(args[i]) && i + 1 < args.size()) options.push_back(args[i]), options.push_back(args[++i]);
      else if (args[i].rfind("--", 0) == 0) options.push_back(args[i]);
      else overrides.push_back(args[i]);
    }
    return multirun(args[0], overrides, options, command_line("train", all_args));
  }
  init_console_logging();
  Args overrides(args.begin() + 1, args.end());
  for (const auto& o : overrides)
    if (o.rfind("--", 0) == 0) throw UserError("bilevel train: unknown option '" + o + "'");
  ExperimentConfig cfg = load_config(args[0], overrides);
  if (nproc > 1) {
    // Every check that does not need the data, before any rank starts.
    validate_world(cfg, nproc);
    Args command{"train"};
    command.insert(command.end(), args.begin(), args.end());
    return launch_local_ranks(nproc, command);
  }
  RunOutcome out = start_run(cfg, command_line("train", args), [](const RunDir& d) {
    std::cout << d.root.string() << std::endl;
  });
  return exit_code(out);
}

int resume(const Args& all_args) {
  if (wants_help(all_args)) {
    std::printf(R"(usage: bilevel resume RUN_DIR [--checkpoint FILE] [--nproc N]

Continues an interrupted, killed or failed run to the configured number of epochs, with the run's own
config.yaml, from its newest checkpoint that loads and matches the config (a truncated or foreign one is
skipped with a warning and renamed FILE.skipped). --checkpoint FILE (a path, or a name in RUN_DIR/checkpoints)
resumes from that one instead; later checkpoints are renamed FILE.superseded. metrics.csv rows after the
checkpoint are dropped and recomputed: on CPU the finished metrics.csv equals that of an uninterrupted run (all
columns but epoch_seconds). Only one process may work in a run directory: another one exits with code 2.
A positional checkpoint (written on preemption or every checkpoint.every_batches batches) continues with the
next batch of the same shuffle. --nproc N resumes as N local data-parallel ranks (any world size that divides
train.batch_size: the global batches are the same).
)");
    return 0;
  }
  Args args = all_args;
  const int nproc = take_nproc(args);
  const RunArgs run = parse_run_args(args, "resume");
  const std::string& dir = run.dir;
  const std::string& checkpoint = run.checkpoint;
  init_console_logging();
  if (nproc > 1) {
    validate_world(run_config(RunDir::open(dir)), nproc);
    Args command{"resume"};
    command.insert(command.end(), args.begin(), args.end());
    return launch_local_ranks(nproc, command);
  }
  RunOutcome out = resume_run(dir, command_line("resume", args), checkpoint);
  if (!out.dir.root.empty()) std::cout << out.dir.root.string() << std::endl;
  return exit_code(out);
}

int eval(const Args& args) {
  if (wants_help(args)) {
    std::printf(R"(usage: bilevel eval RUN_DIR [--checkpoint best|final|FILE]
       bilevel eval --model FILE [--batch-size N] [--threads N]

Loss and accuracy on the test split, with the run's final.pt (or its latest checkpoint when the run has
not finished), or with FILE (a checkpoint, best.pt or final.pt). Prints YAML on stdout, with the
evaluation's examples per second.
With --model, evaluates a model written by `bilevel export` through the integer inference path
(XNOR-popcount for binary weights and activations, integer products otherwise), one thread unless
--threads, and reports accuracy and examples per second.
)");
    return 0;
  }
  if (!args.empty() && args[0] == "--model") {
    if (args.size() < 2) throw UserError("bilevel eval: --model needs a FILE");
    return eval_model(args[1], Args(args.begin() + 2, args.end()));
  }
  const RunArgs run = parse_run_args(args, "eval");
  init_console_logging();
  EvalResult r = eval_run(run.dir, run.checkpoint);
  std::printf("test_loss: %.6f\ntest_accuracy: %.6f\nexamples: %lld\nseconds: %.4f\nexamples_per_second: %.1f\n",
              r.loss, r.accuracy, static_cast<long long>(r.count), r.seconds,
              r.seconds > 0 ? double(r.count) / r.seconds : 0.0);
  return 0;
}

}  // namespace bilevel::cli
