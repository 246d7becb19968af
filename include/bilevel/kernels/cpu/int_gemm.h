// Integer products for quantized inference (no LibTorch; raw pointers, row-major):
//
//   int16_gemm:          out[n][o] = Σ_k a[n][k]·w[o][k]                      int16 codes, exact int32 accumulation
//   xnor_popcount_gemm:  out[n][o] = K − 2·popcount(a[n] XOR w[o])           the dot product of ±1 vectors packed as
//                                                                           bits (1 = +1), K the true length; both
//                                                                           rows padded with zero bits to W words
//
// Each product has three builds, chosen at run time by int_gemm_isa():
//   avx512   (AVX512-VNNI and VPOPCNTDQ): int16 vpdpwssd, u8×s8 vpdpbusd (64 products an instruction), vpopcntq;
//   avx2     int16 vpmaddwd, u8×s8 vpmaddubsw with int16 partial sums (for |w| ≤ 64: binary, ternary and up to
//            7-bit weights), popcount by nibble lookup (vpshufb);
//   portable plain loops (GCC also builds them for x86-64-v3 through target_clones), and every remainder.
// BILEVEL_NO_AVX512=1 caps the choice at avx2 and BILEVEL_NO_AVX2=1 at portable, so every build can be tested and
// measured on one machine. Results are exact integers: every build gives the same bits.
#pragma once

#include <cstdint>

namespace bilevel::cpu {

// Deterministic state codes: out[i] = round(clip((x[i] − offset)·inv_step, lo, hi)) (qe::uniform_code). The training
// path (bilevel/quant/activation_quantizer.h) and integer inference both call this one function, so a state gets the
// same code in both wherever its value is the same. float and int16 outputs.
void state_codes(const float* x, int64_t n, float offset, float inv_step, float lo, float hi, float* out);
void state_codes(const float* x, int64_t n, float offset, float inv_step, float lo, float hi, int16_t* out);
// The same codes of an [N, per] array as bits, packed for xnor_popcount_gemm: bit k of row n (word k / 64, bit
// k % 64) is [code == hi]; each row has `words` words (≥ ⌈per / 64⌉), the padding bits zero.
void state_bits(const float* x, int64_t N, int64_t per, float offset, float inv_step, float lo, float hi,
                uint64_t* bits, int64_t words);

enum class IntIsa { Portable, Avx2, Avx512 };
IntIsa int_gemm_isa();  // the build the products below run now
const char* int_isa_name(IntIsa isa);

void int16_gemm(const int16_t* a, const int16_t* w, int32_t* out, int64_t N, int64_t O, int64_t K);
// out[n][o] = Σ_k a[n][k]·w[o][k] for unsigned 8-bit codes a and signed 8-bit codes w (8-bit images against k-bit
// weights). w_max_abs bounds |w| (the AVX2 build needs ≤ 64). u8s8_gemm_fast(w_max_abs) says whether a vector
// build runs for such weights (otherwise int16_gemm is the faster choice).
void u8s8_gemm(const uint8_t* a, const int8_t* w, int32_t* out, int64_t N, int64_t O, int64_t K, int w_max_abs = 128);
bool u8s8_gemm_fast(int w_max_abs = 128);
void xnor_popcount_gemm(const uint64_t* a, const uint64_t* w, int32_t* out, int64_t N, int64_t O, int64_t W, int64_t K);
// Rows [n0, n1) of the same product on the calling thread with the given build (isa ≤ int_gemm_isa()), for callers
// that run many small products inside their own thread split (the packed relaxation, kernels/cpu/binary_relax.h).
void xnor_popcount_rows(const uint64_t* a, const uint64_t* w, int32_t* out, int64_t n0, int64_t n1, int64_t O,
                        int64_t W, int64_t K, IntIsa isa);

}  // namespace bilevel::cpu
