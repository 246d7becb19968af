// bilevel::run_cli: the `bilevel` command's whole command line (experiments/bilevel_main.cpp calls it; so can a user's
// program that registers its own components first; bilevel/cli.h).
#include <c10/util/Exception.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>

#include "bilevel/cli.h"
#include "bilevel/util/error.h"
#include "bilevel/util/io_error.h"
#include "bilevel/util/threads.h"
#include "commands/commands.h"

namespace {

constexpr const char* kUsage = R"(usage: bilevel <command> [options]

Train and evaluate neural networks as bilevel problems (backprop, equilibrium propagation and friends).

commands:
  train CONFIG.yaml [key.path=value ...]   start a run; prints the run directory on stdout
                                            (--nproc N: N data-parallel ranks on this machine)
  resume RUN_DIR [--checkpoint FILE]        continue an interrupted run from its latest usable checkpoint
  eval RUN_DIR [--checkpoint FILE]          loss and accuracy on the test split
  eval --model FILE                         integer inference of an exported quantized model
  export RUN_DIR [--checkpoint best|final|FILE] [-o FILE]
                                            write the quantized model as packed integer weights
  summary CONFIG.yaml|RUN_DIR               per layer: params, bits, MACs, memory float vs packed
  env [--check FILE]                        versions this binary was built with and runs with
  bench SUITE.yaml [key.path=value ...]     run a benchmark suite (every algorithm against backprop);
                                            `bench --resume SUITE_DIR` continues one

`bilevel <command> --help` describes each command. Exit codes: 0 success, 1 a file could not be
written (disk full, I/O error, permissions) or an internal error, 2 bad input (config, data, command line, a
directory another process holds), 3 environment mismatch (env --check), 4 training diverged (non-finite loss or
gradient), 75 preempted (SIGTERM or train.preempt_signal; resume continues mid-epoch), 130 interrupted.
)";

// The first line of a message (LibTorch appends a backtrace).
std::string first_line(const char* what) {
  std::string s = what ? what : "";
  return s.substr(0, s.find('\n'));
}

// An exception that escapes where it cannot be caught (a destructor, a noexcept function, another thread) is
// still one line and exit code 1, never an abort.
[[noreturn]] void on_terminate() {
  std::string what = "unknown exception";
  if (auto e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const c10::Error& err) {
      what = first_line(err.what_without_backtrace());
    } catch (const std::exception& err) {
      what = first_line(err.what());
    } catch (...) {
    }
  } else {
    what = "terminate called without an exception";
  }
  std::fprintf(stderr, "internal error: %s\n", what.c_str());
  std::fflush(stderr);
  ::_exit(1);
}

}  // namespace

int bilevel::run_cli(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  // Before any work: libgomp has read OMP_WAIT_POLICY already, so a command that should not spin starts again
  // once (costs one more load of LibTorch's libraries, ~0.35 s; not for the usage text above).
  bilevel::reexec_with_passive_wait_policy(argv);
  std::set_terminate(on_terminate);
  const std::string command = argv[1];
  bilevel::cli::Args args(argv + 2, argv + argc);
  try {
    if (command == "train") return bilevel::cli::train(args);
    if (command == "resume") return bilevel::cli::resume(args);
    if (command == "eval") return bilevel::cli::eval(args);
    if (command == "env") return bilevel::cli::env(args);
    if (command == "bench") return bilevel::cli::bench(args);
    if (command == "export") return bilevel::cli::export_model(args);
    if (command == "summary") return bilevel::cli::summary(args);
    std::fprintf(stderr, "bilevel: unknown command '%s'\n\n%s", command.c_str(), kUsage);
    return 2;
  } catch (const bilevel::UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const bilevel::IoError& e) {
    // A file could not be written (disk full, I/O error, permissions): one line naming it and the system error.
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    std::fprintf(stderr, "error: %s\n", first_line(e.what()).c_str());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "internal error: %s\n", first_line(e.what_without_backtrace()).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "internal error: %s\n", first_line(e.what()).c_str());
    return 1;
  } catch (...) {
    std::fprintf(stderr, "internal error: unknown exception\n");
    return 1;
  }
}
