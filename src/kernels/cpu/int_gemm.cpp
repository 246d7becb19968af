#include "bilevel/kernels/cpu/int_gemm.h"

#include <ATen/Parallel.h>

namespace bilevel::cpu {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define BILEVEL_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define BILEVEL_CLONES
#endif

namespace {

BILEVEL_CLONES
void int16_rows(const int16_t* a, const int16_t* w, int32_t* out, int64_t n0, int64_t n1, int64_t O, int64_t K) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    const int16_t *a0 = a + n * K, *a1 = a0 + K, *a2 = a1 + K, *a3 = a2 + K;
    for (int64_t o = 0; o < O; ++o) {
      const int16_t* wo = w + o * K;
      int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (int64_t k = 0; k < K; ++k) {
        const int32_t x = wo[k];
        s0 += x * a0[k], s1 += x * a1[k], s2 += x * a2[k], s3 += x * a3[k];
      }
      out[n * O + o] = s0, out[(n + 1) * O + o] = s1, out[(n + 2) * O + o] = s2, out[(n + 3) * O + o] = s3;
    }
  }
  for (; n < n1; ++n)
    for (int64_t o = 0; o < O; ++o) {
      const int16_t *an = a + n * K, *wo = w + o * K;
      int32_t s = 0;
      for (int64_t k = 0; k < K; ++k) s += int32_t(wo[k]) * an[k];
      out[n * O + o] = s;
    }
}

BILEVEL_CLONES
void xnor_rows(const uint64_t* a, const uint64_t* w, int32_t* out, int64_t n0, int64_t n1, int64_t O, int64_t W,
               int64_t K) {
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    const uint64_t *a0 = a + n * W, *a1 = a0 + W, *a2 = a1 + W, *a3 = a2 + W;
    for (int64_t o = 0; o < O; ++o) {
      const uint64_t* wo = w + o * W;
      int64_t d0 = 0, d1 = 0, d2 = 0, d3 = 0;
      for (int64_t k = 0; k < W; ++k) {
        const uint64_t x = wo[k];
        d0 += __builtin_popcountll(x ^ a0[k]), d1 += __builtin_popcountll(x ^ a1[k]);
        d2 += __builtin_popcountll(x ^ a2[k]), d3 += __builtin_popcountll(x ^ a3[k]);
      }
      out[n * O + o] = int32_t(K - 2 * d0), out[(n + 1) * O + o] = int32_t(K - 2 * d1);
      out[(n + 2) * O + o] = int32_t(K - 2 * d2), out[(n + 3) * O + o] = int32_t(K - 2 * d3);
    }
  }
  for (; n < n1; ++n)
    for (int64_t o = 0; o < O; ++o) {
      int64_t d = 0;
      for (int64_t k = 0; k < W; ++k) d += __builtin_popcountll(w[o * W + k] ^ a[n * W + k]);
      out[n * O + o] = int32_t(K - 2 * d);
    }
}

}  // namespace

void int16_gemm(const int16_t* a, const int16_t* w, int32_t* out, int64_t N, int64_t O, int64_t K) {
  at::parallel_for(0, (N + 3) / 4, 1, [&](int64_t b, int64_t e) { int16_rows(a, w, out, 4 * b, std::min(N, 4 * e), O, K); });
}

void xnor_popcount_gemm(const uint64_t* a, const uint64_t* w, int32_t* out, int64_t N, int64_t O, int64_t W, int64_t K) {
  at::parallel_for(0, (N + 3) / 4, 1,
                   [&](int64_t b, int64_t e) { xnor_rows(a, w, out, 4 * b, std::min(N, 4 * e), O, W, K); });
}

}  // namespace bilevel::cpu
