#include "bilevel/util/parse_int.h"

#include <cerrno>
#include <cstdlib>

namespace bilevel {

std::optional<long long> parse_integer(const std::string& text, long long min, long long max) {
  if (text.empty() || text.find_first_of(" \t\n") != std::string::npos) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || end != text.c_str() + text.size() || v < min || v > max) return std::nullopt;
  return v;
}

}  // namespace bilevel
