// Fault injection for the resume and fault tests. BILEVEL_CRASH_AT=<point>:<tag> makes the process SIGKILL itself
// at that point, as a power cut or an OOM killer would. Points: "atomic_write:<file name>" (after the temporary
// file is half written, before the rename), "epoch_end:<epoch>" (after the epoch's metrics row, before its
// checkpoint), "batch:<epoch>.<batch>" (before that batch), "start:train" (as `train` starts, before the data is
// loaded).
//   <point>:<tag>=STOP     stops the process there (SIGSTOP) instead, still holding its files and locks.
//   <point>:<tag>=USR2     raises that signal there and goes on (also USR1, TERM, INT), as a preemption warning or
//                          a Ctrl-C arriving during the batch would.
//   <point>:<tag>=ENOSPC   (or EIO, EACCES, EROFS, ENOENT, EDQUOT) makes the write at that point fail with that
//                          system error, as a full disk would: "atomic_write:<file name>" (half the bytes are
//                          written first), "metrics_row:<epoch>", "log_write:<log file name>".
// BILEVEL_CRASH_RANK=R applies the crash point only in data-parallel rank R (the RANK variable; 0 when unset).
// Unset in normal use; costs one getenv per call.
#pragma once

#include <filesystem>
#include <string>

namespace bilevel {

// Kills the process with SIGKILL when BILEVEL_CRASH_AT equals "<point>:<tag>" (stops it with SIGSTOP for
// "<point>:<tag>=STOP"). For "atomic_write", the file `partial` is first truncated to half its size, leaving a torn
// temporary file behind.
void crash_point(const std::string& point, const std::string& tag, const std::filesystem::path& partial = {});

// The errno to fail the write at "<point>:<tag>" with when BILEVEL_CRASH_AT asks for one, else 0.
int injected_write_error(const std::string& point, const std::string& tag);

}  // namespace bilevel
