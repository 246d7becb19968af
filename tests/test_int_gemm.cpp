// The integer product kernels of quantized inference against an independent reference (plain int64 loops), on fresh
// random codes at sizes that are not multiples of the kernels' blocks (4 rows, 2 outputs, 16 or 32 lanes, 64-bit
// words), with the output poisoned before each call; every build this CPU can run (avx512, avx2, portable: the
// environment caps of int_gemm.h), 1 and 2 threads.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include <random>
#include <vector>

#include "bilevel/kernels/cpu/int_gemm.h"

using namespace bilevel;

namespace {
constexpr int32_t kPoison = 0x5a5a5a5a;

// Runs f once under each build this CPU has, best first, and restores the default.
template <class F>
void for_each_build(F f) {
  for (int cap = 0; cap < 3; ++cap) {
    if (cap >= 1) setenv("BILEVEL_NO_AVX512", "1", 1);
    if (cap == 2) setenv("BILEVEL_NO_AVX2", "1", 1);
    const cpu::IntIsa isa = cpu::int_gemm_isa();
    if (cap == 2) EXPECT_EQ(isa, cpu::IntIsa::Portable);
    if (cap == 1) EXPECT_NE(isa, cpu::IntIsa::Avx512);
    f(std::string(cpu::int_isa_name(isa)));
  }
  unsetenv("BILEVEL_NO_AVX512");
  unsetenv("BILEVEL_NO_AVX2");
}
}  // namespace

TEST(IntGemm, TheEnvironmentCapsTheBuild) {
  const cpu::IntIsa best = cpu::int_gemm_isa();
  setenv("BILEVEL_NO_AVX2", "1", 1);
  EXPECT_EQ(cpu::int_gemm_isa(), cpu::IntIsa::Portable);
  unsetenv("BILEVEL_NO_AVX2");
  setenv("BILEVEL_NO_AVX512", "1", 1);
  EXPECT_EQ(cpu::int_gemm_isa(), best == cpu::IntIsa::Portable ? cpu::IntIsa::Portable : cpu::IntIsa::Avx2);
  unsetenv("BILEVEL_NO_AVX512");
  EXPECT_EQ(cpu::int_gemm_isa(), best);
  EXPECT_STREQ(cpu::int_isa_name(cpu::IntIsa::Avx2), "avx2");
}

TEST(IntGemm, Int16MatchesAReferenceAtOddSizes) {
  std::mt19937 gen(1234);
  for (int threads : {1, 2}) for_each_build([&](const std::string& build) {
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
          ASSERT_EQ(out[size_t(n * O + o)], ref) << N << "x" << O << "x" << K << " at " << n << "," << o << " " << build;
        }
    }
  });
  at::set_num_threads(1);
}

TEST(IntGemm, XnorPopcountIsTheDotProductOfSignVectors) {
  std::mt19937_64 gen(99);
  for_each_build([&](const std::string& build) {
  // K up to 9000 bits: the AVX2 byte counters spill into 64-bit sums every 31 steps of 256 bits.
  for (auto [N, O, K] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {1, 1, 1}, {5, 3, 63}, {4, 4, 64}, {6, 7, 65}, {9, 2, 200}, {3, 5, 2048}, {7, 3, 640}, {8, 9, 1000},
           {5, 2, 9000}, {2, 3, 257}}) {
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
        ASSERT_EQ(out[size_t(n * O + o)], ref) << N << "x" << O << "x" << K << " " << build;
      }
  }
  });
}

// Full-range weights (the AVX-512 build; the others fall back to the portable loops), weights within ±64 and
// binary weights (the AVX2 build's int16 partial sums: all-255 inputs against all-(+1) or all-(+64) rows at K of
// several chunks are the worst case for their saturation bound).
TEST(IntGemm, UnsignedBySignedBytesMatchesAReference) {
  std::mt19937 gen(77);
  for_each_build([&](const std::string& build) {
    for (int w_max_abs : {128, 64, 1})
    for (auto [N, O, K] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
             {1, 1, 1}, {4, 2, 64}, {5, 3, 63}, {9, 7, 784}, {6, 11, 130}, {3, 1, 65}, {5, 3, 4200}}) {
      for (bool extreme : {false, true}) {
        std::vector<uint8_t> a(size_t(N * K));
        std::vector<int8_t> w(size_t(O * K));
        const int wmax = std::min(w_max_abs, 127);
        for (auto& v : a) v = extreme ? 255 : uint8_t(gen() % 256);
        for (auto& v : w) {
          if (extreme) v = int8_t(wmax);
          else if (w_max_abs == 1) v = (gen() & 1) ? 1 : -1;
          else v = int8_t(int(gen() % uint32_t(2 * w_max_abs)) - w_max_abs);
        }
        std::vector<int32_t> out(size_t(N * O), kPoison);
        cpu::u8s8_gemm(a.data(), w.data(), out.data(), N, O, K, w_max_abs);
        for (int64_t n = 0; n < N; ++n)
          for (int64_t o = 0; o < O; ++o) {
            int64_t ref = 0;
            for (int64_t k = 0; k < K; ++k) ref += int64_t(a[size_t(n * K + k)]) * w[size_t(o * K + k)];
            ASSERT_EQ(out[size_t(n * O + o)], ref) << N << "x" << O << "x" << K << " |w| ≤ " << w_max_abs
                                                   << (extreme ? " extreme " : " random ") << build;
          }
      }
    }
  });
  EXPECT_FALSE(cpu::u8s8_gemm_fast(128) && cpu::int_gemm_isa() == cpu::IntIsa::Avx2);
}

// state_bits packs exactly the codes state_codes gives (bit = [code == hi]), rows not multiples of 64 and words of
// padding zero, values straddling every rounding boundary; every build.
TEST(IntGemm, StateBitsAreTheTopCodesOfStateCodes) {
  std::mt19937 gen(5);
  std::uniform_real_distribution<float> u(-1.5f, 1.5f);
  for (auto [N, per, words] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{1, 1, 1}, {3, 64, 1}, {5, 65, 2},
                                                                                  {7, 200, 5}, {2, 2048, 32}}) {
    std::vector<float> x(size_t(N * per));
    for (size_t i = 0; i < x.size(); ++i) x[i] = i % 7 == 0 ? 0.5f * float(int(i % 5) - 2) : u(gen);  // ties too
    for (auto [off, step, lo, hi] : std::vector<std::tuple<float, float, float, float>>{{-1.f, 2.f, 0.f, 1.f},
                                                                                        {0.f, 1.f, -1.f, 1.f}}) {
      std::vector<int16_t> codes(x.size());
      cpu::state_codes(x.data(), int64_t(x.size()), off, 1.f / step, lo, hi, codes.data());
      for_each_build([&](const std::string& build) {
        std::vector<uint64_t> bits(size_t(N * words), 0x5a5a5a5a5a5a5a5aull);
        cpu::state_bits(x.data(), N, per, off, 1.f / step, lo, hi, bits.data(), words);
        for (int64_t n = 0; n < N; ++n)
          for (int64_t k = 0; k < 64 * words; ++k) {
            const bool bit = (bits[size_t(n * words + k / 64)] >> (k % 64)) & 1u;
            const bool want = k < per && codes[size_t(n * per + k)] == int16_t(hi);
            ASSERT_EQ(bit, want) << N << "x" << per << " at " << n << "," << k << " " << build;
          }
      });
    }
  }
}
