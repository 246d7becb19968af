#include "bilevel/util/error.h"

namespace bilevel {

std::string Location::str() const {
  std::string s;
  if (!file.empty()) {
    s = file;
    if (line > 0) s += ":" + std::to_string(line);
    if (column > 0) s += ":" + std::to_string(column);
  }
  if (!origin.empty()) s += s.empty() ? origin : " (" + origin + ")";
  return s.empty() ? "<unknown>" : s;
}

ConfigError::ConfigError(const Location& where, const std::string& key, const std::string& message)
    : UserError(where.str() + ": " + (key.empty() ? "" : "key '" + key + "': ") + message),
      key_(key),
      where_(where) {}

}  // namespace bilevel
