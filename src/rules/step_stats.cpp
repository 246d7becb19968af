#include "bilevel/rules/learning_rule.h"

#include <cmath>

namespace bilevel {

StepStats& StepStats::resolve() {
  if (!pending.defined()) return *this;
  const torch::Tensor host = pending.to(torch::kCPU, torch::kFloat64).contiguous();  // the one read
  pending = torch::Tensor();
  const double c = host[1].item<double>();  // a CPU tensor: no further synchronisation
  loss_sum = host[0].item<double>();
  correct = std::isfinite(c) ? int64_t(std::llround(c)) : 0;
  return *this;
}

}  // namespace bilevel
