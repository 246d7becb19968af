// BILEVEL_CLONES: GCC and Clang on x86-64 build the function it marks three times (AVX-512, AVX2, baseline) and
// resolve the call once, at load time (ifunc). Every clone computes the same bits as long as the function's
// arithmetic has no multiply-add the compiler could contract (-ffp-contract does not apply across + and ÷). Empty
// under the address sanitizer (whose runtime does not take ifuncs), off x86-64, or with BILEVEL_NO_CLONES.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__SANITIZE_ADDRESS__) && \
    !defined(BILEVEL_NO_CLONES)
#define BILEVEL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define BILEVEL_CLONES
#endif
