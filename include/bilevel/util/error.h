// Errors a user can fix: each names what is wrong and where (file:line, key, or command-line argument).
#pragma once

#include <stdexcept>
#include <string>

namespace bilevel {

// Where a value came from: a config file position, a command-line override, or a built-in default.
struct Location {
  std::string file;    // config file, or empty
  int line = 0;        // 1-based; 0 = unknown
  int column = 0;      // 1-based; 0 = unknown
  std::string origin;  // e.g. "command-line override 'train.epochs=3'" or "default"

  std::string str() const;
};

// A problem with user input (config, override, command line, data file). Caught by the CLI, printed, exit 2.
class UserError : public std::runtime_error {
 public:
  explicit UserError(const std::string& what) : std::runtime_error(what) {}
};

// A config problem: "FILE:LINE:COL: key 'train.batch_size': expected an integer >= 1, got 0".
class ConfigError : public UserError {
 public:
  ConfigError(const Location& where, const std::string& key, const std::string& message);
  const std::string& key() const { return key_; }
  const Location& where() const { return where_; }

 private:
  std::string key_;
  Location where_;
};

// A malformed, truncated or missing data file: names the file.
class DataError : public UserError {
 public:
  DataError(const std::string& file, const std::string& message)
      : UserError(file + ": " + message), file_(file) {}
  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

}  // namespace bilevel
