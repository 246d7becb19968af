// environment.yml: conda pins read, compared with the environment report, and tabulated
// (bilevel/run/environment_file.h).
#include "bilevel/run/environment_file.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <regex>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "bilevel/util/error.h"
#include "bilevel/util/text.h"

namespace bilevel {

using text::lower;
using text::pad;
using text::trim;
using text::width;

PackagePin parse_conda_spec(const std::string& spec) {
  PackagePin pin;
  pin.spec = spec;
  std::string s = trim(spec);
  const auto channel = s.find("::");
  if (channel != std::string::npos) s = s.substr(channel + 2);
  size_t i = 0;
  while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_' || s[i] == '-' || s[i] == '.'))
    ++i;
  pin.name = lower(s.substr(0, i));
  if (pin.name.empty()) throw UserError("'" + spec + "' is not a conda package spec (no package name)");
  std::string rest = s.substr(i);
  const bool spaced = !rest.empty() && std::isspace(static_cast<unsigned char>(rest[0]));
  rest = trim(rest);
  if (rest.empty()) return pin;  // unpinned
  std::string version;
  if (rest.compare(0, 2, "==") == 0) {
    version = rest.substr(2);
  } else if (rest[0] == '=') {
    version = rest.substr(1);
  } else if (spaced && (std::isdigit(static_cast<unsigned char>(rest[0])))) {
    version = rest;
  } else if (std::strchr("<>!~", rest[0])) {
    pin.range = true;
    pin.version = rest;
    return pin;
  } else {
    throw UserError("'" + spec + "' is not a conda package spec (expected name=VERSION)");
  }
  // Drop the build string ("=h1234_0" or " h1234_0") after the version.
  version = trim(version);
  version = version.substr(0, version.find_first_of("= \t"));
  if (version.find_first_of("<>!~,|") != std::string::npos) {
    pin.range = true;
    pin.version = rest;
    return pin;
  }
  // "1.13.*" and "1.13*" are prefix pins, which is how every pin is compared anyway; "*" alone pins nothing.
  if (version == "*") return pin;
  while (!version.empty() && (version.back() == '*' || version.back() == '.')) version.pop_back();
  if (version.empty() || !std::isdigit(static_cast<unsigned char>(version[0])))
    throw UserError("'" + spec + "' has no version after the package name");
  for (char c : version)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '+' && c != '-')
      throw UserError("'" + spec + "' has an invalid version '" + version + "'");
  pin.version = version;
  return pin;
}

bool version_matches(const std::string& pinned, const std::string& actual) {
  if (pinned.empty()) return true;
  // Compare the dotted numeric core only: "1.13.1+dfsg" and "2.1.0a0" count as 1.13.1 and 2.1.0.
  auto split = [](const std::string& v, bool core_only) {
    std::vector<std::string> parts;
    std::string cur;
    for (char c : v) {
      if (c == '.') {
        parts.push_back(cur);
        cur.clear();
      } else if (core_only && !std::isdigit(static_cast<unsigned char>(c))) {
        break;
      } else {
        cur += c;
      }
    }
    parts.push_back(cur);
    return parts;
  };
  const auto want = split(pinned, false);
  const auto have = split(actual, true);
  if (want.size() > have.size()) return false;
  for (size_t k = 0; k < want.size(); ++k) {
    const std::string& a = want[k];
    const std::string& b = have[k];
    const bool numeric = !a.empty() && !b.empty() && std::all_of(a.begin(), a.end(), ::isdigit) &&
                         std::all_of(b.begin(), b.end(), ::isdigit);
    if (numeric ? std::stoull(a) != std::stoull(b) : a != b) return false;
  }
  return true;
}

std::vector<PackagePin> read_environment_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UserError(path + ": cannot read environment file: " + std::strerror(errno));
  std::stringstream buf;
  buf << in.rdbuf();
  YAML::Node root;
  try {
    root = YAML::Load(buf.str());
  } catch (const YAML::Exception& e) {
    throw UserError(path + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                    ": invalid YAML: " + e.msg);
  }
  auto where = [&](const YAML::Node& n) {
    const auto m = n.Mark();
    return m.is_null() ? path : path + ":" + std::to_string(m.line + 1);
  };
  if (!root.IsMap())
    throw UserError(where(root) + ": not a conda environment file (expected a map with 'dependencies')");
  const YAML::Node deps = root["dependencies"];
  if (!deps) throw UserError(path + ": no 'dependencies' list");
  if (!deps.IsSequence()) throw UserError(where(deps) + ": 'dependencies' must be a list");
  std::vector<PackagePin> pins;
  for (const auto& item : deps) {
    if (item.IsMap() && item["pip"]) continue;  // pip packages are not ours to measure
    if (!item.IsScalar()) throw UserError(where(item) + ": a dependency must be a package spec like 'name=1.2.3'");
    try {
      PackagePin pin = parse_conda_spec(item.Scalar());
      pin.line = item.Mark().is_null() ? 0 : item.Mark().line + 1;
      pins.push_back(pin);
    } catch (const UserError& e) {
      throw UserError(where(item) + ": " + e.what());
    }
  }
  return pins;
}

const char* to_string(PinStatus status) {
  switch (status) {
    case PinStatus::kOk: return "ok";
    case PinStatus::kMismatch: return "MISMATCH";
    case PinStatus::kUnchecked: return "unchecked";
    case PinStatus::kSkipped: return "skipped";
  }
  return "?";
}

namespace {

// What the report says about a conda package.
struct Measured {
  enum Kind { kVersion, kUnknown, kSkipped, kAbsent } kind;
  std::string text;  // the version, or why there is none
};

Measured measure(const std::string& name, const EnvReport& r) {
  auto value = [&](const char* key) -> Measured {
    const std::string v = r.get(key);
    if (v.empty() || v == "unknown") return {Measured::kUnknown, "not recorded"};
    return {Measured::kVersion, v};
  };
  static const std::map<std::string, const char*> plain = {
      {"libtorch", "libtorch"}, {"pytorch", "libtorch"}, {"pytorch-cpu", "libtorch"}, {"pytorch-gpu", "libtorch"},
      {"eigen", "eigen"},       {"eigen3", "eigen"},     {"yaml-cpp", "yaml_cpp"},   {"spdlog", "spdlog"},
      {"fmt", "fmt"},           {"gtest", "gtest"},      {"gmock", "gtest"},         {"googletest", "gtest"},
      {"cmake", "cmake"},       {"zlib", "zlib"},        {"libzlib", "zlib"}};
  if (auto it = plain.find(name); it != plain.end()) return value(it->second);

  // Compilers: the conda package names the family; the report says which one built us.
  static const std::set<std::string> gnu = {"gxx", "gcc", "gxx_linux-64", "gcc_linux-64", "gxx_impl_linux-64",
                                            "gcc_impl_linux-64", "gxx_linux-aarch64", "gcc_linux-aarch64"};
  static const std::set<std::string> clang = {"clang", "clangxx", "clang_linux-64", "clangxx_linux-64"};
  if (gnu.count(name) || clang.count(name)) {
    const std::string id = r.get("compiler").substr(0, r.get("compiler").find(' '));
    const std::string want = gnu.count(name) ? "GNU" : "Clang";
    if (id != want) return {Measured::kAbsent, "built with " + (id.empty() ? "unknown" : r.get("compiler"))};
    return value("compiler_version");
  }

  if (name == "openblas" || name == "libopenblas") {
    const std::string blas = r.get("blas");
    if (blas.rfind("OpenBLAS", 0) != 0) return {Measured::kAbsent, "not used by LibTorch (BLAS: " + blas + ")"};
    return value("blas_version");
  }

  static const std::set<std::string> cuda_names = {"cuda-toolkit", "cudatoolkit", "cuda-version", "cuda-nvcc",
                                                   "cuda", "cuda-runtime", "cuda-cudart", "cuda-libraries-dev"};
  auto known = [&](const char* key) { const std::string v = r.get(key); return !v.empty() && v != "none"; };
  const bool cuda_build = known("cuda_toolkit") || known("cuda_runtime");
  if (cuda_names.count(name) || name == "cudnn") {
    if (!cuda_build) return {Measured::kSkipped, "not built with CUDA"};
    if (name == "cudnn") return known("cudnn") ? value("cudnn") : Measured{Measured::kAbsent, "no cuDNN"};
    return known("cuda_toolkit") ? value("cuda_toolkit") : value("cuda_runtime");
  }
  return {Measured::kUnknown, "not measured"};
}

}  // namespace

std::vector<PinCheck> check_pins(const std::vector<PackagePin>& pins, const EnvReport& report) {
  std::vector<PinCheck> checks;
  for (const auto& pin : pins) {
    PinCheck c;
    c.pin = pin;
    const Measured m = measure(pin.name, report);
    c.found = m.text;
    switch (m.kind) {
      case Measured::kVersion:
        if (pin.range) c.status = PinStatus::kUnchecked;  // ranges are not pins; shown, not judged
        else c.status = version_matches(pin.version, m.text) ? PinStatus::kOk : PinStatus::kMismatch;
        break;
      case Measured::kUnknown: c.status = PinStatus::kUnchecked; break;
      case Measured::kSkipped: c.status = PinStatus::kSkipped; break;
      case Measured::kAbsent: c.status = PinStatus::kMismatch; break;
    }
    checks.push_back(c);
  }
  return checks;
}

std::string format_checks(const std::vector<PinCheck>& checks) {
  const std::vector<std::string> head = {"package", "pinned", "found", "status"};
  std::vector<std::vector<std::string>> rows;
  for (const auto& c : checks)
    rows.push_back({c.pin.name, c.pin.version.empty() ? "*" : c.pin.version, c.found, to_string(c.status)});
  std::vector<size_t> w(head.size());
  for (size_t k = 0; k < head.size(); ++k) {
    w[k] = width(head[k]);
    for (const auto& row : rows) w[k] = std::max(w[k], width(row[k]));
  }
  std::ostringstream out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (size_t k = 0; k < cells.size(); ++k) s += k + 1 < cells.size() ? pad(cells[k], w[k] + 2) : cells[k];
    out << s << "\n";
  };
  line(head);
  for (const auto& row : rows) line(row);
  int ok = 0, bad = 0, unchecked = 0, skipped = 0;
  for (const auto& c : checks) {
    switch (c.status) {
      case PinStatus::kOk: ++ok; break;
      case PinStatus::kMismatch: ++bad; break;
      case PinStatus::kUnchecked: ++unchecked; break;
      case PinStatus::kSkipped: ++skipped; break;
    }
  }
  if (bad) out << "\n";
  for (const auto& c : checks)
    if (c.status == PinStatus::kMismatch)
      out << "MISMATCH: " << c.pin.name << " pinned " << (c.pin.version.empty() ? "*" : c.pin.version) << ", found "
          << c.found << "\n";
  out << "\n"
      << ok << " ok, " << bad << " mismatched, " << unchecked << " unchecked, " << skipped << " skipped\n";
  return out.str();
}

}  // namespace bilevel
