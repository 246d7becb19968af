// Mini-batches of a Dataset in an order that depends only on (seed, epoch), so a resumed run sees the same batches.
#pragma once

#include <torch/types.h>

#include "bilevel/data/dataset.h"

namespace bilevel {

class Batches {
 public:
  // shuffle=false keeps the data set's order (evaluation).
  Batches(const Dataset& data, int64_t batch_size, bool shuffle, int64_t seed, int64_t epoch);
  int64_t count() const { return count_; }
  // Batch i: images [B, C, H, W] and labels [B]; the last batch may be smaller.
  std::pair<torch::Tensor, torch::Tensor> get(int64_t i) const;

 private:
  const Dataset& data_;
  int64_t batch_size_;
  int64_t count_;
  torch::Tensor order_;  // int64 permutation, or undefined for the natural order
};

}  // namespace bilevel
