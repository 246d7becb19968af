#include "bilevel/rules/learning_rule.h"

#include <cmath>

namespace bilevel {

StepStats& StepStats::resolve() {
  if (!pending.defined() && pending_diagnostics.empty()) return *this;
  std::vector<torch::Tensor> parts;
  if (pending.defined()) parts.push_back(pending.reshape({-1}).to(torch::kFloat64));
  for (const auto& d : pending_diagnostics) parts.push_back(d.second.reshape({-1}).to(torch::kFloat64));
  const torch::Tensor host = torch::cat(parts).to(torch::kCPU).contiguous();  // the one read
  auto h = [&](int64_t i) { return host[i].item<double>(); };  // a CPU tensor: no further synchronisation
  int64_t i = 0;
  if (pending.defined()) {
    const double c = h(1);
    loss_sum = h(0);
    correct = std::isfinite(c) ? int64_t(std::llround(c)) : 0;
    i = 2;
  }
  for (const auto& d : pending_diagnostics) diagnostics[d.first] = h(i++);
  pending = torch::Tensor();
  pending_diagnostics.clear();
  return *this;
}

}  // namespace bilevel
