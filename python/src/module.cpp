// bilevel._C: the library's runs, models and estimators for Python. Tensors cross as the same LibTorch objects
// PyTorch uses (torch/python.h's casters), so nothing is copied.
#include <torch/python.h>

#include "bilevel/run/build_info.h"
#include "bindings.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "bilevel's C++ library (use the bilevel package, which wraps this module)";
  bilevel::python::bind_errors(m);
  bilevel::python::bind_runs(m);
  bilevel::python::bind_estimator(m);
  bilevel::python::bind_quant(m);
  bilevel::python::bind_optim(m);
}
