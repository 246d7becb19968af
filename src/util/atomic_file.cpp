#include "bilevel/util/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include "bilevel/util/crash_points.h"

namespace bilevel {
namespace fs = std::filesystem;

namespace {
[[noreturn]] void io_fail(const std::string& what, const fs::path& p) {
  throw std::runtime_error(what + " '" + p.string() + "': " + std::strerror(errno));
}

void sync_dir(const fs::path& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some file systems do not allow it
  ::fsync(fd);
  ::close(fd);
}
}  // namespace

fs::path temp_path_for(const fs::path& path) {
  return path.parent_path() / ("." + path.filename().string() + "." + std::to_string(::getpid()) + ".tmp");
}

void sync_file(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) io_fail("cannot open", path);
  if (::fsync(fd) != 0) {
    ::close(fd);
    io_fail("cannot flush", path);
  }
  ::close(fd);
}

void write_atomic_with(const fs::path& path, const std::function<void(const fs::path& tmp)>& write) {
  const fs::path tmp = temp_path_for(path);
  try {
    write(tmp);
    crash_point("atomic_write", path.filename().string(), tmp);
    sync_file(tmp);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) io_fail("cannot rename onto", path);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  sync_dir(path.parent_path());
}

void write_file_atomic(const fs::path& path, const std::string& content) {
  write_atomic_with(path, [&](const fs::path& tmp) {
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) io_fail("cannot create", tmp);
    const bool ok = std::fwrite(content.data(), 1, content.size(), f) == content.size();
    if (std::fclose(f) != 0 || !ok) io_fail("cannot write", tmp);
  });
}

}  // namespace bilevel
