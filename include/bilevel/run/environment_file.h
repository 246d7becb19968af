// environment.yml: a conda environment file's pins, checked against what this binary was built with and runs on
// (`bilevel env --check FILE`).
#pragma once

#include <string>
#include <vector>

#include "bilevel/run/environment.h"

namespace bilevel {

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
