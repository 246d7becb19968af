// bilevel::run_cli: the `bilevel` command's whole command line (apps/bilevel/main.cpp calls it; so can a user's
// program that registers its own components first; bilevel/cli.h).
#include <c10/util/Exception.h>
#include <dlfcn.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "bilevel/cli.h"
#include "bilevel/util/error.h"
#include "bilevel/util/first_line.h"
#include "bilevel/util/io_error.h"
#include "commands/commands.h"

namespace {

constexpr const char* kUsage = R"(usage: bilevel [--plugin LIB.so ...] <command> [options]

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

--plugin LIB.so loads a shared library whose components (rules, solvers, quantizers, data sets, ...) register
themselves (docs/extending.md); repeatable; also read from BILEVEL_PLUGINS (paths separated by ':'), which
child processes (--nproc ranks, sweeps, Slurm jobs) inherit. Resume a run with the plugins it was trained with.

`bilevel <command> --help` describes each command. Exit codes: 0 success, 1 a file could not be
written (disk full, I/O error, permissions) or an internal error, 2 bad input (config, data, command line, a
directory another process holds), 3 environment mismatch (env --check), 4 training diverged (non-finite loss or
gradient), 75 preempted (SIGTERM or train.preempt_signal; resume continues mid-epoch), 130 interrupted.
)";

using bilevel::first_line;

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

// The plugins named by BILEVEL_PLUGINS and by leading `--plugin FILE` / `--plugin=FILE` options (consumed from
// argv), each once, as absolute paths; the whole list goes back into BILEVEL_PLUGINS for the processes this one
// starts (the passive-wait re-exec included). Returns false after printing the error for a bad option.
bool take_plugins(int& argc, char** argv, std::vector<std::string>& paths) {
  auto add = [&](const std::string& p) {
    if (p.empty()) return;
    std::error_code ec;
    const std::string abs = std::filesystem::absolute(p, ec).string();
    for (const auto& q : paths)
      if (q == abs) return;
    paths.push_back(abs);
  };
  if (const char* env = std::getenv("BILEVEL_PLUGINS")) {
    std::string list = env;
    for (size_t a = 0; a <= list.size();) {
      const size_t b = std::min(list.find(':', a), list.size());
      add(list.substr(a, b - a));
      a = b + 1;
    }
  }
  int i = 1;
  while (i < argc) {
    const std::string arg = argv[i];
    if (arg == "--plugin") {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "error: --plugin needs a shared library's path\n");
        return false;
      }
      add(argv[i + 1]);
      i += 2;
    } else if (arg.rfind("--plugin=", 0) == 0) {
      add(arg.substr(9));
      i += 1;
    } else {
      break;
    }
  }
  // The command follows the plugin options: argv[0], then the rest.
  if (i > 1) {
    for (int k = i; k <= argc; ++k) argv[k - i + 1] = argv[k];
    argc -= i - 1;
  }
  std::string joined;
  for (const auto& p : paths) joined += (joined.empty() ? "" : ":") + p;
  if (!paths.empty()) ::setenv("BILEVEL_PLUGINS", joined.c_str(), 1);
  return true;
}

// Loads the plugins; their static registrations run as each loads. Returns false after printing the error.
bool open_plugins(const std::vector<std::string>& paths) {
  for (const auto& p : paths) {
    try {
      if (!::dlopen(p.c_str(), RTLD_NOW | RTLD_GLOBAL)) {
        const char* why = ::dlerror();
        std::fprintf(stderr, "error: cannot load plugin %s: %s\n", p.c_str(), why ? why : "unknown error");
        return false;
      }
    } catch (const std::exception& e) {  // a registration that throws (e.g. a name taken twice)
      std::fprintf(stderr, "error: plugin %s: %s\n", p.c_str(), first_line(e.what()).c_str());
      return false;
    }
  }
  return true;
}

}  // namespace

int bilevel::run_cli(int argc, char** argv) {
  std::vector<std::string> plugins;
  if (!take_plugins(argc, argv, plugins)) return 2;
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  // Plugins before any command (or its --help) reads a registry.
  if (!open_plugins(plugins)) return 2;
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
