// The quantizers and their solvers (bilevel/quant/weight_solver.h) on a caller's tensors: the latent θ and the
// grid's scale are the caller's (torch.nn.Parameter, say); forward gives w(θ) and backward turns ∂ℓ/∂w into
// ∂ℓ/∂θ (and ∂ℓ/∂s) exactly as the solver does inside `bilevel train`. python/bilevel/quant.py wraps the pair as
// a torch.autograd.Function. The flip rule has no latent: step() changes w itself from the gradient's moving
// average.
#include <torch/python.h>

#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/quant/quantizer.h"
#include "bilevel/quant/weight_solver.h"
#include "bindings.h"

namespace bilevel::python {

namespace {

QuantClock clock_of(const py::dict& d) {
  QuantClock c;
  if (d.contains("epoch")) c.epoch = d["epoch"].cast<int64_t>();
  if (d.contains("batch")) c.batch = d["batch"].cast<int64_t>();
  if (d.contains("batches")) c.batches = d["batches"].cast<int64_t>();
  if (d.contains("epochs")) c.epochs = d["epochs"].cast<int64_t>();
  if (d.contains("lr")) c.lr = d["lr"].cast<double>();
  if (d.contains("seed")) c.seed = d["seed"].cast<uint64_t>();
  return c;
}

class WeightQuant {
 public:
  // `overrides`: quantization.* keys (quantization.weights.quantizer, .bits, .solver, .granularity, the solver's
  // own keys), validated as in a config.
  explicit WeightQuant(std::vector<std::string> overrides) {
    overrides.insert(overrides.begin(), "quantization.enabled=true");
    cfg_ = load_config_text("{}\n", "<python>", overrides);
    QuantizerOptions o;
    o.kind = cfg_.get<std::string>("quantization.weights.quantizer");
    o.bits = int(cfg_.get<int64_t>("quantization.weights.bits"));
    o.symmetric = cfg_.get<bool>("quantization.weights.symmetric");
    o.per_channel = cfg_.get<std::string>("quantization.weights.granularity") == "per_channel";
    try {
      quantizer_ = make_quantizer(o);
    } catch (const std::invalid_argument& e) {
      cfg_.fail("quantization.weights.quantizer", e.what());
    }
    solver_ = make_weight_solver(cfg_.get<std::string>("quantization.weights.solver"), cfg_,
                                 "quantization.weights.solver");
  }

  // The solver's start from initial weights w0: (θ, or flip's codes ±1; w; scale; zero point; flip's momentum).
  py::tuple init(const torch::Tensor& w0) const {
    QuantParam p;
    p.weight = w0.detach().clone();
    solver_->init(p, *quantizer_);
    torch::NoGradGuard no_grad;
    if (solver_->uses_latent()) p.weight.copy_(solver_->forward(p, *quantizer_, QuantClock{}, nullptr));
    auto opt = [](const torch::Tensor& t) { return t.defined() ? py::cast(t) : py::none(); };
    return py::make_tuple(opt(p.latent), p.weight, p.grid.scale, opt(p.grid.zero), opt(p.momentum));
  }

  torch::Tensor forward(const torch::Tensor& theta, const torch::Tensor& scale, const std::optional<torch::Tensor>& zero,
                        const py::dict& clock) const {
    QuantParam p = param(theta, scale, zero);
    const QuantClock c = clock_of(clock);
    py::gil_scoped_release release;
    torch::NoGradGuard no_grad;
    return solver_->forward(p, *quantizer_, c, nullptr);
  }

  // (∂ℓ/∂θ, ∂ℓ/∂s or None) from g = ∂ℓ/∂w at the weights w forward gave.
  py::tuple backward(const torch::Tensor& theta, const torch::Tensor& scale, const std::optional<torch::Tensor>& zero,
                     const torch::Tensor& w, const torch::Tensor& g, bool learn_scale, const py::dict& clock) const {
    QuantParam p = param(theta, scale, zero);
    p.weight = w.detach();
    p.learn_scale = learn_scale;
    const QuantClock c = clock_of(clock);
    torch::Tensor gs;
    {
      py::gil_scoped_release release;
      torch::NoGradGuard no_grad;
      solver_->backward(p, *quantizer_, g.contiguous(), c);
      if (learn_scale)
        gs = solver_->writes_scale_grad() ? p.grid.scale.grad()
                                          : WeightSolver::scale_grad(g, p.weight, p.grid.scale);
    }
    return py::make_tuple(p.latent.grad(), gs.defined() ? py::cast(gs) : py::none());
  }

  // The flip rule: m ← (1 − γ)m + γg, then the code q = ±1 flips where m·q > τ; codes and m change in place.
  void flip_step(const torch::Tensor& codes, const torch::Tensor& scale, const torch::Tensor& momentum,
                 const torch::Tensor& g, const py::dict& clock) const {
    if (solver_->uses_latent())
      throw py::value_error("flip_step: solver '" + solver_->name() + "' has a latent; use forward/backward");
    QuantParam p;
    p.latent = codes.detach();
    p.grid.scale = scale.detach();
    p.momentum = momentum.detach();
    const QuantClock c = clock_of(clock);
    py::gil_scoped_release release;
    torch::NoGradGuard no_grad;
    solver_->backward(p, *quantizer_, g.contiguous(), c);
  }

  std::string solver() const { return solver_->name(); }
  bool uses_latent() const { return solver_->uses_latent(); }
  double schedule(const py::dict& clock) const { return solver_->schedule(clock_of(clock)); }

 private:
  static QuantParam param(const torch::Tensor& theta, const torch::Tensor& scale,
                          const std::optional<torch::Tensor>& zero) {
    QuantParam p;
    p.latent = theta.detach();  // shares θ's storage; its .grad is the solver's own
    p.grid.scale = scale.detach();
    if (zero) p.grid.zero = zero->detach();
    return p;
  }
  ExperimentConfig cfg_;
  std::unique_ptr<Quantizer> quantizer_;
  std::unique_ptr<WeightSolver> solver_;
};

}  // namespace

void bind_quant(py::module_& m) {
  py::class_<WeightQuant>(m, "WeightQuant")
      .def(py::init<std::vector<std::string>>(), py::arg("overrides"))
      .def("init", &WeightQuant::init)
      .def("forward", &WeightQuant::forward, py::arg("theta"), py::arg("scale"), py::arg("zero"), py::arg("clock"))
      .def("backward", &WeightQuant::backward, py::arg("theta"), py::arg("scale"), py::arg("zero"), py::arg("w"),
           py::arg("g"), py::arg("learn_scale"), py::arg("clock"))
      .def("flip_step", &WeightQuant::flip_step)
      .def("schedule", &WeightQuant::schedule)
      .def_property_readonly("solver", &WeightQuant::solver)
      .def_property_readonly("uses_latent", &WeightQuant::uses_latent);
}

}  // namespace bilevel::python
