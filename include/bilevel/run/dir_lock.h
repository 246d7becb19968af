// One process per run (or suite) directory: `train`, `resume` and `bench` hold an exclusive advisory lock (flock)
// on DIR/.lock for as long as they write there. The file holds the PID of the process that has the lock. The
// kernel releases the lock when that process ends, however it ends (SIGKILL included), so there is never a stale
// lock to clean up; the file itself stays.
#pragma once

#include <filesystem>
#include <string>

#include "bilevel/util/error.h"

namespace bilevel {

// Another process holds the directory: names it and that process's PID. A UserError (exit code 2).
class DirBusyError : public UserError {
 public:
  DirBusyError(const std::filesystem::path& dir, long pid);
  long pid() const { return pid_; }

 private:
  long pid_;
};

class DirLock {
 public:
  // Takes the lock on dir/.lock without waiting and writes this process's PID into the file. Throws DirBusyError
  // when another process holds it, IoError when the file cannot be created.
  static DirLock acquire(const std::filesystem::path& dir);
  static std::filesystem::path file_for(const std::filesystem::path& dir) { return dir / ".lock"; }

  DirLock(DirLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  DirLock& operator=(DirLock&& other) noexcept;
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;
  ~DirLock();  // releases the lock

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace bilevel
