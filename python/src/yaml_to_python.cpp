#include "yaml_to_python.h"

#include <cstdlib>
#include <string>

namespace bilevel::python {

namespace py = pybind11;

namespace {

py::object scalar(const YAML::Node& node) {
  const std::string& s = node.Scalar();
  if (node.Tag() == "!") return py::str(s);  // quoted: a string whatever it looks like
  if (s == "true" || s == "True" || s == "TRUE") return py::bool_(true);
  if (s == "false" || s == "False" || s == "FALSE") return py::bool_(false);
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return py::none();
  char* end = nullptr;
  const long long i = std::strtoll(s.c_str(), &end, 10);
  if (end && *end == '\0') return py::int_(i);
  const double d = std::strtod(s.c_str(), &end);
  if (end && *end == '\0') return py::float_(d);
  if (s == ".inf" || s == ".Inf" || s == "+.inf") return py::float_(HUGE_VAL);
  if (s == "-.inf" || s == "-.Inf") return py::float_(-HUGE_VAL);
  if (s == ".nan" || s == ".NaN") return py::float_(NAN);
  return py::str(s);
}

}  // namespace

py::object yaml_to_python(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      py::dict d;
      for (const auto& kv : node) d[py::str(kv.first.Scalar())] = yaml_to_python(kv.second);
      return std::move(d);
    }
    case YAML::NodeType::Sequence: {
      py::list l;
      for (const auto& v : node) l.append(yaml_to_python(v));
      return std::move(l);
    }
    case YAML::NodeType::Scalar: return scalar(node);
    default: return py::none();
  }
}

}  // namespace bilevel::python
