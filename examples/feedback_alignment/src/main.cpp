// bilevel-fa: the bilevel command line with feedback alignment (fa) and direct feedback alignment (dfa) added.
#include <bilevel/cli.h>

#include "feedback_alignment.h"

int main(int argc, char** argv) {
  fa::register_rules();
  return bilevel::run_cli(argc, argv);
}
