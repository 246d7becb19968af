// Fault injection for the resume tests: BILEVEL_CRASH_AT=<point>:<tag> makes the process SIGKILL itself at that
// point, as a power cut or an OOM killer would. Points: "atomic_write:<file name>" (after the temporary file is
// half written, before the rename), "epoch_end:<epoch>" (after the epoch's metrics row, before its checkpoint),
// "batch:<epoch>.<batch>" (before that batch). Unset in normal use; costs one getenv per call.
#pragma once

#include <filesystem>
#include <string>

namespace bilevel {

// Kills the process with SIGKILL when BILEVEL_CRASH_AT equals "<point>:<tag>". For "atomic_write", the file
// `partial` is first truncated to half its size, leaving a torn temporary file behind.
void crash_point(const std::string& point, const std::string& tag, const std::filesystem::path& partial = {});

}  // namespace bilevel
