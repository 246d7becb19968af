// The `bilevel` command: the library's command line with the built-in components.
#include "bilevel/cli.h"

int main(int argc, char** argv) { return bilevel::run_cli(argc, argv); }
