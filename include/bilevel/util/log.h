// One logger for the whole program (spdlog's default): console lines on stderr at info level, and, during a run,
// the same lines plus debug detail in the run's train.log.
#pragma once

#include <filesystem>

namespace bilevel {

// Console only (called once at start-up by the CLI; safe to call again).
void init_console_logging();
// Adds train.log (appending) to the default logger. Throws IoError when the file cannot be opened.
void attach_log_file(const std::filesystem::path& path);
// Throws IoError naming the log file and the system error when a write to it failed (disk full, I/O error). The
// logger itself never throws: after a failed write the file gets no more lines and this reports it.
void check_log_file();

}  // namespace bilevel
