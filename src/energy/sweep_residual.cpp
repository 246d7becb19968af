#include "bilevel/energy/sweep_residual.h"

#include <atomic>

namespace bilevel {
namespace {

std::atomic<int64_t> g_host_reads{0};

}  // namespace

void SweepResidual::add(const torch::Tensor& r) {
  if (r.defined()) parts_.push_back(r.reshape({}));
}

double SweepResidual::read() {
  if (parts_.empty()) return 0.0;
  // Residuals of states of one dtype and device (a network's states share both); max() keeps a NaN.
  const torch::Tensor all = parts_.size() == 1 ? parts_[0] : torch::stack(parts_).max();
  parts_.clear();
  g_host_reads.fetch_add(1, std::memory_order_relaxed);
  return all.item<double>();
}

int64_t SweepResidual::host_reads() { return g_host_reads.load(std::memory_order_relaxed); }

}  // namespace bilevel
