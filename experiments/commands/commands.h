// The `bilevel` subcommands. Each takes the arguments after its name and returns the process exit code.
#pragma once

#include <string>
#include <vector>

namespace bilevel::cli {

using Args = std::vector<std::string>;

// Whether the arguments ask for a command's help (--help or -h anywhere).
inline bool wants_help(const Args& args) {
  for (const auto& a : args)
    if (a == "--help" || a == "-h") return true;
  return false;
}

int train(const Args& args);
int resume(const Args& args);
int eval(const Args& args);
int env(const Args& args);
int bench(const Args& args);
int export_model(const Args& args);
int summary(const Args& args);
// `bilevel eval --model FILE [--batch-size N] [--threads N]`: integer inference of an exported model.
int eval_model(const std::string& path, const Args& rest);

}  // namespace bilevel::cli
