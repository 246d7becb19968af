#include "bilevel/run/metrics.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "bilevel/util/atomic_file.h"
#include "bilevel/util/crash_points.h"
#include "bilevel/util/error.h"
#include "bilevel/util/io_error.h"

namespace bilevel {
namespace fs = std::filesystem;

namespace {
std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i];
  return s;
}
}  // namespace

std::string format_metric(double v) {
  char buf[40];
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15)
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
  else {
    // The shortest form that reads back as the same double.
    for (int precision = 15; precision <= 17; ++precision) {
      std::snprintf(buf, sizeof buf, "%.*g", precision, v);
      if (std::strtod(buf, nullptr) == v) break;
    }
  }
  return buf;
}

MetricsWriter::MetricsWriter(const fs::path& path, std::vector<std::string> columns, int64_t keep_through)
    : path_(path), columns_(std::move(columns)) {
  const std::string header = join(columns_);
  if (fs::exists(path_) && fs::file_size(path_) > 0) {
    // Keep the header and complete rows for epochs <= keep_through; a torn last line (no newline) is dropped.
    std::ifstream in(path_);
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::stringstream ss(content);
    std::string line, kept;
    bool first = true;
    size_t consumed = 0;
    while (std::getline(ss, line)) {
      consumed += line.size() + 1;
      const bool complete = consumed <= content.size();
      if (first) {
        if (line != header)
          throw UserError(path_.string() + ": its columns (" + line + ") differ from this run's (" + header + ")");
        kept += line + "\n";
        first = false;
        continue;
      }
      if (!complete || line.empty()) break;
      const long long epoch = std::stoll(line.substr(0, line.find(',')));
      if (keep_through >= 0 && epoch > keep_through) break;
      kept += line + "\n";
    }
    if (kept != content) write_file_atomic(path_, kept);
  } else {
    write_file_atomic(path_, header + "\n");
  }
  file_ = std::fopen(path_.c_str(), "a");
  if (!file_) throw IoError(path_, "cannot open", errno);
}

MetricsWriter::~MetricsWriter() {
  if (file_) std::fclose(file_);
}

void MetricsWriter::append(const std::vector<double>& values) {
  if (values.size() != columns_.size()) throw std::logic_error("metrics row has the wrong number of values");
  std::string line;
  for (size_t i = 0; i < values.size(); ++i) line += (i ? "," : "") + format_metric(values[i]);
  line += "\n";
  // One write call for the whole line, then flush: a kill leaves at most a torn last line, which resume drops.
  // A failed write (disk full, I/O error) ends the run: at most a torn last line is left, which resume drops.
  if (const int injected = injected_write_error("metrics_row", format_metric(values[0]))) {
    std::fwrite(line.data(), 1, line.size() / 2, file_);
    std::fflush(file_);
    throw IoError(path_, "cannot write", injected);
  }
  errno = 0;
  const bool written = std::fwrite(line.data(), 1, line.size(), file_) == line.size();
  if (std::fflush(file_) != 0 || !written) {
    const int error = errno ? errno : EIO;
    std::clearerr(file_);
    throw IoError(path_, "cannot write", error);
  }
}

}  // namespace bilevel
