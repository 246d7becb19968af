// metrics.csv: a header line, then one row per epoch, appended and flushed as each epoch ends.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace bilevel {

class MetricsWriter {
 public:
  // Opens `path` for appending; writes the header when the file is new or empty. When it exists, its header
  // must equal `columns` and rows after epoch `keep_through` are dropped (a resumed run rewrites them).
  MetricsWriter(const std::filesystem::path& path, std::vector<std::string> columns, int64_t keep_through = -1);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  // One row; values in column order (the first column is the epoch).
  void append(const std::vector<double>& values);
  const std::vector<std::string>& columns() const { return columns_; }

 private:
  std::filesystem::path path_;
  std::vector<std::string> columns_;
  FILE* file_ = nullptr;
};

// Formats a value in the shortest form that reads back as the same double; integers without a decimal point.
std::string format_metric(double v);

}  // namespace bilevel
