// Whole-string integer parsing for command-line values and environment variables (--nproc, --jobs, RANK, ...).
#pragma once

#include <optional>
#include <string>

namespace bilevel {

// The integer `text` spells (an optional sign, then digits, nothing else) when it lies in [min, max]; else nullopt.
std::optional<long long> parse_integer(const std::string& text, long long min, long long max);

}  // namespace bilevel
