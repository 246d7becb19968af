// The shared-memory mean-allreduce of one host's ranks (dist/shm_allreduce.h), with real processes: rank 0 is the
// test, the other ranks are forked children. Every rank fills its slot with its own fresh random numbers (drawn
// from a seed all ranks know), so each can compute the expected mean independently in double precision; sizes are
// not multiples of the cache-line chunking (and smaller than the world), and each slot's tail beyond n is poisoned
// and must survive. A peer that exits, or never arrives, makes the others fail with a named error instead of
// hanging.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bilevel/dist/shm_allreduce.h"

using namespace bilevel;

namespace {

std::string unique_name(const char* what) {
  return "/bilevel-test-" + std::string(what) + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(std::chrono::steady_clock::now().time_since_epoch().count() % 1000000);
}

template <class T>
T value_of(int rank, size_t i, uint64_t seed) {
  // A value each rank can recompute for any rank: an independent stream per (seed, rank).
  std::mt19937_64 g(seed * 1000003u + uint64_t(rank) * 7919u + i);
  return T(std::uniform_real_distribution<double>(-10, 10)(g));
}

// Fills this rank's slot, averages, and checks the whole result against the double-precision reference.
// Returns the number of wrong elements (0 = pass).
template <class T>
size_t run_rank(ShmAllreduce& shm, int rank, int size, size_t n, uint64_t seed, size_t poison_tail) {
  T* slot = static_cast<T*>(shm.slot());
  for (size_t i = 0; i < n; ++i) slot[i] = value_of<T>(rank, i, seed);
  for (size_t i = n; i < n + poison_tail; ++i) slot[i] = T(-12345.5);
  shm.allreduce_mean(n, sizeof(T));
  size_t wrong = 0;
  for (size_t i = 0; i < n; ++i) {
    double mean = 0;
    for (int r = 0; r < size; ++r) mean += double(value_of<T>(r, i, seed));
    mean /= size;
    const double tol = std::is_same<T, float>::value ? 1e-5 : 1e-12;
    if (!(std::abs(double(slot[i]) - mean) <= tol * std::max(1.0, std::abs(mean)))) ++wrong;
  }
  for (size_t i = n; i < n + poison_tail; ++i)
    if (slot[i] != T(-12345.5)) ++wrong;
  return wrong;
}

// Runs body(rank) in `size` processes (rank 0 here) over one segment; returns each child's exit status.
std::vector<int> with_ranks(int size, size_t capacity, double timeout,
                            const std::function<int(ShmAllreduce&, int)>& body, int* rank0_result,
                            std::string* rank0_error = nullptr) {
  const std::string name = unique_name("ar");
  auto mine = ShmAllreduce::create(name, 0, size, capacity, timeout);
  std::vector<pid_t> children;
  for (int r = 1; r < size; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int code = 3;
      try {
        auto shm = ShmAllreduce::open(name, r, size, capacity, timeout);
        code = body(*shm, r);
      } catch (...) {
        code = 4;
      }
      ::_exit(code);
    }
    children.push_back(pid);
  }
  try {
    *rank0_result = body(*mine, 0);
  } catch (const std::exception& e) {
    *rank0_result = -1;
    if (rank0_error) *rank0_error = e.what();
  }
  mine->unlink();
  std::vector<int> codes;
  for (pid_t pid : children) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    codes.push_back(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }
  return codes;
}

}  // namespace

TEST(ShmAllreduce, MeanOverThreeRanksMatchesTheReference) {
  for (const size_t n : {size_t(1), size_t(2), size_t(17), size_t(1000), size_t(65537), size_t(250001)}) {
    const size_t poison = 19;
    const uint64_t seed = uint64_t(std::random_device{}());
    int rank0 = -1;
    const auto codes = with_ranks(3, (n + poison) * sizeof(float), 30,
                                  [&](ShmAllreduce& shm, int rank) {
                                    size_t wrong = 0;
                                    // Several rounds: the barriers' generations and the slots are reused.
                                    for (int round = 0; round < 3; ++round)
                                      wrong += run_rank<float>(shm, rank, 3, n, seed + uint64_t(round), poison);
                                    return wrong == 0 ? 0 : 1;
                                  },
                                  &rank0);
    EXPECT_EQ(rank0, 0) << "n = " << n;
    for (size_t i = 0; i < codes.size(); ++i) EXPECT_EQ(codes[i], 0) << "rank " << i + 1 << ", n = " << n;
  }
}

TEST(ShmAllreduce, DoublesOverTwoRanksAreTheExactMean) {
  const size_t n = 4099;
  const uint64_t seed = uint64_t(std::random_device{}());
  int rank0 = -1;
  const auto codes = with_ranks(2, n * sizeof(double), 30,
                                [&](ShmAllreduce& shm, int rank) {
                                  return run_rank<double>(shm, rank, 2, n, seed, 0) == 0 ? 0 : 1;
                                },
                                &rank0);
  EXPECT_EQ(rank0, 0);
  EXPECT_EQ(codes, std::vector<int>{0});
}

TEST(ShmAllreduce, FloatsOverTwoRanksAreTheRankOrderSumBitForBit) {
  // Two ranks take their own pass (vectorised): every element must be exactly what float arithmetic gives for
  // (rank 0's + rank 1's) / 2 and, for the sum, rank 0's + rank 1's, in that order, so both ranks and every CPU
  // clone hold the same bits. Sizes straddle the vector widths and the cache-line chunking; the tails are poisoned.
  for (const bool mean : {true, false})
    for (const size_t n : {size_t(1), size_t(3), size_t(17), size_t(1001), size_t(65537), size_t(250001)}) {
      const size_t poison = 23;
      const uint64_t seed = uint64_t(std::random_device{}());
      int rank0 = -1;
      const auto codes = with_ranks(2, (n + poison) * sizeof(float), 30,
                                    [&](ShmAllreduce& shm, int rank) {
                                      float* slot = static_cast<float*>(shm.slot());
                                      size_t wrong = 0;
                                      for (int round = 0; round < 2; ++round) {
                                        const uint64_t s = seed + uint64_t(round);
                                        for (size_t i = 0; i < n; ++i) slot[i] = value_of<float>(rank, i, s);
                                        for (size_t i = n; i < n + poison; ++i) slot[i] = -12345.5f;
                                        if (mean)
                                          shm.allreduce_mean(n, sizeof(float));
                                        else
                                          shm.allreduce_sum(n, sizeof(float));
                                        for (size_t i = 0; i < n; ++i) {
                                          const float sum = value_of<float>(0, i, s) + value_of<float>(1, i, s);
                                          const float expected = mean ? sum / 2.0f : sum;
                                          if (std::memcmp(&slot[i], &expected, sizeof(float)) != 0) ++wrong;
                                        }
                                        for (size_t i = n; i < n + poison; ++i) wrong += slot[i] != -12345.5f;
                                      }
                                      return wrong == 0 ? 0 : 1;
                                    },
                                    &rank0);
      EXPECT_EQ(rank0, 0) << "n = " << n << (mean ? ", mean" : ", sum");
      EXPECT_EQ(codes, std::vector<int>{0}) << "n = " << n << (mean ? ", mean" : ", sum");
    }
}

TEST(ShmAllreduce, AnExitedPeerIsNamedQuickly) {
  int rank0 = 0;
  std::string error;
  const auto t0 = std::chrono::steady_clock::now();
  const auto codes = with_ranks(2, 1024, 60,
                                [&](ShmAllreduce& shm, int rank) {
                                  if (rank == 1) return 0;  // leaves without taking part
                                  shm.allreduce_mean(10, 4);
                                  return 0;
                                },
                                &rank0, &error);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(rank0, -1);
  EXPECT_NE(error.find("rank 1"), std::string::npos) << error;
  EXPECT_NE(error.find("exited"), std::string::npos) << error;
  EXPECT_LT(seconds, 30) << "a dead peer must be noticed long before the 60 s timeout";
  EXPECT_EQ(codes, std::vector<int>{0});
}

TEST(ShmAllreduce, APeerThatNeverArrivesTimesOut) {
  int rank0 = 0;
  std::string error;
  const auto codes = with_ranks(2, 1024, 1,
                                [&](ShmAllreduce& shm, int rank) {
                                  if (rank == 1) {
                                    ::sleep(4);  // alive, but not taking part
                                    return 0;
                                  }
                                  shm.allreduce_mean(10, 4);
                                  return 0;
                                },
                                &rank0, &error);
  EXPECT_EQ(rank0, -1);
  EXPECT_NE(error.find("dist.timeout"), std::string::npos) << error;
  EXPECT_EQ(codes, std::vector<int>{0});
}

TEST(ShmAllreduce, BadUseIsRefused) {
  const std::string name = unique_name("bad");
  auto shm = ShmAllreduce::create(name, 0, 1, 64, 1);
  EXPECT_THROW(shm->allreduce_mean(17, 4), std::invalid_argument);  // 68 bytes > 64
  EXPECT_THROW(shm->allreduce_mean(4, 2), std::invalid_argument);   // neither float nor double
  // A second segment of the same name is refused, and opening with another size says the ranks disagree.
  EXPECT_THROW(ShmAllreduce::create(name, 0, 1, 64, 1), std::runtime_error);
  try {
    ShmAllreduce::open(name, 0, 1, 4096, 1);
    ADD_FAILURE() << "a size mismatch must be refused";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("disagree"), std::string::npos) << e.what();
  }
  shm->unlink();
  EXPECT_THROW(ShmAllreduce::open(name, 0, 1, 64, 1), std::runtime_error);  // the name is gone
  // A world of one averages to itself.
  float* s = static_cast<float*>(shm->slot());
  for (int i = 0; i < 16; ++i) s[i] = float(i) + 0.25f;
  shm->allreduce_mean(16, 4);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(s[i], float(i) + 0.25f);
}

TEST(ShmAllreduce, SumsAreExactForCounts) {
  // The metrics' sums: integral counts and loss sums, over three ranks, several rounds on one segment.
  int rank0 = -1;
  const auto codes = with_ranks(3, 7 * sizeof(double), 30,
                                [&](ShmAllreduce& shm, int rank) {
                                  double* s = static_cast<double*>(shm.slot());
                                  int wrong = 0;
                                  for (int round = 1; round <= 4; ++round) {
                                    for (int i = 0; i < 7; ++i) s[i] = double((rank + 1) * 1000003 * round + i);
                                    shm.allreduce_sum(7, sizeof(double));
                                    for (int i = 0; i < 7; ++i)
                                      if (s[i] != double(6 * 1000003 * round + 3 * i)) ++wrong;
                                  }
                                  return wrong == 0 ? 0 : 1;
                                },
                                &rank0);
  EXPECT_EQ(rank0, 0);
  EXPECT_EQ(codes, (std::vector<int>{0, 0}));
}
