// What the relaxation cost, per example: the sweeps each example ran in a phase (a histogram), how many ran out of
// sweeps, and the multiply-adds of an EP step against a backprop step on the same network.
//
// Diagnostic columns of a phase P (free, nudged), each a per-batch value averaged over the epoch's batches:
//   P_sweeps                the mean sweeps per example;
//   P_at_limit              the fraction of examples whose last sweep still changed them (by ≥ tol, or at all
//                           with tol = 0): they stopped on the step limit, not at a fixed point;
//   P_sweeps_1_4, P_sweeps_5_8, P_sweeps_9_16, P_sweeps_17_32, P_sweeps_33_64, P_sweeps_65_up
//                           the histogram: the fraction of examples that ran that many sweeps.
//
// Multiply-adds per example, with M_l the forward multiply-adds of layer l (nn::layer_macs) and S the states:
//   backprop:  forward Σ_l M_l, input gradients Σ_{l≥1} M_l, weight gradients Σ_l M_l   = 3 Σ_l M_l − M_0
//   EP family: the input drive M_0 once; every sweep the drive from below and the feedback from above of each
//              coupling layer, 2 Σ_{1≤l<S} M_l, plus for a cross-entropy read-out in a nudged sweep its forward and
//              transpose, 2 M_r; the weight gradient of the phase difference, M_0 + 2 Σ_{l≥1} M_l (the input
//              layer's is one product on the difference of s_1); the read-out's, 2 M_r.
// The ratio of the two, with the measured mean sweeps, is the bound an implementation that is pure arithmetic
// would reach (column macs_ratio).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bilevel/energy/inner_solver.h"
#include "bilevel/energy/layered_energy.h"

namespace bilevel {

// The diagnostic column names of phase `phase` (see above).
std::vector<std::string> sweep_columns(const std::string& phase);

// Adds phase `phase`'s columns to `out` from one or more solves of the same phase over a batch of `batch`
// examples (e.g. the two nudged phases of symmetric EP), each run with at most max_steps sweeps at tolerance tol.
void add_sweep_diagnostics(const std::string& phase, const std::vector<const SolveStats*>& solves, int64_t batch,
                           int64_t max_steps, double tol, std::map<std::string, double>& out);

// The mean sweeps per example of the solves (row_steps where the path reports them, steps otherwise).
double mean_sweeps(const std::vector<const SolveStats*>& solves, int64_t batch);

// Multiply-adds per example of a backprop step on the energy's network.
double backprop_step_macs(const LayeredEnergy& energy);
// Multiply-adds per example of an EP-family step: free_sweeps mean sweeps in the free phase, then
// nudged_phases phases of nudged_sweeps mean sweeps each, and the weight gradient of one phase difference.
double ep_step_macs(const LayeredEnergy& energy, double free_sweeps, double nudged_sweeps, int64_t nudged_phases);

}  // namespace bilevel
