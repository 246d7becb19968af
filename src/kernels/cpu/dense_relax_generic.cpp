// The portable build of the dense relaxation kernel (one lane, the compiler's baseline instruction set).
#include "bilevel/kernels/cpu/dense_relax.h"
#include "dense_relax_includes.h"

namespace bilevel::cpu::generic {
#include "dense_relax_impl.h"
}  // namespace bilevel::cpu::generic
