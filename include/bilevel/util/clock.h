// Wall-clock time stamps for run records.
#pragma once

#include <string>

namespace bilevel {

// Local time as ISO 8601 with the UTC offset, e.g. 2026-11-21T10:04:37+0000.
std::string now_iso();

}  // namespace bilevel
