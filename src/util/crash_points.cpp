#include "bilevel/util/crash_points.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <system_error>

namespace bilevel {

namespace {
const char* spec() {
  static const char* s = std::getenv("BILEVEL_CRASH_AT");
  return s;
}
}  // namespace

void crash_point(const std::string& point, const std::string& tag, const std::filesystem::path& partial) {
  const char* s = spec();
  if (s == nullptr) return;
  const std::string at = point + ":" + tag;
  if (at + "=STOP" == s) {
    std::raise(SIGSTOP);
    return;
  }
  if (at != s) return;
  if (!partial.empty()) {
    std::error_code ec;
    auto size = std::filesystem::file_size(partial, ec);
    if (!ec) std::filesystem::resize_file(partial, size / 2, ec);
  }
  std::raise(SIGKILL);
}

int injected_write_error(const std::string& point, const std::string& tag) {
  const char* s = spec();
  if (s == nullptr) return 0;
  const std::string prefix = point + ":" + tag + "=";
  if (std::strncmp(s, prefix.c_str(), prefix.size()) != 0) return 0;
  const std::string name = s + prefix.size();
  struct Named {
    const char* name;
    int error;
  };
  for (const Named& n : {Named{"ENOSPC", ENOSPC}, Named{"EIO", EIO}, Named{"EACCES", EACCES}, Named{"EROFS", EROFS},
                         Named{"ENOENT", ENOENT}, Named{"EDQUOT", EDQUOT}})
    if (name == n.name) return n.error;
  return 0;
}

}  // namespace bilevel
