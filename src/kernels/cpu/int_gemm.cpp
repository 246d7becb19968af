#include "bilevel/kernels/cpu/int_gemm.h"

#include <ATen/Parallel.h>

#include <algorithm>
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

// AVX2 vpmaddubsw: 32 unsigned-byte × signed-byte products, adjacent pairs summed into 16 int16 lanes (saturating,
// so only for |w| ≤ 64: a pair is then at most 2·255·64 = 32640). The int16 sums accumulate for `chunk` bytes, as
// many steps as cannot overflow (steps·2·255·max|w| ≤ 32767: 64 steps, 2048 bytes, for binary weights), then widen
// into int32 through vpmaddwd with ones. 4 rows of a (ar; repeated rows where fewer remain) × 2 rows of w per
// block; K % 32 in scalar. sums[2i + j] = row i · w_j.
__attribute__((target("avx2"))) void u8s8_block_avx2(const uint8_t* const* ar, const int8_t* w0, const int8_t* w1,
                                                      int64_t K, int64_t chunk, int32_t* sums) {
  const int64_t K32 = K / 32 * 32;
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i c32[4][2];
  for (int i = 0; i < 4; ++i) c32[i][0] = c32[i][1] = _mm256_setzero_si256();
  for (int64_t k0 = 0; k0 < K32; k0 += chunk) {
    const int64_t k1 = std::min(K32, k0 + chunk);
    __m256i c16[4][2];
    for (int i = 0; i < 4; ++i) c16[i][0] = c16[i][1] = _mm256_setzero_si256();
    for (int64_t k = k0; k < k1; k += 32) {
      const __m256i x0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w0 + k));
      const __m256i x1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w1 + k));
      for (int i = 0; i < 4; ++i) {
        const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar[i] + k));
        c16[i][0] = _mm256_add_epi16(c16[i][0], _mm256_maddubs_epi16(y, x0));
        c16[i][1] = _mm256_add_epi16(c16[i][1], _mm256_maddubs_epi16(y, x1));
      }
    }
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 2; ++j) c32[i][j] = _mm256_add_epi32(c32[i][j], _mm256_madd_epi16(c16[i][j], ones));
  }
  // The last K % 32 bytes: whole 4-byte words through a masked load (which reads nothing past the mask), in
  // their own int16 sums; the last K % 4 bytes in scalar.
  const int64_t words = (K - K32) / 4, K4 = K32 + 4 * words;
  if (words > 0) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(words)), lane);
#define BILEVEL_MASKLOAD(p) _mm256_maskload_epi32(reinterpret_cast<const int*>(p), mask)
    const __m256i x0 = BILEVEL_MASKLOAD(w0 + K32), x1 = BILEVEL_MASKLOAD(w1 + K32);
    for (int i = 0; i < 4; ++i) {
      const __m256i y = BILEVEL_MASKLOAD(ar[i] + K32);
      c32[i][0] = _mm256_add_epi32(c32[i][0], _mm256_madd_epi16(_mm256_maddubs_epi16(y, x0), ones));
      c32[i][1] = _mm256_add_epi32(c32[i][1], _mm256_madd_epi16(_mm256_maddubs_epi16(y, x1), ones));
    }
#undef BILEVEL_MASKLOAD
  }
  for (int i = 0; i < 4; ++i) {
    int32_t t0 = 0, t1 = 0;
    for (int64_t k = K4; k < K; ++k) t0 += int32_t(ar[i][k]) * int32_t(w0[k]), t1 += int32_t(ar[i][k]) * int32_t(w1[k]);
    sums[2 * i] = hsum(c32[i][0]) + t0;
    sums[2 * i + 1] = hsum(c32[i][1]) + t1;
  }
}

void u8s8_rows_avx2(const uint8_t* a, const int8_t* w, int32_t* out, int64_t n0, int64_t n1, int64_t O, int64_t K,
                    int w_max_abs) {
  const int64_t chunk = std::max<int64_t>(1, 32767 / (510 * std::max(1, w_max_abs))) * 32;
  // Tiles of w of about 128 KiB, which stay in L2 while every row of a passes (w is read from memory once).
  const int64_t tile = std::max<int64_t>(2, (int64_t(128) << 10) / std::max<int64_t>(K, 1) / 2 * 2);
  for (int64_t t0 = 0; t0 < O; t0 += tile)
  for (int64_t n = n0; n < n1; n += 4) {
    const int rows = int(std::min<int64_t>(4, n1 - n));
    const uint8_t* ar[4];
    for (int i = 0; i < 4; ++i) ar[i] = a + (n + std::min(i, rows - 1)) * K;
    int32_t sums[8];
    for (int64_t o = t0; o < std::min(O, t0 + tile); o += 2) {
      const bool two = o + 1 < O;
      const int8_t *w0 = w + o * K, *w1 = two ? w0 + K : w0;
      u8s8_block_avx2(ar, w0, w1, K, chunk, sums);
      for (int i = 0; i < rows; ++i) {
        out[(n + i) * O + o] = sums[2 * i];
        if (two) out[(n + i) * O + o + 1] = sums[2 * i + 1];
      }
    }
  }
}

// The popcount of each byte of v by nibble lookup (vpshufb on a 16-entry table; Muła, Kurz & Lemire 2018).
__attribute__((target("avx2"))) inline __m256i popcount_bytes(__m256i v) {
  const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,  //
                                         0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i low = _mm256_set1_epi8(0x0f);
  return _mm256_add_epi8(_mm256_shuffle_epi8(table, _mm256_and_si256(v, low)),
                         _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), low)));
}

// AVX2 XNOR-popcount: the byte counts of 256 bits at a time add up for at most 31 steps (8·31 < 256), then vpsadbw
// sums them into four 64-bit lanes. 4 rows of a (repeated where fewer remain) × 1 row of w; W % 4 words in scalar.
__attribute__((target("avx2,popcnt"))) void xnor_rows_avx2(const uint64_t* a, const uint64_t* w, int32_t* out,
                                                           int64_t n0, int64_t n1, int64_t O, int64_t W, int64_t K) {
  const int64_t W4 = W / 4 * 4;
  const __m256i zero = _mm256_setzero_si256();
  const int64_t tile = std::max<int64_t>(1, (int64_t(128) << 10) / (8 * std::max<int64_t>(W, 1)));  // as u8s8
  for (int64_t t0 = 0; t0 < O; t0 += tile)
  for (int64_t n = n0; n < n1; n += 4) {
    const int rows = int(std::min<int64_t>(4, n1 - n));
    const uint64_t* ar[4];
    for (int i = 0; i < 4; ++i) ar[i] = a + (n + std::min(i, rows - 1)) * W;
    for (int64_t o = t0; o < std::min(O, t0 + tile); ++o) {
      const uint64_t* wo = w + o * W;
      __m256i d64[4] = {zero, zero, zero, zero};
      for (int64_t k0 = 0; k0 < W4; k0 += 4 * 31) {
        const int64_t k1 = std::min(W4, k0 + 4 * 31);
        __m256i d8[4] = {zero, zero, zero, zero};
        for (int64_t k = k0; k < k1; k += 4) {
          const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wo + k));
          for (int i = 0; i < 4; ++i)
            d8[i] = _mm256_add_epi8(d8[i], popcount_bytes(_mm256_xor_si256(
                                               x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ar[i] + k)))));
        }
        for (int i = 0; i < 4; ++i) d64[i] = _mm256_add_epi64(d64[i], _mm256_sad_epu8(d8[i], zero));
      }
      for (int i = 0; i < rows; ++i) {
        alignas(32) int64_t lanes[4];
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), d64[i]);
        int64_t d = lanes[0] + lanes[1] + lanes[2] + lanes[3];
        for (int64_t k = W4; k < W; ++k) d += __builtin_popcountll(wo[k] ^ ar[i][k]);
        out[(n + i) * O + o] = int32_t(K - 2 * d);
      }
    }
  }
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

// One word of state bits: bit j = [code(x[j]) == hi] for the first `count` (≤ 64) values.
uint64_t state_bits_word(const float* x, int64_t count, float offset, float inv_step, float lo, float hi) {
  uint64_t word = 0;
  for (int64_t j = 0; j < count; ++j) word |= uint64_t(qe::uniform_code((x[j] - offset) * inv_step, lo, hi) == hi) << j;
  return word;
}

#if BILEVEL_HAVE_AVX2_INT
// The same for a full word, eight values at a time: qe::uniform_code's operations in the same order (subtract,
// multiply, clamp, then floor(|c| + ½) with c's sign), so the bits are those of the scalar loop.
__attribute__((target("avx2"))) uint64_t state_bits_word_avx2(const float* x, float offset, float inv_step, float lo,
                                                               float hi) {
  const __m256 off = _mm256_set1_ps(offset), inv = _mm256_set1_ps(inv_step), vlo = _mm256_set1_ps(lo),
               vhi = _mm256_set1_ps(hi), half = _mm256_set1_ps(0.5f), sign = _mm256_set1_ps(-0.f);
  uint64_t word = 0;
  for (int i = 0; i < 8; ++i) {
    const __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + 8 * i), off), inv);
    // clampf: x < lo ? lo : (x > hi ? hi : x), NaN passing through as in the scalar form.
    __m256 c = _mm256_blendv_ps(v, vhi, _mm256_cmp_ps(v, vhi, _CMP_GT_OQ));
    c = _mm256_blendv_ps(c, vlo, _mm256_cmp_ps(v, vlo, _CMP_LT_OQ));
    const __m256 f = _mm256_floor_ps(_mm256_add_ps(_mm256_andnot_ps(sign, c), half));
    const __m256 r = _mm256_or_ps(f, _mm256_and_ps(sign, c));
    word |= uint64_t(uint32_t(_mm256_movemask_ps(_mm256_cmp_ps(r, vhi, _CMP_EQ_OQ)))) << (8 * i);
  }
  return word;
}
#endif

}  // namespace

void state_bits(const float* x, int64_t N, int64_t per, float offset, float inv_step, float lo, float hi,
                uint64_t* bits, int64_t words) {
  const bool avx2 = int_gemm_isa() != IntIsa::Portable;
  at::parallel_for(0, N, std::max<int64_t>(1, 32768 / std::max<int64_t>(per, 1)), [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) {
      const float* xn = x + n * per;
      uint64_t* bn = bits + n * words;
      for (int64_t w = 0; w < words; ++w) {
        const int64_t count = std::clamp<int64_t>(per - 64 * w, 0, 64);
#if BILEVEL_HAVE_AVX2_INT
        if (avx2 && count == 64) {
          bn[w] = state_bits_word_avx2(xn + 64 * w, offset, inv_step, lo, hi);
          continue;
        }
#endif
        bn[w] = state_bits_word(xn + 64 * w, count, offset, inv_step, lo, hi);
      }
    }
  });
}

void state_codes(const float* x, int64_t n, float offset, float inv_step, float lo, float hi, float* out) {
  state_codes_any(x, n, offset, inv_step, lo, hi, out);
}
void state_codes(const float* x, int64_t n, float offset, float inv_step, float lo, float hi, int16_t* out) {
  state_codes_any(x, n, offset, inv_step, lo, hi, out);
}

IntIsa int_gemm_isa() {
#if BILEVEL_HAVE_AVX2_INT
  if (std::getenv("BILEVEL_NO_AVX2") || !cpu_has_avx2()) return IntIsa::Portable;
  if (std::getenv("BILEVEL_NO_AVX512") || !cpu_has_avx512_vnni() || !cpu_has_avx512_popcnt()) return IntIsa::Avx2;
  return IntIsa::Avx512;
#else
  return IntIsa::Portable;
#endif
}

const char* int_isa_name(IntIsa isa) {
  switch (isa) {
    case IntIsa::Avx512: return "avx512";
    case IntIsa::Avx2: return "avx2";
    case IntIsa::Portable: break;
  }
  return "portable";
}

void int16_gemm(const int16_t* a, const int16_t* w, int32_t* out, int64_t N, int64_t O, int64_t K) {
  const IntIsa isa = int_gemm_isa();
  at::parallel_for(0, (N + 3) / 4, 1, [&](int64_t b, int64_t e) {
    const int64_t n0 = 4 * b, n1 = std::min(N, 4 * e);
#if BILEVEL_HAVE_AVX2_INT
    if (isa == IntIsa::Avx512) return int16_rows_vnni(a, w, out, n0, n1, O, K);
    if (isa == IntIsa::Avx2) return int16_rows_avx2(a, w, out, n0, n1, O, K);
#endif
    int16_rows(a, w, out, n0, n1, O, K);
  });
}

bool u8s8_gemm_fast(int w_max_abs) {
  const IntIsa isa = int_gemm_isa();
  return isa == IntIsa::Avx512 || (isa == IntIsa::Avx2 && w_max_abs <= 64);
}

void u8s8_gemm(const uint8_t* a, const int8_t* w, int32_t* out, int64_t N, int64_t O, int64_t K, int w_max_abs) {
  const IntIsa isa = int_gemm_isa();
  at::parallel_for(0, (N + 3) / 4, 1, [&](int64_t b, int64_t e) {
    const int64_t n0 = 4 * b, n1 = std::min(N, 4 * e);
#if BILEVEL_HAVE_AVX2_INT
    if (isa == IntIsa::Avx512) return u8s8_rows_vnni(a, w, out, n0, n1, O, K);
    if (isa == IntIsa::Avx2 && w_max_abs <= 64) return u8s8_rows_avx2(a, w, out, n0, n1, O, K, w_max_abs);
#endif
    u8s8_rows(a, w, out, n0, n1, O, K);
  });
}

void xnor_popcount_gemm(const uint64_t* a, const uint64_t* w, int32_t* out, int64_t N, int64_t O, int64_t W, int64_t K) {
  const IntIsa isa = int_gemm_isa();
  at::parallel_for(0, (N + 3) / 4, 1, [&](int64_t b, int64_t e) {
    xnor_popcount_rows(a, w, out, 4 * b, std::min(N, 4 * e), O, W, K, isa);
  });
}

void xnor_popcount_rows(const uint64_t* a, const uint64_t* w, int32_t* out, int64_t n0, int64_t n1, int64_t O,
                        int64_t W, int64_t K, IntIsa isa) {
#if BILEVEL_HAVE_AVX2_INT
  if (isa == IntIsa::Avx512) return xnor_rows_avx512(a, w, out, n0, n1, O, W, K);
  if (isa == IntIsa::Avx2) return xnor_rows_avx2(a, w, out, n0, n1, O, W, K);
#endif
  (void)isa;
  xnor_rows(a, w, out, n0, n1, O, W, K);
}

}  // namespace bilevel::cpu
