// The library's one-pass Adam (kernels/optim_ops.h: Kingma & Ba's update with torch's L2 weight decay, each
// element read and written once) on the caller's tensors, for bilevel.optim.Adam (python/bilevel/optim.py).
#include <torch/python.h>

#include "bilevel/kernels/adam_element.h"
#include "bilevel/kernels/optim_ops.h"
#include "bindings.h"

namespace bilevel::python {

void bind_optim(py::module_& m) {
  m.def(
      "adam_step_",
      [](torch::Tensor p, torch::Tensor exp_avg, torch::Tensor exp_avg_sq, const torch::Tensor& grad, double lr,
         double beta1, double beta2, double eps, double weight_decay, int64_t step) {
        const auto a = kernels::AdamElement::at(lr, beta1, beta2, eps, weight_decay, step);
        py::gil_scoped_release release;
        torch::NoGradGuard no_grad;
        torch::Tensor data = p.detach();
        kernels::adam_step_(data, exp_avg, exp_avg_sq, grad, a);
      },
      py::arg("param"), py::arg("exp_avg"), py::arg("exp_avg_sq"), py::arg("grad"), py::arg("lr"), py::arg("beta1"),
      py::arg("beta2"), py::arg("eps"), py::arg("weight_decay"), py::arg("step"),
      "One Adam step of a float32 contiguous tensor in one pass (param, exp_avg, exp_avg_sq change in place).");
}

}  // namespace bilevel::python
