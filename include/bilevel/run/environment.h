// What this binary was built with and runs on: library versions, compiler, BLAS, CUDA, machine.
// Printed by `bilevel env`, embedded in each run's meta.yaml, and compared with environment.yml pins.
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

// ---- environment.yml pins ----

// One entry of a conda `dependencies` list: "name=1.2.3", "name==1.2", "name 1.2", "name=1.2.*",
// "channel::name=1.2=build", or plain "name" (version empty = unpinned).
struct PackagePin {
  std::string name;     // lower case, channel prefix removed
  std::string version;  // exact pin without wildcard suffix; empty when unpinned; the constraint when range
  bool range = false;   // ">=1.2", "1.2|1.3", ...: shown but not compared
  std::string spec;     // as written
  int line = 0;         // 1-based line in the file; 0 when unknown
};

// Parses one conda spec. Throws UserError for text that is not a spec (no name, no version after '=').
PackagePin parse_conda_spec(const std::string& spec);

// True when `pinned` is a prefix of `actual` on component boundaries: "1.13" matches "1.13.1",
// "1.13.1" matches "1.13.1", "1.13.0" and "1.1" do not match "1.13.1". An empty pin matches anything.
bool version_matches(const std::string& pinned, const std::string& actual);

// Reads the `dependencies` of a conda environment file. pip sub-lists are ignored.
// Throws UserError naming the file (and the line, for YAML errors) when it is unreadable or malformed.
std::vector<PackagePin> read_environment_file(const std::string& path);

enum class PinStatus { kOk, kMismatch, kUnchecked, kSkipped };
const char* to_string(PinStatus status);

struct PinCheck {
  PackagePin pin;
  std::string found;  // measured version, or why there is none
  PinStatus status = PinStatus::kUnchecked;
};

// Compares each pin with the report. Packages this binary cannot measure are kUnchecked; CUDA packages on a
// CPU-only build are kSkipped.
std::vector<PinCheck> check_pins(const std::vector<PackagePin>& pins, const EnvReport& report);

// A table "package pinned found status", then one line per mismatch and a summary line.
std::string format_checks(const std::vector<PinCheck>& checks);

}  // namespace bilevel
