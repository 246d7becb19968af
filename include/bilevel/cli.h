// The `bilevel` command line as a library function (target bilevel::cli), so that a program which registers its own
// components (bilevel/registry.h) offers them through every command — train, resume, eval, export, summary, bench,
// env — with validation, `--help` and run directories unchanged:
//
//   int main(int argc, char** argv) {
//     my_project::register_components();   // rules().add(...), inner_solvers().add(...), ...
//     return bilevel::run_cli(argc, argv);
//   }
//
// Exit codes as the README's table. Never throws.
#pragma once

namespace bilevel {

int run_cli(int argc, char** argv);

}  // namespace bilevel
