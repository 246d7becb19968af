// Integer products for quantized inference (no LibTorch; raw pointers, row-major):
//
//   int16_gemm:          out[n][o] = Σ_k a[n][k]·w[o][k]                      int16 codes, exact int32 accumulation
//   xnor_popcount_gemm:  out[n][o] = K − 2·popcount(a[n] XOR w[o])           the dot product of ±1 vectors packed as
//                                                                           bits (1 = +1), K the true length; both
//                                                                           rows padded with zero bits to W words
//
// On CPUs with AVX-512, int16_gemm uses vpdpwssd (AVX512-VNNI) and xnor_popcount_gemm vpopcntq (AVX512-VPOPCNTDQ),
// chosen at run time (BILEVEL_NO_AVX512=1 turns them off, for testing the other builds). Otherwise int16_gemm has an AVX2 build (vpmaddwd, 4 rows of `a` × 2 rows of `w` per block) chosen at run time when the CPU
// has AVX2; the portable loops (also built for x86-64-v3 by GCC target_clones) serve otherwise and for remainders.
// xnor_popcount_gemm is built for x86-64-v3 (POPCNT) and generic x86-64 the same way. Results are exact integers, so
// every build gives the same bits.
#pragma once

#include <cstdint>

namespace bilevel::cpu {

// Deterministic state codes: out[i] = round(clip((x[i] − offset)·inv_step, lo, hi)) (qe::uniform_code). The training
// path (bilevel/quant/activation_quantizer.h) and integer inference both call this one function, so a state gets the
// same code in both wherever its value is the same. float and int16 outputs.
void state_codes(const float* x, int64_t n, float offset, float inv_step, float lo, float hi, float* out);
void state_codes(const float* x, int64_t n, float offset, float inv_step, float lo, float hi, int16_t* out);

void int16_gemm(const int16_t* a, const int16_t* w, int32_t* out, int64_t N, int64_t O, int64_t K);
// out[n][o] = Σ_k a[n][k]·w[o][k] for unsigned 8-bit codes a and signed 8-bit codes w (8-bit images against k-bit
// weights): vpdpbusd on AVX512-VNNI, 64 products an instruction. u8s8_gemm_fast() says whether that build runs
// (otherwise int16_gemm is the faster choice).
void u8s8_gemm(const uint8_t* a, const int8_t* w, int32_t* out, int64_t N, int64_t O, int64_t K);
bool u8s8_gemm_fast();
void xnor_popcount_gemm(const uint64_t* a, const uint64_t* w, int32_t* out, int64_t N, int64_t O, int64_t W, int64_t K);

}  // namespace bilevel::cpu
