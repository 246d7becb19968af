#include "bilevel/util/io_error.h"

#include <cstring>

namespace bilevel {

IoError::IoError(const std::filesystem::path& file, const std::string& action, const std::string& reason)
    : std::runtime_error(action + " " + file.string() + ": " + reason), file_(file), action_(action), reason_(reason) {}

IoError::IoError(const std::filesystem::path& file, const std::string& action, int error)
    : IoError(file, action, std::string(std::strerror(error))) {
  error_ = error;
}

}  // namespace bilevel
