#include "bilevel/nn/activation.h"

#include <limits>
#include <map>
#include <stdexcept>

#include "bilevel/registry.h"

namespace bilevel {
namespace {

using torch::Tensor;
constexpr double kInf = std::numeric_limits<double>::infinity();

Tensor identity(const Tensor& x) { return x; }
Tensor identity_d(const Tensor& x) { return torch::ones_like(x); }
Tensor relu(const Tensor& x) { return torch::relu(x); }
Tensor relu_d(const Tensor& x) { return (x > 0).to(x.dtype()); }
Tensor tanh_f(const Tensor& x) { return torch::tanh(x); }
Tensor tanh_d(const Tensor& x) { return 1 - torch::tanh(x).pow(2); }
Tensor sigmoid(const Tensor& x) { return torch::sigmoid(x); }
Tensor sigmoid_d(const Tensor& x) {
  auto s = torch::sigmoid(x);
  return s * (1 - s);
}
// hard_sigmoid(x) = clip(x, 0, 1) (Scellier & Bengio 2017)
Tensor hard_sigmoid(const Tensor& x) { return torch::clamp(x, 0, 1); }
Tensor hard_sigmoid_d(const Tensor& x) { return ((x >= 0) & (x <= 1)).to(x.dtype()); }
// sigmoid4(x) = 1 / (1 + exp(-4 (x - 1/2))) (Ernoult et al. 2019; Laborieux et al. 2021)
Tensor sigmoid4(const Tensor& x) { return torch::sigmoid(4 * (x - 0.5)); }
Tensor sigmoid4_d(const Tensor& x) {
  auto s = torch::sigmoid(4 * (x - 0.5));
  return 4 * s * (1 - s);
}
Tensor hard_tanh(const Tensor& x) { return torch::clamp(x, -1, 1); }
Tensor hard_tanh_d(const Tensor& x) { return ((x >= -1) & (x <= 1)).to(x.dtype()); }
Tensor softplus(const Tensor& x) { return torch::softplus(x); }
Tensor softplus_d(const Tensor& x) { return torch::sigmoid(x); }
Tensor silu(const Tensor& x) { return x * torch::sigmoid(x); }
Tensor silu_d(const Tensor& x) {
  auto s = torch::sigmoid(x);
  return s * (1 + x * (1 - s));
}

// The built-ins, registered through the public add() on first use of activations().
void add_builtin_activations(Registry<Activation>& r) {
  const std::vector<std::pair<Activation, const char*>> builtins = {
      {{"identity", identity, identity_d, kInf, -kInf}, "x"},
      {{"relu", relu, relu_d, kInf, -kInf}, "max(x, 0)"},
      {{"tanh", tanh_f, tanh_d, -1, 1}, "tanh x"},
      {{"sigmoid", sigmoid, sigmoid_d, 0, 1}, "1 / (1 + e^−x)"},
      {{"hard_sigmoid", hard_sigmoid, hard_sigmoid_d, 0, 1}, "clip(x, 0, 1) (Scellier & Bengio 2017)"},
      {{"sigmoid4", sigmoid4, sigmoid4_d, 0, 1}, "sigmoid(4(x − ½)) (Ernoult et al. 2019)"},
      {{"hard_tanh", hard_tanh, hard_tanh_d, -1, 1}, "clip(x, −1, 1)"},
      {{"softplus", softplus, softplus_d, kInf, -kInf}, "log(1 + e^x)"},
      {{"silu", silu, silu_d, kInf, -kInf}, "x · sigmoid(x)"},
  };
  for (const auto& [a, help] : builtins)
    r.add({a.name, help, {}}, [a = a](const ExperimentConfig&) { return std::make_unique<Activation>(a); });
}

}  // namespace

Registry<Activation>& activations() {
  static Registry<Activation> registry("activation", add_builtin_activations);
  return registry;
}

const Activation& activation(const std::string& name) {
  // One instance per name, built on first use: the network keeps a pointer to it.
  static std::map<std::string, std::unique_ptr<Activation>> built;
  auto it = built.find(name);
  if (it != built.end()) return *it->second;
  static const ExperimentConfig none;  // activations have no keys
  return *built.emplace(name, activations().get(name).make(none)).first->second;
}

std::vector<std::string> activation_names() { return activations().names(); }

}  // namespace bilevel
