#include "bilevel/data/batches.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "bilevel/util/hash.h"

namespace bilevel {

namespace {
// A private generator, so the order depends on (seed, epoch) only, never on the global RNG or on how many random
// numbers earlier code drew. Hashed because mt19937 keeps only 32 bits of its seed.
torch::Tensor shuffled(int64_t n, int64_t seed, int64_t epoch) {
  const uint64_t mixed = splitmix64(static_cast<uint64_t>(seed) * 1000003ULL + static_cast<uint64_t>(epoch));
  auto gen = at::make_generator<at::CPUGeneratorImpl>(mixed);
  return torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kInt64));
}
}  // namespace

Batches::Batches(const Dataset& data, int64_t batch_size, bool shuffle, int64_t seed, int64_t epoch)
    : data_(data), batch_size_(batch_size), size_(data.size()) {
  if (batch_size < 1) throw std::invalid_argument("Batches: batch_size must be >= 1, got " + std::to_string(batch_size));
  count_ = (size_ + batch_size - 1) / batch_size;
  if (shuffle) order_ = shuffled(size_, seed, epoch);
}

Batches::Batches(const Dataset& data, int64_t batch_size, int64_t seed, int64_t epoch, int64_t rank, int64_t world)
    : data_(data), batch_size_(batch_size) {
  if (batch_size < 1) throw std::invalid_argument("Batches: batch_size must be >= 1, got " + std::to_string(batch_size));
  if (world < 1 || rank < 0 || rank >= world)
    throw std::invalid_argument("Batches: rank " + std::to_string(rank) + " of " + std::to_string(world));
  const int64_t n = data.size();
  torch::Tensor order = shuffled(n, seed, epoch);
  const int64_t padded = n == 0 ? 0 : (n + world - 1) / world * world;
  if (padded > n) order = order.repeat({(padded + n - 1) / n}).narrow(0, 0, padded);
  order_ = padded == 0 ? order : order.slice(0, rank, padded, world).contiguous();
  size_ = padded / world;
  count_ = (size_ + batch_size - 1) / batch_size;
}

std::pair<torch::Tensor, torch::Tensor> Batches::get(int64_t i) const {
  if (i < 0 || i >= count_)
    throw std::out_of_range("Batches::get: batch " + std::to_string(i) + " of " + std::to_string(count_));
  const int64_t begin = i * batch_size_;
  const int64_t len = std::min(batch_size_, size_ - begin);
  if (!order_.defined()) return {data_.images.narrow(0, begin, len), data_.labels.narrow(0, begin, len)};
  const torch::Tensor idx = order_.narrow(0, begin, len);
  return {data_.images.index_select(0, idx), data_.labels.index_select(0, idx)};
}

}  // namespace bilevel
