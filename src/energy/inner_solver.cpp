#include "bilevel/energy/inner_solver.h"

#include <stdexcept>

#include "bilevel/energy/fixed_point_solver.h"
#include "bilevel/energy/layerwise_solver.h"

namespace bilevel {

std::unique_ptr<InnerSolver> make_solver(const std::string& name, const std::string& kernel) {
  const RelaxKernel k = relax_kernel_from_name(kernel);
  if (name == "fixed_point") return std::make_unique<FixedPointSolver>(k);
  if (name == "layerwise") return std::make_unique<LayerwiseSolver>();
  throw std::invalid_argument("unknown solver '" + name + "' (expected fixed_point or layerwise)");
}

std::vector<std::string> solver_names() { return {"fixed_point", "layerwise"}; }

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs_().max().item<double>();
}

}  // namespace bilevel
