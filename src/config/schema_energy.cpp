// Config keys of the energy-based family (ep, ep_symmetric, chl, bptt, implicit): the nudging strength and the
// inner solvers. Cross-key conditions (β ≠ 0 for ep, a monotone activation, mse for chl) are checked by the
// rule factories in src/rules/ep_family_registry.cpp.
#include "bilevel/config/schema.h"

namespace bilevel {

void add_energy_keys(Schema& s) {
  using V = ValueType;
  s.key("train.beta", V::Float, "0.1",
      "ep/ep_symmetric: nudging strength β of the nudged phase (ep: its sign is used unless train.random_sign; "
      "ep_symmetric uses ±|β|; must be nonzero)");
  s.key("train.random_sign", V::Bool, "false",
      "ep: draw β's sign per batch from a hash of (seed, the batch's labels), so resuming reproduces it");
  s.key("solver.name", V::String, "fixed_point",
      "Inner solver of energy-based rules: synchronous fixed-point dynamics, or layer-wise exact minimisation "
      "(even layers, then odd)")
      .choices = {"fixed_point", "layerwise"};
  s.key("solver.kernel", V::String, "auto",
      "fixed_point on the CPU: fused = relax fully connected float32 networks in one fused kernel per block of "
      "examples (same dynamics; tol then applies per example), generic = LibTorch operators, auto = fused where "
      "it applies and the weights above the input layer fit in cache")
      .choices = {"auto", "fused", "generic"};
  s.key("solver.free_steps", V::Int, "30", "Sweeps of the free phase (T); also the BPTT unroll length").min = 1;
  s.key("solver.nudged_steps", V::Int, "10", "Sweeps of each nudged/clamped phase (K), started from the free state")
      .min = 1;
  s.key("solver.tol", V::Float, "0.0",
      "Stop a phase early when the max-abs change of the states over a sweep is below this (0 = never)")
      .min = 0;
  s.key("solver.implicit_method", V::String, "minres",
      "implicit: how to solve (I − ∂F/∂s)ᵀ v = ∂ℓ/∂s at the fixed point (cg needs it positive definite)")
      .choices = {"minres", "cg", "fixed_point"};
  s.key("solver.implicit_steps", V::Int, "100", "implicit: maximum iterations of the linear solve").min = 1;
  s.key("solver.implicit_tol", V::Float, "1e-8", "implicit: relative tolerance of the linear solve").min = 0;
}

}  // namespace bilevel
