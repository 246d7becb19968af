// The AVX2 + FMA build of the dense relaxation kernel (this file alone is compiled with -mavx2 -mfma; it is only
// called after a run-time check of the CPU, see dense_relax.cpp).
#include "bilevel/kernels/cpu/dense_relax.h"
#include "dense_relax_includes.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
namespace bilevel::cpu::avx2 {
#include "dense_relax_impl.h"
}  // namespace bilevel::cpu::avx2
#endif
