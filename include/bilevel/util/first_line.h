// The first line of an error message: LibTorch appends a backtrace or the offending source to what(), which a
// one-line error report must not carry.
#pragma once

#include <string>

namespace bilevel {

inline std::string first_line(const std::string& message) { return message.substr(0, message.find('\n')); }

}  // namespace bilevel
