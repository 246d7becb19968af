// Where a yaml-cpp node stands in its file, as a Location for error messages (1-based line and column).
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>

#include "bilevel/util/error.h"

namespace bilevel {

Location yaml_location(const YAML::Node& node, const std::string& file);

}  // namespace bilevel
