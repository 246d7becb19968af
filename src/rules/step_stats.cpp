#include "bilevel/rules/learning_rule.h"

#include <cmath>

namespace bilevel {

StepStats& StepStats::resolve() {
  if (!pending.defined()) return *this;
  const torch::Tensor host = pending.to(torch::kCPU, torch::kFloat64).contiguous();  // the one read
  pending = torch::Tensor();
  const double* v = host.data_ptr<double>();
  loss_sum = v[0];
  correct = std::isfinite(v[1]) ? int64_t(std::llround(v[1])) : 0;
  return *this;
}

}  // namespace bilevel
