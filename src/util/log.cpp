#include "bilevel/util/log.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdio>
#include <mutex>
#include <string>

#include "bilevel/util/crash_points.h"
#include "bilevel/util/io_error.h"

namespace bilevel {
namespace fs = std::filesystem;

namespace {

// The first failed write to a log file: the file and errno (0 = none).
struct LogFailure {
  std::mutex mutex;
  fs::path file;
  int error = 0;
};
LogFailure& log_failure() {
  static LogFailure f;
  return f;
}

// An appending file sink that checks every write and flush; a failure is recorded, not thrown (spdlog would
// print its own message for each later line), and the sink stays silent after it.
class CheckedFileSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit CheckedFileSink(fs::path path) : path_(std::move(path)) {
    file_ = std::fopen(path_.c_str(), "ae");
    if (!file_) throw IoError(path_, "cannot open", errno);
  }
  ~CheckedFileSink() override {
    if (file_) std::fclose(file_);
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    if (failed_) return;
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    if (const int injected = injected_write_error("log_write", path_.filename().string())) return fail(injected);
    errno = 0;
    if (std::fwrite(line.data(), 1, line.size(), file_) != line.size()) fail(errno ? errno : EIO);
  }
  void flush_() override {
    if (failed_) return;
    errno = 0;
    if (std::fflush(file_) != 0) fail(errno ? errno : EIO);
  }

 private:
  void fail(int error) {
    failed_ = true;
    LogFailure& f = log_failure();
    std::lock_guard<std::mutex> lock(f.mutex);
    if (f.error == 0) f.file = path_, f.error = error;
  }

  fs::path path_;
  std::FILE* file_ = nullptr;
  bool failed_ = false;
};

}  // namespace

void init_console_logging() {
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  console->set_level(spdlog::level::info);
  console->set_pattern("[%H:%M:%S] %^%l%$ %v");
  auto logger = std::make_shared<spdlog::logger>("bilevel", console);
  logger->set_level(spdlog::level::debug);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

void attach_log_file(const fs::path& path) {
  auto file = std::make_shared<CheckedFileSink>(path);
  file->set_level(spdlog::level::debug);
  file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%l] %v");
  spdlog::default_logger()->sinks().push_back(file);
}

void check_log_file() {
  LogFailure& f = log_failure();
  std::lock_guard<std::mutex> lock(f.mutex);
  if (f.error != 0) throw IoError(f.file, "cannot write", f.error);
}

}  // namespace bilevel
