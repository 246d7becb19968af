#include "bilevel/util/crash_points.h"

#include <csignal>
#include <cstdlib>
#include <system_error>

namespace bilevel {

void crash_point(const std::string& point, const std::string& tag, const std::filesystem::path& partial) {
  static const char* spec = std::getenv("BILEVEL_CRASH_AT");
  if (spec == nullptr || point + ":" + tag != spec) return;
  if (!partial.empty()) {
    std::error_code ec;
    auto size = std::filesystem::file_size(partial, ec);
    if (!ec) std::filesystem::resize_file(partial, size / 2, ec);
  }
  std::raise(SIGKILL);
}

}  // namespace bilevel
