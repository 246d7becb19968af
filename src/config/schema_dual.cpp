// Config keys of dual propagation (train.algorithm: dual_prop; see bilevel/rules/dual_prop.h). The nudging
// strength train.beta is shared with the EP family and declared in schema_energy.cpp; dual_prop's factory
// (src/rules/dual_prop.cpp) requires β > 0.
#include "bilevel/config/schema.h"

namespace bilevel {

void add_dual_keys(Schema& s) {
  using V = ValueType;
  {
    auto& k = s.key("train.alpha", V::Float, "0.5",
                  "dual_prop: weight α of the s⁺ compartment in s̄ = α s⁺ + (1 − α) s⁻ (0.5: the original "
                  "symmetric method; 0 or 1: asymmetric nudging, stable in the DP⊤ form used here)");
    k.min = 0, k.max = 1;
  }
  s.key("train.dp_inference", V::String, "closed_form",
      "dual_prop: closed_form (forward pass + one top-down sweep) or iterative (train.dp_iterations bottom-up "
      "passes of the layer-wise updates from the forward pass)")
      .choices = {"closed_form", "iterative"};
  s.key("train.dp_iterations", V::Int, "10",
      "dual_prop with dp_inference: iterative: number of passes N (N >= number of layers reaches the closed form "
      "exactly for alpha 0 or 1)")
      .min = 1;
}

}  // namespace bilevel
