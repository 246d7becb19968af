// What this binary was built with and runs on: library versions, compiler, BLAS, CUDA, machine.
// Printed by `bilevel env`, embedded in each run's meta.yaml, and compared with environment.yml pins
// (run/environment_file.h).
#pragma once

#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace bilevel {

struct EnvEntry {
  std::string name;   // snake_case, usable as a YAML key
  std::string value;
};

struct EnvReport {
  std::vector<EnvEntry> entries;      // in a fixed, readable order
  std::vector<std::string> warnings;  // problems worth fixing (e.g. reference BLAS)

  // The value of entry `name`, or "" when there is none.
  std::string get(const std::string& name) const;
  bool has(const std::string& name) const;
};

// Gathers the report. Runs a tiny matrix product first so a lazily loaded BLAS shows up.
EnvReport collect_environment();

// The report as a YAML map (entries in order, then `warnings` as a sequence when there are any).
YAML::Node environment_yaml(const EnvReport& report);

// Aligned "name: value" lines (values quoted where YAML needs it), then the warnings.
std::string format_report(const EnvReport& report);

}  // namespace bilevel
