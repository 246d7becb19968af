#include "bilevel/energy/inner_solver.h"

#include <stdexcept>

#include "bilevel/energy/fixed_point_solver.h"
#include "bilevel/energy/layerwise_solver.h"
#include "bilevel/kernels/fused_ops.h"
#include "bilevel/registry.h"

namespace bilevel {

std::unique_ptr<InnerSolver> make_solver(const std::string& name, const std::string& kernel,
                                         const std::string& order) {
  const RelaxKernel k = relax_kernel_from_name(kernel);
  if (name == "fixed_point") {
    if (order != "even_odd")
      throw std::invalid_argument("solver 'fixed_point' updates every layer at once; order is for layerwise");
    return std::make_unique<FixedPointSolver>(k);
  }
  if (name == "layerwise") return std::make_unique<LayerwiseSolver>(k, layerwise_order_from_name(order));
  throw std::invalid_argument("unknown solver '" + name + "' (expected fixed_point or layerwise)");
}

std::vector<std::string> solver_names() { return inner_solvers().names(); }

namespace {

std::vector<KeySpec> sweep_keys() {
  using V = ValueType;
  auto free = component_key("free_steps", V::Int, "30", "sweeps of the free phase (T); also the BPTT unroll length");
  free.min = 1;
  auto nudged = component_key("nudged_steps", V::Int, "10", "sweeps of each nudged/clamped phase (K), started from "
                                                            "the free state");
  nudged.min = 1;
  auto tol = component_key("tol", V::Float, "0.0",
                           "stop a phase early when the max-abs change of the states over a sweep is below this "
                           "(0 = never)");
  tol.min = 0;
  auto init = component_key("init", V::String, "zero",
                            "the free phase's starting state: zero, or feedforward (s_k = h(a·A_{k-1}(s_{k-1}) + "
                            "a·b_{k-1} + c) layer by layer from the input, ignoring the feedback; one forward pass, "
                            "after which fewer sweeps may settle the state)");
  init.choices = {"zero", "feedforward"};
  return {free, nudged, tol, init};
}

}  // namespace

Registry<InnerSolver>& inner_solvers() {
  static Registry<InnerSolver> registry("inner solver", [](Registry<InnerSolver>& r) {
    auto kernel = component_key("kernel", ValueType::String, "auto",
                                "fused = relax fully connected float32 networks in one fused kernel per block of "
                                "examples; compact = sweeps as matrix products over the examples still relaxing, "
                                "each example stopping at its own fixed point (any network); generic = LibTorch "
                                "operators on the whole batch, which stops together; auto = fused where the weights "
                                "above the input layer fit in cache, else compact where examples can stop early "
                                "(tol > 0, or more than 16 sweeps; not on a GPU with tol = 0), else generic. Same "
                                "dynamics; fused and compact apply tol per example");
    kernel.choices = {"auto", "fused", "compact", "generic"};
    std::vector<KeySpec> fixed_point_keys = sweep_keys();
    fixed_point_keys.push_back(kernel);
    auto lw_kernel = component_key("kernel", ValueType::String, "auto",
                                   "compact = even/odd sweeps over the examples still relaxing, each stopping at its "
                                   "own fixed point; generic = the whole batch, stopping together; auto = compact "
                                   "where examples can stop early (tol > 0, or more than 16 sweeps; not on a GPU "
                                   "with tol = 0), else generic");
    lw_kernel.choices = {"auto", "compact", "generic"};
    auto order = component_key("order", ValueType::String, "even_odd",
                               "the order of each sweep's layer updates: even_odd = the even layers, then the odd "
                               "ones; top_down = the output layer first, then each layer below from the new one "
                               "above (the nudge reaches every layer in one sweep). Same fixed points");
    order.choices = {"even_odd", "top_down"};
    std::vector<KeySpec> layerwise_keys = sweep_keys();
    layerwise_keys.push_back(lw_kernel);
    layerwise_keys.push_back(order);
    r.add({"fixed_point", "synchronous fixed-point dynamics s ← ρ(−∂E/∂s + s) of every layer at once",
           fixed_point_keys},
          [](const ExperimentConfig& cfg) {
            return make_solver("fixed_point", cfg.get<std::string>("solver.kernel"));
          });
    r.add({"layerwise", "layer-wise exact minimisation: even layers, then odd (block coordinate descent)",
           layerwise_keys},
          [](const ExperimentConfig& cfg) {
            return make_solver("layerwise", cfg.get<std::string>("solver.kernel"),
                               cfg.get<std::string>("solver.order"));
          });
  });
  return registry;
}

torch::Tensor max_abs_diff_tensor(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs_().max(); }

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) { return max_abs_diff_tensor(a, b).item<double>(); }

torch::Tensor finish_state_residual_(const LayeredEnergy& energy, torch::Tensor& out, const torch::Tensor& old,
                                     int64_t k, bool measure) {
  if (measure && !energy.quantizes_state(k) && out.is_cuda() && kernels::cuda_kernels_built() && out.is_contiguous() &&
      old.is_contiguous() && out.sizes() == old.sizes() && out.scalar_type() == old.scalar_type() &&
      out.device() == old.device())
    return kernels::state_update_residual_(out, old, energy.neuron().act_params());
  energy.neuron().finish_(out);
  energy.quantize_state_(out, k);
  return measure ? max_abs_diff_tensor(out, old) : torch::Tensor();
}

double finish_state_(const LayeredEnergy& energy, torch::Tensor& out, const torch::Tensor& old, int64_t k,
                     bool measure) {
  const torch::Tensor r = finish_state_residual_(energy, out, old, k, measure);
  return r.defined() ? r.item<double>() : 0.0;
}

}  // namespace bilevel
