// Activation functions ρ by name, with their derivatives ρ' in closed form (energy-based rules need both
// without autograd).
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

namespace bilevel {

struct Activation {
  std::string name;
  torch::Tensor (*f)(const torch::Tensor&);
  torch::Tensor (*df)(const torch::Tensor&);  // derivative at the pre-activation
  // A closed interval the activation maps into, when it is bounded (lo <= hi), used by solvers that clip.
  double lo, hi;
  bool bounded() const { return lo <= hi; }
};

// Looks up an activation; throws std::invalid_argument for an unknown name.
const Activation& activation(const std::string& name);
std::vector<std::string> activation_names();

}  // namespace bilevel
