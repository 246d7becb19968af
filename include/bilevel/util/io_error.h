// A file the program writes could not be written: disk full, I/O error, permission denied, a folder that
// vanished. Not a problem with the user's input: the CLI prints the one-line message and exits 1.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>

namespace bilevel {

class IoError : public std::runtime_error {
 public:
  // "ACTION FILE: REASON", e.g. "cannot write runs/x/best.pt: No space left on device".
  IoError(const std::filesystem::path& file, const std::string& action, const std::string& reason);
  // The same with the reason of a system error number (errno).
  IoError(const std::filesystem::path& file, const std::string& action, int error);

  const std::filesystem::path& file() const { return file_; }
  const std::string& action() const { return action_; }
  const std::string& reason() const { return reason_; }
  // The errno it was made from, or 0.
  int error() const { return error_; }

 private:
  std::filesystem::path file_;
  std::string action_, reason_;
  int error_ = 0;
};

}  // namespace bilevel
