// The `bilevel` subcommands. Each takes the arguments after its name and returns the process exit code.
#pragma once

#include <string>
#include <vector>

namespace bilevel::cli {

using Args = std::vector<std::string>;

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
