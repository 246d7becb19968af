// Mini-batches of a Dataset in an order that depends only on (seed, epoch), so a resumed run sees the same batches.
// Data parallelism (bilevel/dist/): rank r of `world` reads a shard with DistributedSampler's semantics: the same
// permutation on every rank, padded with its own first elements to a multiple of `world`, every world-th element
// from position r. With a per-rank batch of B / world, the ranks' batch i together are the 1-rank run's batch i of
// size B (the last batch differs only when the examples left for it are not a multiple of `world`: padding).
#pragma once

#include <torch/types.h>

#include "bilevel/data/dataset.h"

namespace bilevel {

class Batches {
 public:
  // shuffle=false keeps the data set's order (evaluation).
  Batches(const Dataset& data, int64_t batch_size, bool shuffle, int64_t seed, int64_t epoch);
  // Rank `rank`'s shard of the shuffled order, in batches of `batch_size` (the per-rank batch).
  Batches(const Dataset& data, int64_t batch_size, int64_t seed, int64_t epoch, int64_t rank, int64_t world);
  int64_t count() const { return count_; }
  // Batch i: images [B, C, H, W] and labels [B]; the last batch may be smaller.
  std::pair<torch::Tensor, torch::Tensor> get(int64_t i) const;

 private:
  const Dataset& data_;
  int64_t batch_size_;
  int64_t size_;   // examples this instance reads
  int64_t count_;
  torch::Tensor order_;  // int64 permutation, or undefined for the natural order
};

}  // namespace bilevel
