#include "bilevel/run/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string>

#include "bilevel/util/io_error.h"

namespace bilevel {
namespace fs = std::filesystem;

DirBusyError::DirBusyError(const fs::path& dir, long pid)
    : UserError(dir.string() + ": in use by another bilevel process (" +
                (pid > 0 ? "PID " + std::to_string(pid) : std::string("PID unknown")) +
                "); only one train, resume or bench may work in a directory at a time"),
      pid_(pid) {}

namespace {
long read_pid(int fd) {
  char buf[32] = {0};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  return std::strtol(buf, nullptr, 10);
}
}  // namespace

DirLock DirLock::acquire(const fs::path& dir) {
  const fs::path file = file_for(dir);
  const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) throw UserError(dir.string() + ": not a directory");
    throw IoError(file, "cannot open", errno);
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    if (error == EWOULDBLOCK) {
      // The holder writes its PID right after it gets the lock; give it a moment when the file is still empty.
      long pid = read_pid(fd);
      for (int i = 0; i < 50 && pid <= 0; ++i) ::usleep(2000), pid = read_pid(fd);
      ::close(fd);
      throw DirBusyError(dir, pid);
    }
    ::close(fd);
    throw IoError(file, "cannot lock", error);
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int error = errno ? errno : EIO;
    ::close(fd);
    throw IoError(file, "cannot write", error);
  }
  return DirLock(fd);
}

DirLock& DirLock::operator=(DirLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

DirLock::~DirLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace bilevel
