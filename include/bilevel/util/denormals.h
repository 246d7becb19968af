// Flush denormal floats to zero (x86 MXCSR FTZ and DAZ) on this thread while the guard lives. For optimizer loops:
// Adam's first moment of a weight whose gradient stays zero (a saturated latent under the straight-through mask)
// decays by β1 each step into the denormal range after ~800 steps, where every multiply costs ~100 cycles; flushed,
// it is 0, which changes the step by less than 1e-38 / ε. A no-op on other architectures.
#pragma once

#if defined(__SSE2__) || defined(__x86_64__)
#include <xmmintrin.h>
#define BILEVEL_HAVE_MXCSR 1
#endif

namespace bilevel {

class FlushDenormals {
 public:
#if defined(BILEVEL_HAVE_MXCSR)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | 0x8040u); }  // FTZ (bit 15) | DAZ (bit 6)
  ~FlushDenormals() { _mm_setcsr(saved_); }
#else
  FlushDenormals() = default;
#endif
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
#if defined(BILEVEL_HAVE_MXCSR)
  unsigned saved_;
#endif
};

}  // namespace bilevel
