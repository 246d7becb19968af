#include "bilevel/energy/layerwise_solver.h"

#include <algorithm>
#include <stdexcept>
#include <utility>
#include <vector>

#include "bilevel/energy/binary_relaxation.h"
#include "bilevel/energy/compact_relaxation.h"
#include "bilevel/energy/sweep_residual.h"

namespace bilevel {

LayerwiseSolver::Order layerwise_order_from_name(const std::string& name) {
  if (name == "even_odd") return LayerwiseSolver::Order::EvenOdd;
  if (name == "top_down") return LayerwiseSolver::Order::TopDown;
  throw std::invalid_argument("unknown layer-wise order '" + name + "' (expected even_odd or top_down)");
}

LayerwiseSolver::LayerwiseSolver(RelaxKernel kernel, Order order) : kernel_(kernel), order_(order) {
  if (kernel == RelaxKernel::Fused)
    throw std::invalid_argument("solver 'layerwise' has no fused kernel (solver.kernel: auto, compact or generic)");
}

SolveStats LayerwiseSolver::solve(const LayeredEnergy& energy, const EnergyBatch& batch, EnergyState& st,
                                  const Nudge& nudge, int64_t max_steps, double tol) const {
  torch::NoGradGuard no_grad;
  const SweepSchedule schedule = order_ == Order::TopDown ? SweepSchedule::TopDown : SweepSchedule::EvenOdd;
  if (use_binary_relaxation(kernel_, energy, batch, nudge))
    return binary_relaxation(energy, batch, st, nudge, max_steps, tol, schedule);
  if (use_compact_relaxation(kernel_, batch, tol, max_steps))
    return compact_relaxation(energy, batch, st, nudge, max_steps, tol,
                              order_ == Order::TopDown ? SweepSchedule::TopDown : SweepSchedule::EvenOdd);
  const int64_t S = energy.num_states();
  const bool clamped = nudge.kind == Nudge::Kind::Clamp;
  if (clamped) st.s[S - 1].copy_(batch.onehot);
  const bool prox_output = nudge.kind == Nudge::Kind::Loss && nudge.beta != 0.0 && energy.output_is_state();
  const Neuron& neuron = energy.neuron();
  // The even half-step's feedback into s_k (k even, k < S) reads layer k's switches at s_k from the entry
  // state; every other switch is computed by the drive just before it is used (drive_into(k + 1) stores layer
  // k's switches at s_k). With S ≤ 2 there is no such k, and the entry refresh (one convolution) is skipped.
  // Top-down sweeps compute every switch they read just before (drive_into(k + 1) precedes the update of s_k).
  if (S >= 3 && order_ == Order::EvenOdd) energy.refresh_pools(st);
  // The sweep's update order: the even layers then the odd ones, or S down to 1.
  std::vector<int64_t> order;
  if (order_ == Order::TopDown) {
    for (int64_t k = S; k >= 1; --k) order.push_back(k);
  } else {
    for (int64_t parity : {0, 1})
      for (int64_t k = 2 - parity; k <= S; k += 2) order.push_back(k);
  }
  SolveStats stats;
  for (int64_t t = 1; t <= max_steps; ++t) {
    const bool measure = tol > 0.0 || t == max_steps;
    SweepResidual r;  // the states' residuals, read once after the sweep
    for (int64_t k : order) {
      if (clamped && k == S) continue;
      torch::Tensor& out = st.scratch[k - 1];
      energy.drive_into(batch, st, k, out);
      if (k == S && prox_output) {
        torch::Tensor u = (out - neuron.shift()) / neuron.scale();
        neuron.output_prox_(out, u, batch.onehot, nudge.beta);
        energy.quantize_state_(out, k);
        if (measure) r.add(max_abs_diff_tensor(out, st.s[k - 1]));
      } else {
        if (k == S) energy.add_nudge(batch, st, nudge, out);
        r.add(finish_state_residual_(energy, out, st.s[k - 1], k, measure));
      }
      std::swap(st.s[k - 1], st.scratch[k - 1]);
      st.forget_product(size_t(k));  // layer k's product was of the old s_k
    }
    stats.steps = t;
    if (measure) stats.residual = r.read();
    if (tol > 0.0 && stats.residual < tol) break;
  }
  energy.refresh_pools(st);
  return stats;
}

}  // namespace bilevel
