// A YAML tree as Python objects: mappings → dict, sequences → list, scalars → bool, int, float, None or str
// (in that order of trial, as YAML 1.2's core schema reads them).
#pragma once

#include <pybind11/pybind11.h>
#include <yaml-cpp/yaml.h>

namespace bilevel::python {

pybind11::object yaml_to_python(const YAML::Node& node);

}  // namespace bilevel::python
