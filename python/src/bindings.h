// The bilevel._C extension module (python/bilevel/ wraps it): one bind_* function per part, module.cpp calls them.
#pragma once

#include <pybind11/pybind11.h>

namespace bilevel::python {

namespace py = pybind11;

// bilevel.UserError (ValueError), ConfigError and DataError under it, IoError (OSError): the library's error
// classes as Python exceptions carrying the same messages (errors.cpp).
void bind_errors(py::module_& m);
// Runs: train, resume, eval, a config's resolved text, and RunModel (a run's network and rule) (runs.cpp).
void bind_runs(py::module_& m);
// Estimator: a learning rule's gradient estimate and prediction on a user's own tensors (estimator.cpp).
void bind_estimator(py::module_& m);
// The quantizers' solvers, forward and backward, on a user's tensors (quant.cpp).
void bind_quant(py::module_& m);
// The library's one-pass Adam step (optim.cpp).
void bind_optim(py::module_& m);

}  // namespace bilevel::python
