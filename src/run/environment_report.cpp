// The environment report as YAML and as aligned text (bilevel/run/environment.h).
#include "bilevel/run/environment.h"

#include <algorithm>
#include <sstream>

#include "bilevel/util/text.h"

namespace bilevel {

YAML::Node environment_yaml(const EnvReport& report) {
  YAML::Node node(YAML::NodeType::Map);
  for (const auto& e : report.entries) node[e.name] = e.value;
  if (!report.warnings.empty()) {
    YAML::Node w(YAML::NodeType::Sequence);
    for (const auto& s : report.warnings) w.push_back(s);
    node["warnings"] = w;
  }
  return node;
}

namespace {

// A scalar as YAML would write it: quoted only when plain text would be misread (": ", " #", leading '*', ...).
std::string yaml_scalar(const std::string& value) {
  YAML::Emitter out;
  out << value;
  return out.c_str();
}

}  // namespace

std::string format_report(const EnvReport& report) {
  size_t w = 0;
  for (const auto& e : report.entries) w = std::max(w, e.name.size() + 1);
  std::ostringstream out;
  for (const auto& e : report.entries) out << text::pad(e.name + ":", w) << " " << yaml_scalar(e.value) << "\n";
  if (!report.warnings.empty()) {
    out << "warnings:\n";
    for (const auto& s : report.warnings) out << "  - " << yaml_scalar("WARNING: " + s) << "\n";
  }
  return out.str();
}

}  // namespace bilevel
