// splitmix64 (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number generators"): a bijective 64-bit
// mixer. Every seed this project derives (per epoch, per batch, per data stream) goes through it, because
// LibTorch's CPU generator keeps only part of its seed and nearby seeds would otherwise give correlated streams.
#pragma once

#include <cstdint>

#include "bilevel/util/hd.h"

namespace bilevel {

BILEVEL_HD inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace bilevel
