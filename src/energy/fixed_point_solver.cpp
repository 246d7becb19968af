#include "bilevel/energy/fixed_point_solver.h"

#include <algorithm>
#include <utility>

#include "bilevel/energy/binary_relaxation.h"
#include "bilevel/energy/compact_relaxation.h"
#include "bilevel/energy/sweep_residual.h"

namespace bilevel {

SolveStats FixedPointSolver::solve(const LayeredEnergy& energy, const EnergyBatch& batch, EnergyState& st,
                                   const Nudge& nudge, int64_t max_steps, double tol) const {
  torch::NoGradGuard no_grad;
  if (use_binary_relaxation(kernel_, energy, batch, nudge))
    return binary_relaxation(energy, batch, st, nudge, max_steps, tol);
  if (use_fused_relaxation(kernel_, energy, batch, nudge)) return fused_relaxation(energy, batch, st, nudge, max_steps, tol);
  if (use_compact_relaxation(kernel_, batch, tol, max_steps))
    return compact_relaxation(energy, batch, st, nudge, max_steps, tol, SweepSchedule::Jacobi);
  const int64_t S = energy.num_states();
  const bool clamped = nudge.kind == Nudge::Kind::Clamp;
  if (clamped) {
    st.s[S - 1].copy_(batch.onehot);
    st.scratch[S - 1].copy_(batch.onehot);
  }
  SolveStats stats;
  for (int64_t t = 1; t <= max_steps; ++t) {
    const bool measure = tol > 0.0 || t == max_steps;
    SweepResidual r;  // the states' residuals, read once after the sweep
    // Top-down, so that layer k's switches (computed with the drive of s_{k+1}) are ready for s_k's feedback.
    for (int64_t k = S; k >= 1; --k) {
      if (clamped && k == S) continue;
      torch::Tensor& out = st.scratch[k - 1];
      energy.drive_into(batch, st, k, out);
      if (k == S) energy.add_nudge(batch, st, nudge, out);
      r.add(finish_state_residual_(energy, out, st.s[k - 1], k, measure));
    }
    stats.steps = t;
    if (measure) stats.residual = r.read();
    std::swap(st.s, st.scratch);
    st.forget_products();  // they were of the states before the sweep
    if (tol > 0.0 && stats.residual < tol) break;
  }
  energy.refresh_pools(st);
  return stats;
}

}  // namespace bilevel
