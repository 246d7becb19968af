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

namespace bilevel {

// solver.kernel: `auto` takes the fused path where it applies and is expected to be faster (float32 on the CPU or
// on a GPU in a CUDA build, fully connected states, coupling weights above the input layer small enough to stay in cache: up to 32 Ki
// floats, e.g. 784-512-10); `fused` takes it wherever it applies; `generic` never.
enum class RelaxKernel { Auto, Fused, Generic };
RelaxKernel relax_kernel_from_name(const std::string& name);  // throws std::invalid_argument

// Whether the fused path can relax this energy and batch at all (not whether it is faster).
bool fused_relaxation_supported(const LayeredEnergy& energy, const EnergyBatch& batch, const Nudge& nudge);
// Whether `choice` selects the fused path for this problem.
bool use_fused_relaxation(RelaxKernel choice, const LayeredEnergy& energy, const EnergyBatch& batch,
                          const Nudge& nudge);

// Relaxes st (from its current states); requires fused_relaxation_supported(). Clamp nudges fix s_S first.
SolveStats fused_relaxation(const LayeredEnergy& energy, const EnergyBatch& batch, EnergyState& st,
                            const Nudge& nudge, int64_t max_steps, double tol);

}  // namespace bilevel
