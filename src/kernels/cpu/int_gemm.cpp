#include "bilevel/kernels/cpu/int_gemm.h"

#include <ATen/Parallel.h>

#include <cstdlib>

#include "bilevel/kernels/quant_element.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BILEVEL_HAVE_AVX2_INT 1
#endif

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

#if BILEVEL_HAVE_AVX2_INT
// Σ of the eight int32 lanes.
__attribute__((target("avx2"))) inline int32_t hsum(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// Σ of the sixteen int32 lanes: the two 256-bit halves through memory, added, then hsum. (Not
// _mm512_reduce_add_epi32 or any extract/cast intrinsic: their expansions in GCC 12's headers start from an
// "undefined" vector that -Wmaybe-uninitialized reports. Once a row, so the store costs nothing measurable.)
__attribute__((target("avx512f"))) inline int32_t hsum(__m512i v) {
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, v);
  return hsum(_mm256_add_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(lanes)),
                               _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes + 8))));
}

// Σ of the eight int64 lanes, the same way.
__attribute__((target("avx512f"))) inline int64_t hsum64(__m512i v) {
  alignas(64) int64_t lanes[8];
  _mm512_store_si512(lanes, v);
  int64_t sum = 0;
  for (int64_t lane : lanes) sum += lane;
  return sum;
}

// 4 rows of a × 2 rows of w per block, 16 int16 pairs per vpmaddwd (exact int32 sums of products).
__attribute__((target("avx2"))) void int16_rows_avx2(const int16_t* a, const int16_t* w, int32_t* out, int64_t n0,
                                                      int64_t n1, int64_t O, int64_t K) {
  const int64_t K16 = K / 16 * 16;
  auto tail = [&](const int16_t* x, const int16_t* y) {
    int32_t s = 0;
    for (int64_t k = K16; k < K; ++k) s += int32_t(x[k]) * y[k];
    return s;
  };
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    const int16_t* ar[4] = {a + n * K, a + (n + 1) * K, a + (n + 2) * K, a + (n + 3) * K};
    int64_t o = 0;
    for (; o + 2 <= O; o += 2) {
      const int16_t *w0 = w + o * K, *w1 = w0 + K;
      __m256i c[4][2];
      for (int i = 0; i < 4; ++i) c[i][0] = c[i][1] = _mm256_setzero_si256();
      for (int64_t k = 0; k < K16; k += 16) {
        const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + k));
        const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w1 + k));
        for (int i = 0; i < 4; ++i) {
          const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar[i] + k));
          c[i][0] = _mm256_add_epi32(c[i][0], _mm256_madd_epi16(x0, y));
          c[i][1] = _mm256_add_epi32(c[i][1], _mm256_madd_epi16(x1, y));
        }
      }
      for (int i = 0; i < 4; ++i) {
        out[(n + i) * O + o] = hsum(c[i][0]) + tail(ar[i], w0);
        out[(n + i) * O + o + 1] = hsum(c[i][1]) + tail(ar[i], w1);
      }
    }
    for (; o < O; ++o)
      for (int i = 0; i < 4; ++i) {
        __m256i c0 = _mm256_setzero_si256();
        for (int64_t k = 0; k < K16; k += 16)
          c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + o * K + k)),
                                                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar[i] + k))));
        out[(n + i) * O + o] = hsum(c0) + tail(ar[i], w + o * K);
      }
  }
  if (n < n1) int16_rows(a, w, out, n, n1, O, K);
}

// AVX-512: vpdpwssd (32 int16 products summed into 16 int32 lanes per instruction) and vpopcntq (8 words at once).
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void int16_rows_vnni(const int16_t* a, const int16_t* w, int32_t* out,
                                                                           int64_t n0, int64_t n1, int64_t O, int64_t K) {
  const int64_t K32 = K / 32 * 32;
  const __mmask32 tail_mask = (K % 32) ? __mmask32((uint64_t(1) << (K % 32)) - 1) : 0;
#define BILEVEL_LOAD(p, k) _mm512_loadu_si512(reinterpret_cast<const void*>((p) + (k)))
#define BILEVEL_LOAD_TAIL(p) _mm512_maskz_loadu_epi16(tail_mask, (p) + K32)
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    const int16_t* ar[4] = {a + n * K, a + (n + 1) * K, a + (n + 2) * K, a + (n + 3) * K};
    for (int64_t o = 0; o < O; o += 2) {
      const bool two = o + 1 < O;
      const int16_t *w0 = w + o * K, *w1 = two ? w0 + K : w0;
      __m512i c[4][2];
      for (int i = 0; i < 4; ++i) c[i][0] = c[i][1] = _mm512_setzero_si512();
      for (int64_t k = 0; k < K32; k += 32) {
        const __m512i x0 = BILEVEL_LOAD(w0, k), x1 = BILEVEL_LOAD(w1, k);
        for (int i = 0; i < 4; ++i) {
          const __m512i y = BILEVEL_LOAD(ar[i], k);
          c[i][0] = _mm512_dpwssd_epi32(c[i][0], x0, y);
          c[i][1] = _mm512_dpwssd_epi32(c[i][1], x1, y);
        }
      }
      if (tail_mask) {
        const __m512i x0 = BILEVEL_LOAD_TAIL(w0), x1 = BILEVEL_LOAD_TAIL(w1);
        for (int i = 0; i < 4; ++i) {
          const __m512i y = BILEVEL_LOAD_TAIL(ar[i]);
          c[i][0] = _mm512_dpwssd_epi32(c[i][0], x0, y);
          c[i][1] = _mm512_dpwssd_epi32(c[i][1], x1, y);
        }
      }
      for (int i = 0; i < 4; ++i) {
        out[(n + i) * O + o] = hsum(c[i][0]);
        if (two) out[(n + i) * O + o + 1] = hsum(c[i][1]);
      }
    }
  }
  if (n < n1) int16_rows(a, w, out, n, n1, O, K);
#undef BILEVEL_LOAD
#undef BILEVEL_LOAD_TAIL
}

__attribute__((target("avx512f,avx512vpopcntdq"))) void xnor_rows_avx512(const uint64_t* a, const uint64_t* w,
                                                                         int32_t* out, int64_t n0, int64_t n1,
                                                                         int64_t O, int64_t W, int64_t K) {
  const int64_t W8 = W / 8 * 8;
  const __mmask8 tail_mask = (W % 8) ? __mmask8((1u << (W % 8)) - 1) : 0;
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    const uint64_t* ar[4] = {a + n * W, a + (n + 1) * W, a + (n + 2) * W, a + (n + 3) * W};
    for (int64_t o = 0; o < O; ++o) {
      const uint64_t* wo = w + o * W;
      __m512i d[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
      for (int64_t k = 0; k < W8; k += 8) {
        const __m512i x = _mm512_loadu_si512(reinterpret_cast<const void*>(wo + k));
        for (int i = 0; i < 4; ++i)
          d[i] = _mm512_add_epi64(
              d[i], _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_loadu_si512(reinterpret_cast<const void*>(ar[i] + k)))));
      }
      if (tail_mask) {
        const __m512i x = _mm512_maskz_loadu_epi64(tail_mask, wo + W8);
        for (int i = 0; i < 4; ++i)
          d[i] = _mm512_add_epi64(d[i], _mm512_popcnt_epi64(_mm512_xor_si512(x, _mm512_maskz_loadu_epi64(tail_mask, ar[i] + W8))));
      }
      for (int i = 0; i < 4; ++i) out[(n + i) * O + o] = int32_t(K - 2 * hsum64(d[i]));
    }
  }
  if (n < n1) xnor_rows(a, w, out, n, n1, O, W, K);
}

void u8s8_rows(const uint8_t* a, const int8_t* w, int32_t* out, int64_t n0, int64_t n1, int64_t O, int64_t K) {
  for (int64_t n = n0; n < n1; ++n)
    for (int64_t o = 0; o < O; ++o) {
      int32_t s = 0;
      for (int64_t k = 0; k < K; ++k) s += int32_t(a[n * K + k]) * int32_t(w[o * K + k]);
      out[n * O + o] = s;
    }
}

// vpdpbusd: 64 unsigned-byte × signed-byte products summed into 16 int32 lanes per instruction (no saturation: each
// lane adds four products of at most 255·128 to an int32).
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void u8s8_rows_vnni(const uint8_t* a, const int8_t* w, int32_t* out,
                                                                          int64_t n0, int64_t n1, int64_t O, int64_t K) {
  const int64_t K64 = K / 64 * 64;
  const __mmask64 tail_mask = (K % 64) ? __mmask64((uint64_t(1) << (K % 64)) - 1) : 0;
  int64_t n = n0;
  for (; n + 4 <= n1; n += 4) {
    const uint8_t* ar[4] = {a + n * K, a + (n + 1) * K, a + (n + 2) * K, a + (n + 3) * K};
    for (int64_t o = 0; o < O; o += 2) {
      const bool two = o + 1 < O;
      const int8_t *w0 = w + o * K, *w1 = two ? w0 + K : w0;
      __m512i c[4][2];
      for (int i = 0; i < 4; ++i) c[i][0] = c[i][1] = _mm512_setzero_si512();
      for (int64_t k = 0; k < K64; k += 64) {
        const __m512i x0 = _mm512_loadu_si512(reinterpret_cast<const void*>(w0 + k));
        const __m512i x1 = _mm512_loadu_si512(reinterpret_cast<const void*>(w1 + k));
        for (int i = 0; i < 4; ++i) {
          const __m512i y = _mm512_loadu_si512(reinterpret_cast<const void*>(ar[i] + k));
          c[i][0] = _mm512_dpbusd_epi32(c[i][0], y, x0);
          c[i][1] = _mm512_dpbusd_epi32(c[i][1], y, x1);
        }
      }
      if (tail_mask) {
        const __m512i x0 = _mm512_maskz_loadu_epi8(tail_mask, w0 + K64), x1 = _mm512_maskz_loadu_epi8(tail_mask, w1 + K64);
        for (int i = 0; i < 4; ++i) {
          const __m512i y = _mm512_maskz_loadu_epi8(tail_mask, ar[i] + K64);
          c[i][0] = _mm512_dpbusd_epi32(c[i][0], y, x0);
          c[i][1] = _mm512_dpbusd_epi32(c[i][1], y, x1);
        }
      }
      for (int i = 0; i < 4; ++i) {
        out[(n + i) * O + o] = hsum(c[i][0]);
        if (two) out[(n + i) * O + o + 1] = hsum(c[i][1]);
      }
    }
  }
  if (n < n1) u8s8_rows(a, w, out, n, n1, O, K);
}

bool cpu_has_avx512_vnni() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vnni");
  return has;
}
bool cpu_has_avx512_popcnt() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
  return has;
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
}
#endif

template <class T>
BILEVEL_CLONES void state_codes_range(const float* x, int64_t b, int64_t e, float offset, float inv_step, float lo,
                                      float hi, T* out) {
  for (int64_t i = b; i < e; ++i) out[i] = T(qe::uniform_code((x[i] - offset) * inv_step, lo, hi));
}

template <class T>
void state_codes_any(const float* x, int64_t n, float offset, float inv_step, float lo, float hi, T* out) {
  at::parallel_for(0, n, 32768, [&](int64_t b, int64_t e) { state_codes_range(x, b, e, offset, inv_step, lo, hi, out); });
}

}  // namespace

void state_codes(const float* x, int64_t n, float offset, float inv_step, float lo, float hi, float* out) {
  state_codes_any(x, n, offset, inv_step, lo, hi, out);
}
void state_codes(const float* x, int64_t n, float offset, float inv_step, float lo, float hi, int16_t* out) {
  state_codes_any(x, n, offset, inv_step, lo, hi, out);
}

void int16_gemm(const int16_t* a, const int16_t* w, int32_t* out, int64_t N, int64_t O, int64_t K) {
  at::parallel_for(0, (N + 3) / 4, 1, [&](int64_t b, int64_t e) {
#if BILEVEL_HAVE_AVX2_INT
    if (!std::getenv("BILEVEL_NO_AVX512") && cpu_has_avx512_vnni())
      return int16_rows_vnni(a, w, out, 4 * b, std::min(N, 4 * e), O, K);
    if (cpu_has_avx2()) return int16_rows_avx2(a, w, out, 4 * b, std::min(N, 4 * e), O, K);
#endif
    int16_rows(a, w, out, 4 * b, std::min(N, 4 * e), O, K);
  });
}

bool u8s8_gemm_fast() {
#if BILEVEL_HAVE_AVX2_INT
  return !std::getenv("BILEVEL_NO_AVX512") && cpu_has_avx512_vnni();
#else
  return false;
#endif
}

void u8s8_gemm(const uint8_t* a, const int8_t* w, int32_t* out, int64_t N, int64_t O, int64_t K) {
  at::parallel_for(0, (N + 3) / 4, 1, [&](int64_t b, int64_t e) {
#if BILEVEL_HAVE_AVX2_INT
    if (!std::getenv("BILEVEL_NO_AVX512") && cpu_has_avx512_vnni())
      return u8s8_rows_vnni(a, w, out, 4 * b, std::min(N, 4 * e), O, K);
#endif
    u8s8_rows(a, w, out, 4 * b, std::min(N, 4 * e), O, K);
  });
}

void xnor_popcount_gemm(const uint64_t* a, const uint64_t* w, int32_t* out, int64_t N, int64_t O, int64_t W, int64_t K) {
  at::parallel_for(0, (N + 3) / 4, 1,
                   [&](int64_t b, int64_t e) {
#if BILEVEL_HAVE_AVX2_INT
                     if (!std::getenv("BILEVEL_NO_AVX512") && cpu_has_avx512_popcnt())
                       return xnor_rows_avx512(a, w, out, 4 * b, std::min(N, 4 * e), O, W, K);
#endif
                     xnor_rows(a, w, out, 4 * b, std::min(N, 4 * e), O, W, K);
                   });
}

}  // namespace bilevel::cpu
