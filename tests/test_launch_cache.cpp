// LaunchCache (bilevel/kernels/launch_cache.h), the per-(device, kernel) limits of the persistent relaxation's
// launcher: the device is queried once, not per launch; the kernel's limit is raised once; errors are not cached.
#include <gtest/gtest.h>

#include "bilevel/kernels/launch_cache.h"

using bilevel::kernels::LaunchCache;

TEST(LaunchCache, QueriesEachDeviceAndKernelOnce) {
  LaunchCache cache;
  int queries = 0;
  auto query = [&](int64_t& room) {
    ++queries;
    room = 200000 + queries;
    return 0;
  };
  const int k1 = 0, k2 = 0;
  LaunchCache::Entry e;
  for (int launch = 0; launch < 100; ++launch) {
    ASSERT_EQ(cache.entry(0, &k1, e, query), 0);
    EXPECT_EQ(e.room, 200001);
  }
  EXPECT_EQ(queries, 1);
  ASSERT_EQ(cache.entry(0, &k2, e, query), 0);  // another kernel
  ASSERT_EQ(cache.entry(1, &k1, e, query), 0);  // another device
  EXPECT_EQ(queries, 3);
}

TEST(LaunchCache, RaisesAKernelsLimitOnceToItsRoom) {
  LaunchCache cache;
  const int k = 0;
  LaunchCache::Entry e;
  ASSERT_EQ(cache.entry(0, &k, e, [](int64_t& room) { room = 232448 - 1024; return 0; }), 0);
  EXPECT_FALSE(e.opted_in);
  int sets = 0;
  int64_t set_to = 0;
  for (int launch = 0; launch < 10; ++launch)
    ASSERT_EQ(cache.opt_in(0, &k, [&](int64_t bytes) { ++sets, set_to = bytes; return 0; }), 0);
  EXPECT_EQ(sets, 1);
  EXPECT_EQ(set_to, 232448 - 1024);
  ASSERT_EQ(cache.entry(0, &k, e, [](int64_t&) { ADD_FAILURE() << "queried again"; return 0; }), 0);
  EXPECT_TRUE(e.opted_in);
}

TEST(LaunchCache, AFailedQueryOrOptInIsNotRemembered) {
  LaunchCache cache;
  const int k = 0;
  LaunchCache::Entry e;
  EXPECT_EQ(cache.entry(0, &k, e, [](int64_t&) { return 7; }), 7);
  int queries = 0;
  ASSERT_EQ(cache.entry(0, &k, e, [&](int64_t& room) { ++queries, room = 1000; return 0; }), 0);
  EXPECT_EQ(queries, 1);
  EXPECT_EQ(cache.opt_in(0, &k, [](int64_t) { return 3; }), 3);
  int sets = 0;
  EXPECT_EQ(cache.opt_in(0, &k, [&](int64_t) { return ++sets, 0; }), 0);
  EXPECT_EQ(sets, 1);
  EXPECT_EQ(cache.opt_in(5, &k, [](int64_t) { return 0; }), -1);  // no entry for that device yet
}
