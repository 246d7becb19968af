// Estimator: a learning rule of the library (ep, ep_symmetric, chl, implicit, bptt, dual_prop, backprop) applied
// to a fully connected network whose weights and biases the caller owns (torch.nn.Linear layers, say).
//
// The rule runs on a LayeredNet whose parameters are the caller's tensors: bind() points each parameter at the
// caller's storage (Tensor::set_data, a shallow copy of the tensor's metadata; the data is shared), and step()
// hands the caller's .grad buffers to the rule, which accumulates its estimate into them in place, as autograd's
// backward() does. Nothing is copied, so a step costs what it costs inside `bilevel train`; the step runs with
// the library's one-pool threading (util/threads.h: OpenBLAS on one thread, LibTorch's pool for the rest), which
// is restored to the session's afterwards.
#include <torch/python.h>

#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/nn/layered_net.h"
#include "bilevel/rules/energy_rule.h"
#include "bilevel/rules/learning_rule.h"
#include "bilevel/util/threads.h"
#include "bindings.h"
#include "runtime_guard.h"
#include "share_storage.h"
#include "yaml_to_python.h"

namespace bilevel::python {

namespace {

std::string list_text(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "]";
}

class Estimator {
 public:
  // `config`: a config file whose rule, solver, activation and loss are used (empty: the defaults), with
  // `overrides` on top; `widths`: the layer widths from the input to the output, e.g. {784, 512, 10}.
  Estimator(const std::string& config, std::vector<std::string> overrides, const std::vector<int64_t>& widths) {
    if (widths.size() < 2) throw py::value_error("Estimator: need at least an input and an output width");
    overrides.push_back("model.kind=mlp");
    overrides.push_back("model.hidden=" + list_text(std::vector<int64_t>(widths.begin() + 1, widths.end() - 1)));
    cfg_ = config.empty() ? load_config_text("{}\n", "<python>", overrides) : load_config(config, overrides);
    RuntimeGuard guard;  // the network's own tensors are float32, whatever torch's default dtype
    rule_ = make_rule(cfg_);
    net_ = LayeredNet(cfg_.model, std::vector<int64_t>{widths.front()}, widths.back(),
                      rule_->objective().activate_output());
    if (cfg_.get<bool>("quantization.enabled"))
      throw UserError("Estimator: quantization.enabled is not supported here; quantize weights with bilevel.quant");
  }

  // Points the network at the caller's tensors: weights[l] [out, in], biases[l] [out], l from the input side.
  void bind(const std::vector<torch::Tensor>& weights, const std::vector<torch::Tensor>& biases) {
    const size_t L = net_->num_layers();
    if (weights.size() != L || biases.size() != L)
      throw py::value_error("Estimator: expected " + std::to_string(L) + " weights and biases, got " +
                            std::to_string(weights.size()) + " and " + std::to_string(biases.size()));
    for (size_t l = 0; l < L; ++l) {
      const Layer& layer = net_->layer(l);
      if (!weights[l].sizes().equals(layer.weight.sizes()) || !biases[l].sizes().equals(layer.bias.sizes()))
        throw py::value_error("Estimator: layer " + std::to_string(l + 1) + " expects weight " +
                              shape(layer.weight) + " and bias " + shape(layer.bias) + ", got " +
                              shape(weights[l]) + " and " + shape(biases[l]));
      share_storage(layer.weight, weights[l]);
      share_storage(layer.bias, biases[l]);
    }
  }

  // The rule's estimate of the batch-mean gradient, added into each tensor's .grad (created when None).
  py::dict step(const std::vector<torch::Tensor>& weights, const std::vector<torch::Tensor>& biases,
                const torch::Tensor& x, const torch::Tensor& y, int64_t epoch, int64_t batch) {
    bind(weights, biases);
    StepStats stats;
    {
      py::gil_scoped_release release;
      ScopedBlasThreads one_pool;
      // The caller's .grad buffers become the network's: the rule adds into them in place.
      for (size_t l = 0; l < weights.size(); ++l) {
        net_->layer(l).weight.mutable_grad() = weights[l].grad();
        net_->layer(l).bias.mutable_grad() = biases[l].grad();
      }
      rule_->begin_batch(cfg_.seed, epoch, batch);
      stats = rule_->train_step(net_, x, y);
      for (size_t l = 0; l < weights.size(); ++l) {
        give_grad(net_->layer(l).weight, weights[l]);
        give_grad(net_->layer(l).bias, biases[l]);
      }
      stats.resolve();
    }
    py::dict d;
    d["loss"] = stats.loss_sum / double(x.size(0));
    d["correct"] = stats.correct;
    const auto columns = rule_->diagnostic_columns();
    for (const auto& c : columns)
      if (stats.diagnostics.count(c)) d[py::str(c)] = stats.diagnostics.at(c);
    return d;
  }

  torch::Tensor predict(const std::vector<torch::Tensor>& weights, const std::vector<torch::Tensor>& biases,
                        const torch::Tensor& x) {
    bind(weights, biases);
    py::gil_scoped_release release;
    ScopedBlasThreads one_pool;
    torch::NoGradGuard no_grad;
    return rule_->predict(net_, x);
  }

  // The free equilibrium s_1..s_S of an energy-based rule for x (y is used by rules whose free phase sees it).
  std::vector<torch::Tensor> relax(const std::vector<torch::Tensor>& weights, const std::vector<torch::Tensor>& biases,
                                   const torch::Tensor& x, const std::optional<torch::Tensor>& y) {
    auto* energy = dynamic_cast<EnergyRule*>(rule_.get());
    if (!energy) throw py::value_error("relax: rule '" + rule_->name() + "' has no energy to relax");
    bind(weights, biases);
    py::gil_scoped_release release;
    ScopedBlasThreads one_pool;
    torch::NoGradGuard no_grad;
    const EnergyState& st = energy->relax_free(net_, x, y ? *y : torch::Tensor());
    std::vector<torch::Tensor> out;
    for (int64_t k = 0; k < int64_t(st.s.size()); ++k) out.push_back(st.s[k].narrow(0, 0, x.size(0)).clone());
    return out;
  }

  std::string rule() const { return rule_->name(); }
  py::object config() const { return yaml_to_python(cfg_.tree); }
  // Whether the network's outputs are states (mse) rather than logits (cross_entropy).
  bool outputs_states() const { return rule_->objective().activate_output(); }

 private:
  static std::string shape(const torch::Tensor& t) {
    std::string s = "[";
    for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
    return s + "]";
  }
  static void give_grad(const torch::Tensor& param, const torch::Tensor& t) {
    if (!t.grad().is_same(param.grad())) const_cast<torch::Tensor&>(t).mutable_grad() = param.grad();
  }

  ExperimentConfig cfg_;
  std::unique_ptr<LearningRule> rule_;
  LayeredNet net_{nullptr};
};

}  // namespace

void bind_estimator(py::module_& m) {
  py::class_<Estimator>(m, "Estimator")
      .def(py::init<const std::string&, std::vector<std::string>, const std::vector<int64_t>&>(), py::arg("config"),
           py::arg("overrides"), py::arg("widths"))
      .def("bind", &Estimator::bind)
      .def("step", &Estimator::step, py::arg("weights"), py::arg("biases"), py::arg("x"), py::arg("y"),
           py::arg("epoch") = 0, py::arg("batch") = 0)
      .def("predict", &Estimator::predict)
      .def("relax", &Estimator::relax, py::arg("weights"), py::arg("biases"), py::arg("x"),
           py::arg("y") = py::none())
      .def_property_readonly("rule", &Estimator::rule)
      .def_property_readonly("config", &Estimator::config)
      .def_property_readonly("outputs_states", &Estimator::outputs_states);
}

}  // namespace bilevel::python
