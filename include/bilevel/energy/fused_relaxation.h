// The fixed-point solver's fused path: the whole synchronous relaxation of fully connected layered energies in one
// kernel call per block of examples on the CPU (bilevel/kernels/cpu/dense_relax.h, split over LibTorch's threads)
// and, in builds with CUDA kernels, in one persistent kernel launch per phase on the GPU (one block per example,
// src/kernels/cuda/dense_relax.cu, bilevel/kernels/dense_relax_args.h; not yet run on a GPU).
//
// Same dynamics as FixedPointSolver's LibTorch path (see fixed_point_solver.h), with one difference under early
// stopping: tol applies per example (an example stops after its first sweep with max-abs change < tol), where the
// LibTorch path stops the whole batch once every example is below tol. The reported residual and steps are the
// maxima over examples. Without tol, an example stops once a sweep leaves its states bit-for-bit unchanged (an
// exact fixed point: the remaining sweeps could not change them), so the states and the residual are those of all
// max_steps sweeps while the reported steps can be fewer.
#pragma once

#include <string>

#include "bilevel/energy/inner_solver.h"
#include "bilevel/energy/layered_energy.h"
#include "bilevel/kernels/cpu/dense_relax.h"

namespace bilevel {

// solver.kernel: `fused` takes the fused kernel wherever it applies (float32, fully connected states, CPU or a GPU
// in a CUDA build); `compact` the compact relaxation (compact_relaxation.h: per-example stop, products over the
// examples still relaxing, any network); `generic` LibTorch operators on the whole batch, which stops together;
// `auto` the one expected to be fastest: fused for small coupling weights (up to kAutoCouplingLimit floats above
// the input layer, e.g. 784-512-10), where a row's states and weights stay in cache; otherwise compact where
// examples can stop early — tol > 0, or more than kCompactMinSteps sweeps (from a feedforward start the deep
// networks of docs/results/ep-depth.md need about 17 layer-wise sweeps to reach float32 precision, so shorter
// phases end on their limit, and compact's per-sweep bookkeeping, about 7% of a sweep, buys nothing) — and the
// whole-batch path else, and always on a GPU with tol = 0 (no host synchronisation inside a phase).
enum class RelaxKernel { Auto, Fused, Compact, Generic };
RelaxKernel relax_kernel_from_name(const std::string& name);  // throws std::invalid_argument

// Whether the fused path can relax this energy and batch at all (not whether it is faster).
bool fused_relaxation_supported(const LayeredEnergy& energy, const EnergyBatch& batch, const Nudge& nudge);
// Whether `choice` selects the fused path for this problem.
bool use_fused_relaxation(RelaxKernel choice, const LayeredEnergy& energy, const EnergyBatch& batch,
                          const Nudge& nudge);
// Whether `choice`, when the fused path is not taken, selects the compact relaxation over the whole-batch one
// for a phase of at most max_steps sweeps.
constexpr int64_t kCompactMinSteps = 16;
bool use_compact_relaxation(RelaxKernel choice, const EnergyBatch& batch, double tol, int64_t max_steps);

// The CPU kernels' element-wise h for this neuron (and its clamp bounds); std::logic_error for one they lack.
cpu::Act relax_activation(const Neuron& n, float& lo, float& hi);

// Relaxes st (from its current states); requires fused_relaxation_supported(). Clamp nudges fix s_S first.
SolveStats fused_relaxation(const LayeredEnergy& energy, const EnergyBatch& batch, EnergyState& st,
                            const Nudge& nudge, int64_t max_steps, double tol);

}  // namespace bilevel
