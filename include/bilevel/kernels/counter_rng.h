// A counter-based uniform generator: the i-th number of stream `key` is a pure function of (key, i), so stochastic
// rounding needs no generator state in checkpoints and any element can be drawn independently (on a CPU thread or a
// GPU thread alike). Mixing: splitmix64 (Steele, Lea & Flood 2014) of the key and the counter, twice; the top 24 bits
// give a float in [0, 1) with every value exactly representable.
#pragma once

#include <cstdint>

#include "bilevel/util/hash.h"

namespace bilevel {

BILEVEL_HD inline float counter_uniform(uint64_t key, uint64_t i) {
  return float(splitmix64(splitmix64(key) ^ (i * 0xd1b54a32d192ed03ull)) >> 40) * (1.0f / 16777216.0f);
}

// The stream key of one use: (seed, epoch, batch, stream), stream naming the layer and purpose.
inline uint64_t stream_key(uint64_t seed, int64_t epoch, int64_t batch, uint64_t stream) {
  return splitmix64(splitmix64(splitmix64(splitmix64(seed) ^ uint64_t(epoch)) ^ uint64_t(batch)) ^ stream);
}

}  // namespace bilevel
