#include "bilevel/util/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "bilevel/util/crash_points.h"
#include "bilevel/util/io_error.h"

namespace bilevel {
namespace fs = std::filesystem;

namespace {
[[noreturn]] void io_fail(const std::string& action, const fs::path& p, int error) { throw IoError(p, action, error); }

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
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) io_fail("cannot open", path, errno);
  if (::fsync(fd) != 0) {
    const int error = errno;
    ::close(fd);
    io_fail("cannot write", path, error);
  }
  ::close(fd);
}

void write_atomic_with(const fs::path& path, const std::function<void(const fs::path& tmp)>& write) {
  const fs::path tmp = temp_path_for(path);
  try {
    write(tmp);
    crash_point("atomic_write", path.filename().string(), tmp);
    sync_file(tmp);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) io_fail("cannot write", path, errno);
  } catch (const IoError& e) {
    std::error_code ec;
    fs::remove(tmp, ec);
    if (e.file() != tmp) throw;
    // Name the file being written, not its temporary stand-in.
    if (e.error() != 0) throw IoError(path, e.action() == "cannot create" ? "cannot write" : e.action(), e.error());
    throw IoError(path, e.action(), e.reason());
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  sync_dir(path.parent_path());
}

void write_file_atomic(const fs::path& path, const std::string& content) {
  const int injected = injected_write_error("atomic_write", path.filename().string());
  write_atomic_with(path, [&](const fs::path& tmp) {
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) io_fail("cannot create", tmp, errno);
    // An injected failure writes half the bytes first, as a disk that fills up part-way would.
    const size_t size = injected ? content.size() / 2 : content.size();
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd, content.data() + done, size - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int error = n < 0 ? errno : EIO;
        ::close(fd);
        io_fail("cannot write", tmp, error);
      }
      done += static_cast<size_t>(n);
    }
    if (injected) {
      ::close(fd);
      io_fail("cannot write", tmp, injected);
    }
    if (::close(fd) != 0) io_fail("cannot write", tmp, errno);
  });
}

}  // namespace bilevel
