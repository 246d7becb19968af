// The fuzz targets that read files: the input bytes written to a per-process temporary file.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace bilevel::fuzz {

// Writes data to TMPDIR/bilevel_fuzz_PID_TAG (replacing it) and returns its path.
inline std::string input_file(const uint8_t* data, size_t size, const std::string& tag) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("bilevel_fuzz_" + std::to_string(::getpid()) + "_" + tag)).string();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("cannot write " + path);
  const bool ok = size == 0 || std::fwrite(data, 1, size, f) == size;
  if (std::fclose(f) != 0 || !ok) throw std::runtime_error("cannot write " + path);
  return path;
}

}  // namespace bilevel::fuzz
