#include "bilevel/nn/objective.h"

#include "bilevel/registry.h"

#include <stdexcept>

namespace bilevel {
namespace {

torch::Tensor one_hot(const torch::Tensor& labels, int64_t classes, const torch::Tensor& like) {
  return torch::zeros({labels.size(0), classes}, like.options()).scatter_(1, labels.view({-1, 1}), 1.0);
}

class SquaredError final : public Objective {
 public:
  std::string name() const override { return "mse"; }
  torch::Tensor loss(const torch::Tensor& out, const torch::Tensor& y) const override {
    return 0.5 * (out - one_hot(y, out.size(1), out)).pow(2).sum(1);
  }
  torch::Tensor grad(const torch::Tensor& out, const torch::Tensor& y) const override {
    return out - one_hot(y, out.size(1), out);
  }
  bool activate_output() const override { return true; }
};

class CrossEntropy final : public Objective {
 public:
  std::string name() const override { return "cross_entropy"; }
  torch::Tensor loss(const torch::Tensor& out, const torch::Tensor& y) const override {
    return -torch::log_softmax(out, 1).gather(1, y.view({-1, 1})).squeeze(1);
  }
  torch::Tensor grad(const torch::Tensor& out, const torch::Tensor& y) const override {
    return torch::softmax(out, 1) - one_hot(y, out.size(1), out);
  }
  bool activate_output() const override { return false; }
};

}  // namespace

Registry<Objective>& objectives() {
  static Registry<Objective> registry("loss", [](Registry<Objective>& r) {
    r.add({"cross_entropy", "−log softmax(s_L)_y on the output logits", {}},
          [](const ExperimentConfig&) { return std::make_unique<CrossEntropy>(); });
    r.add({"mse", "½ ‖s_L − onehot(y)‖² on the output states", {}},
          [](const ExperimentConfig&) { return std::make_unique<SquaredError>(); });
  });
  return registry;
}

std::unique_ptr<Objective> make_objective(const std::string& name) {
  static const ExperimentConfig none;  // the built-in losses have no keys
  return objectives().get(name).make(none);
}

}  // namespace bilevel
