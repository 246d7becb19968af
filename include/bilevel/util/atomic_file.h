// Files that are either fully written or not there at all: write a temporary file beside the target, flush it to
// disk, rename it over the target (atomic on POSIX), then flush the directory entry.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

namespace bilevel {

// Writes `content` to `path` atomically.
void write_file_atomic(const std::filesystem::path& path, const std::string& content);

// Calls write(tmp) to produce a temporary file, then publishes it at `path` atomically.
void write_atomic_with(const std::filesystem::path& path,
                       const std::function<void(const std::filesystem::path& tmp)>& write);

// The temporary-file name used for `path` (files ending in ".tmp" are never read as results).
std::filesystem::path temp_path_for(const std::filesystem::path& path);

// Flushes a file's data to disk (fsync).
void sync_file(const std::filesystem::path& path);

}  // namespace bilevel
