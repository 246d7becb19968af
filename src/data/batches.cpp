#include "bilevel/data/batches.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "bilevel/util/hash.h"

namespace bilevel {

Batches::Batches(const Dataset& data, int64_t batch_size, bool shuffle, int64_t seed, int64_t epoch)
    : data_(data), batch_size_(batch_size) {
  if (batch_size < 1) throw std::invalid_argument("Batches: batch_size must be >= 1, got " + std::to_string(batch_size));
  const int64_t n = data.size();
  count_ = (n + batch_size - 1) / batch_size;
  if (shuffle) {
    // A private generator, so the order depends on (seed, epoch) only, never on the global RNG or on how many
    // random numbers earlier code drew. Hashed because mt19937 keeps only 32 bits of its seed.
    const uint64_t mixed = splitmix64(static_cast<uint64_t>(seed) * 1000003ULL + static_cast<uint64_t>(epoch));
    auto gen = at::make_generator<at::CPUGeneratorImpl>(mixed);
    order_ = torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kInt64));
  }
}

std::pair<torch::Tensor, torch::Tensor> Batches::get(int64_t i) const {
  if (i < 0 || i >= count_)
    throw std::out_of_range("Batches::get: batch " + std::to_string(i) + " of " + std::to_string(count_));
  const int64_t begin = i * batch_size_;
  const int64_t len = std::min(batch_size_, data_.size() - begin);
  if (!order_.defined()) return {data_.images.narrow(0, begin, len), data_.labels.narrow(0, begin, len)};
  const torch::Tensor idx = order_.narrow(0, begin, len);
  return {data_.images.index_select(0, idx), data_.labels.index_select(0, idx)};
}

}  // namespace bilevel
