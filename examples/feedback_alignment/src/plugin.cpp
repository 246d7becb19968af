// The same two rules as a plugin for the stock command, without a program of one's own:
//   bilevel --plugin build/libfa_plugin.so train configs/fmnist_dfa.yaml
// Built against bilevel::plugin (headers only): the registries it adds to are the `bilevel` command's.
#include "feedback_alignment.h"

namespace {
const bool registered = (fa::register_rules(), true);
}  // namespace
