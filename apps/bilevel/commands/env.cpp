// `bilevel env [--check FILE]`: what this binary was built with and runs on, optionally checked against pins.
#include <cstdio>
#include <iostream>
#include <string>

#include "bilevel/run/environment.h"
#include "bilevel/run/environment_file.h"
#include "bilevel/util/threads.h"
#include "commands/commands.h"

namespace bilevel::cli {

namespace {

constexpr const char* kEnvUsage = R"(usage: bilevel env [--check FILE]

Prints the versions this binary was built with and runs with (LibTorch, BLAS, CUDA, compiler, libraries,
OS, CPU) as YAML-compatible "name: value" lines, followed by warnings such as a slow reference BLAS.

  --check FILE   compare the running environment with the pins of a conda environment file
                 (e.g. environment.yml). A pin matches when it is a prefix of the found version
                 ("1.13" matches 1.13.1). Packages this binary cannot measure are "unchecked";
                 CUDA packages on a CPU-only build are "skipped".

exit codes: 0 ok (all checked pins match), 2 bad command line or unreadable/malformed FILE,
            3 at least one pin does not match.
)";

}  // namespace

int env(const Args& args) {
  std::string check_file;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kEnvUsage, stdout);
      return 0;
    }
    if (a == "--check") {
      if (i + 1 >= args.size()) {
        std::fprintf(stderr, "bilevel env: --check needs a FILE\n\n%s", kEnvUsage);
        return 2;
      }
      check_file = args[++i];
    } else if (a.rfind("--check=", 0) == 0) {
      check_file = a.substr(8);
    } else {
      std::fprintf(stderr, "bilevel env: unknown option '%s'\n\n%s", a.c_str(), kEnvUsage);
      return 2;
    }
  }
  if (args.size() > 0 && check_file.empty()) {
    std::fprintf(stderr, "bilevel env: --check needs a FILE\n");
    return 2;
  }

  // Report the threads a run with train.threads=0 would use (both pools set as such a run sets them).
  apply_cpu_threads(0);
  if (check_file.empty()) {
    std::cout << format_report(collect_environment()) << std::flush;
    return 0;
  }

  // Read the pins first: a bad file is reported (UserError -> exit 2) before the slower measurement.
  const auto pins = read_environment_file(check_file);
  const EnvReport report = collect_environment();
  const auto checks = check_pins(pins, report);
  std::cout << "environment file: " << check_file << "\n\n" << format_checks(checks) << std::flush;
  for (const auto& w : report.warnings) std::cerr << "WARNING: " << w << "\n";
  for (const auto& c : checks)
    if (c.status == PinStatus::kMismatch) return 3;
  return 0;
}

}  // namespace bilevel::cli
