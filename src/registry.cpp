#include "bilevel/registry.h"

namespace bilevel {
namespace {
uint64_t generation = 0;
}

uint64_t registry_generation() { return generation; }
void bump_registry_generation() { ++generation; }

}  // namespace bilevel
