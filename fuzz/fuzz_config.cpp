// libFuzzer target: the config loader with overrides. The input is YAML text, then (after the first NUL byte)
// overrides, one per line. Every input must load or fail with the project's own error (UserError); anything else
// (another exception, a crash, a sanitizer report) is a finding.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/registry.h"
#include "bilevel/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Uses a registry, so that the library's registries (and with them every component's config keys) are linked.
  static const bool registries = !bilevel::rules().names().empty();
  (void)registries;
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string yaml = input.substr(0, nul);
  std::vector<std::string> overrides;
  if (nul != std::string::npos) {
    std::string rest = input.substr(nul + 1), line;
    for (char c : rest) {
      if (c == '\n') overrides.push_back(line), line.clear();
      else line += c;
    }
    if (!line.empty()) overrides.push_back(line);
  }
  try {
    const bilevel::ExperimentConfig cfg = bilevel::load_config_text(yaml, "fuzz.yaml", overrides);
    (void)cfg.hash();
  } catch (const bilevel::UserError&) {
  }
  return 0;
}
