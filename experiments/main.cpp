// The `bilevel` command: a thin client of the bilevel library.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "bilevel/util/error.h"
#include "bilevel/util/threads.h"
#include "commands/commands.h"

namespace {

constexpr const char* kUsage = R"(usage: bilevel <command> [options]

Train and evaluate neural networks as bilevel problems (backprop, equilibrium propagation and friends).

commands:
  train CONFIG.yaml [key.path=value ...]   start a run; prints the run directory on stdout
  resume RUN_DIR                            continue an interrupted run from its latest checkpoint
  eval RUN_DIR [--checkpoint FILE]          loss and accuracy on the test split
  env [--check FILE]                        versions this binary was built with and runs with
  bench SUITE.yaml [key.path=value ...]     run a benchmark suite (every algorithm against backprop);
                                            `bench --resume SUITE_DIR` continues one

`bilevel <command> --help` describes each command. Exit codes: 0 success, 1 internal error,
2 bad input (config, data, command line), 3 environment mismatch (env --check), 130 interrupted.
)";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  // Before any work: libgomp has read OMP_WAIT_POLICY already, so a command that should not spin starts again
  // once (costs one more load of LibTorch's libraries, ~0.35 s; not for the usage text above).
  bilevel::reexec_with_passive_wait_policy(argv);
  const std::string command = argv[1];
  bilevel::cli::Args args(argv + 2, argv + argc);
  try {
    if (command == "train") return bilevel::cli::train(args);
    if (command == "resume") return bilevel::cli::resume(args);
    if (command == "eval") return bilevel::cli::eval(args);
    if (command == "env") return bilevel::cli::env(args);
    if (command == "bench") return bilevel::cli::bench(args);
    std::fprintf(stderr, "bilevel: unknown command '%s'\n\n%s", command.c_str(), kUsage);
    return 2;
  } catch (const bilevel::UserError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "internal error: %s\n", e.what());
    return 1;
  }
}
