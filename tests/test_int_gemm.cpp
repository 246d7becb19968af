// The integer product kernels of quantized inference against an independent reference (plain int64 loops), on fresh
// random codes at sizes that are not multiples of the kernels' blocks (4 rows, 2 outputs, 16 lanes, 64-bit words),
// with the output poisoned before each call; 1 and 2 threads.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <random>
#include <vector>

#include "bilevel/kernels/cpu/int_gemm.h"

using namespace bilevel;

namespace {
constexpr int32_t kPoison = 0x5a5a5a5a;
}

TEST(IntGemm, Int16MatchesAReferenceAtOddSizes) {
  std::mt19937 gen(1234);
  for (int variant = 0; variant < 3; ++variant) {  // the AVX-512 build, then the others, then 2 threads
    if (variant == 1) setenv("BILEVEL_NO_AVX512", "1", 1);
    const int threads = variant == 2 ? 2 : 1;
    at::set_num_threads(threads);
    for (auto [N, O, K] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {1, 1, 1}, {3, 5, 15}, {4, 2, 16}, {7, 3, 17}, {13, 11, 100}, {9, 33, 785}, {5, 1, 31}, {8, 4, 64}, {6, 5, 33}}) {
      std::uniform_int_distribution<int> codes(-128, 255);
      std::vector<int16_t> a(size_t(N * K)), w(size_t(O * K));
      for (auto& v : a) v = int16_t(codes(gen));
      for (auto& v : w) v = int16_t(codes(gen) % 128);
      std::vector<int32_t> out(size_t(N * O), kPoison);
      cpu::int16_gemm(a.data(), w.data(), out.data(), N, O, K);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o) {
          int64_t ref = 0;
          for (int64_t k = 0; k < K; ++k) ref += int64_t(a[size_t(n * K + k)]) * w[size_t(o * K + k)];
          ASSERT_EQ(out[size_t(n * O + o)], ref) << N << "x" << O << "x" << K << " at " << n << "," << o;
        }
    }
  }
  unsetenv("BILEVEL_NO_AVX512");
  at::set_num_threads(1);
}

TEST(IntGemm, XnorPopcountIsTheDotProductOfSignVectors) {
  std::mt19937_64 gen(99);
  for (int variant = 0; variant < 2; ++variant)  // the AVX-512 build (where the CPU has it), then the others
  for (auto [N, O, K] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {1, 1, 1}, {5, 3, 63}, {4, 4, 64}, {6, 7, 65}, {9, 2, 200}, {3, 5, 2048}, {7, 3, 640}, {8, 9, 1000}}) {
    if (variant == 1) setenv("BILEVEL_NO_AVX512", "1", 1);
    const int64_t W = (K + 63) / 64;
    std::vector<int> sa(size_t(N * K)), sw(size_t(O * K));
    std::vector<uint64_t> a(size_t(N * W), 0), w(size_t(O * W), 0);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) {
        const bool one = gen() & 1;
        sa[size_t(n * K + k)] = one ? 1 : -1;
        if (one) a[size_t(n * W + k / 64)] |= uint64_t(1) << (k % 64);
      }
    for (int64_t o = 0; o < O; ++o)
      for (int64_t k = 0; k < K; ++k) {
        const bool one = gen() & 1;
        sw[size_t(o * K + k)] = one ? 1 : -1;
        if (one) w[size_t(o * W + k / 64)] |= uint64_t(1) << (k % 64);
      }
    std::vector<int32_t> out(size_t(N * O), kPoison);
    cpu::xnor_popcount_gemm(a.data(), w.data(), out.data(), N, O, W, K);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < O; ++o) {
        int ref = 0;
        for (int64_t k = 0; k < K; ++k) ref += sa[size_t(n * K + k)] * sw[size_t(o * K + k)];
        ASSERT_EQ(out[size_t(n * O + o)], ref) << N << "x" << O << "x" << K << " variant " << variant;
      }
  }
  unsetenv("BILEVEL_NO_AVX512");
}

TEST(IntGemm, UnsignedBySignedBytesMatchesAReference) {
  std::mt19937 gen(77);
  for (int variant = 0; variant < 2; ++variant) {
    if (variant == 1) setenv("BILEVEL_NO_AVX512", "1", 1);
    for (auto [N, O, K] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {1, 1, 1}, {4, 2, 64}, {5, 3, 63}, {9, 7, 784}, {6, 11, 130}, {3, 1, 65}}) {
      std::vector<uint8_t> a(size_t(N * K));
      std::vector<int8_t> w(size_t(O * K));
      for (auto& v : a) v = uint8_t(gen() % 256);
      for (auto& v : w) v = int8_t(int(gen() % 256) - 128);
      std::vector<int32_t> out(size_t(N * O), kPoison);
      cpu::u8s8_gemm(a.data(), w.data(), out.data(), N, O, K);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o) {
          int64_t ref = 0;
          for (int64_t k = 0; k < K; ++k) ref += int64_t(a[size_t(n * K + k)]) * w[size_t(o * K + k)];
          ASSERT_EQ(out[size_t(n * O + o)], ref) << N << "x" << O << "x" << K << " variant " << variant;
        }
    }
  }
  unsetenv("BILEVEL_NO_AVX512");
}
