// Inner solvers: relax the states of a LayeredEnergy towards argmin_s E(s; θ, x) + nudge (the bilevel program's
// inner problem). Registered in inner_solvers() (bilevel/registry.h) with their keys: solver: {name: ..., KEY: ...}.
//
// Residual (reported and used for early stopping): the max-abs change of the states over one sweep,
//   r_t = max_{k, example, unit} |s_k^{(t)} − s_k^{(t−1)}|,
// an absolute criterion in the units of ρ's range (states of bounded ρ live in [0, 1] or [−1, 1]). With tol > 0
// a solve stops after the first sweep with r_t < tol; with tol = 0 it runs all its steps and measures r only at
// the last one (no per-step synchronisation).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "bilevel/energy/layered_energy.h"

namespace bilevel {

struct SolveStats {
  double residual = 0.0;  // r at the last sweep
  int64_t steps = 0;      // sweeps performed
  // Sweeps each example ran (int64 [B] on the CPU), where the path stops examples one by one (the fused and the
  // compact relaxations); undefined where the whole batch stops together (every example then ran `steps`).
  torch::Tensor row_steps;
  // Examples that ran out of sweeps: their last sweep still changed them by at least tol (tol > 0) or at all
  // (tol = 0). −1 where the path does not count them.
  int64_t at_limit = -1;
};

class InnerSolver {
 public:
  virtual ~InnerSolver() = default;
  virtual std::string name() const = 0;
  // Relaxes st (from its current states) for at most max_steps sweeps. On return st.pool holds the max-pool
  // switches at the returned states. Clamp nudges fix s_S = onehot(y) first.
  virtual SolveStats solve(const LayeredEnergy& energy, const EnergyBatch& batch, EnergyState& st,
                           const Nudge& nudge, int64_t max_steps, double tol) const = 0;
};

// The built-in solvers: "fixed_point" or "layerwise"; throws std::invalid_argument otherwise. `kernel`
// (solver.kernel: auto, fused or generic) applies to fixed_point; layerwise always runs on LibTorch operators.
// order: the layer-wise solver's sweep order (even_odd or top_down; layerwise_solver.h).
std::unique_ptr<InnerSolver> make_solver(const std::string& name, const std::string& kernel = "auto",
                                         const std::string& order = "even_odd");
// Every registered solver's name.
std::vector<std::string> solver_names();

// max |a − b| over all elements (a synchronising read).
double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b);

// A solver step's epilogue for state k: out (freshly driven, a·u_k + c plus any nudge) ← Q_k(h(out)) in place, then,
// when `measure`, returns max |out − old| (0 otherwise). On a GPU in a build with the CUDA kernels, where no
// quantizer acts on s_k and both tensors are contiguous, the activation and the residual are one launch of the fused kernel
// (kernels::state_update_); otherwise (and always on the CPU, where LibTorch's vectorised operators beat the
// kernel's scalar twin) Neuron::finish_, the quantizer and max_abs_diff.
double finish_state_(const LayeredEnergy& energy, torch::Tensor& out, const torch::Tensor& old, int64_t k,
                     bool measure);
// The same step with the residual not read: a 0-dimensional tensor on out's device when `measure`, undefined
// otherwise; the solvers gather a sweep's residuals in a SweepResidual (energy/sweep_residual.h) and read once.
torch::Tensor finish_state_residual_(const LayeredEnergy& energy, torch::Tensor& out, const torch::Tensor& old,
                                     int64_t k, bool measure);
// max |a − b| over all elements as a 0-dimensional tensor on a's device (not read).
torch::Tensor max_abs_diff_tensor(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace bilevel
