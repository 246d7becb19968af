#include "bilevel/util/crash_points.h"

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <system_error>
#include <utility>

namespace bilevel {

namespace {
// BILEVEL_CRASH_RANK=R limits the crash point to the data-parallel rank R (RANK in the environment).
const char* spec() {
  static const char* s = [] {
    const char* at = std::getenv("BILEVEL_CRASH_AT");
    const char* only = std::getenv("BILEVEL_CRASH_RANK");
    const char* rank = std::getenv("RANK");
    if (at && only && std::strcmp(only, rank ? rank : "0") != 0) return static_cast<const char*>(nullptr);
    return at;
  }();
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
  // A signal from outside (a cluster's preemption warning, Ctrl-C) arriving at that point; the process goes on.
  for (const auto& [name, sig] : {std::pair<const char*, int>{"USR1", SIGUSR1}, {"USR2", SIGUSR2},
                                  {"TERM", SIGTERM}, {"INT", SIGINT}})
    if (at + "=" + name == s) {
      std::raise(sig);
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
