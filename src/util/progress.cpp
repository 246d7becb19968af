#include "bilevel/util/progress.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>

namespace bilevel {

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "--:--";
  long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%02ld:%02ld", s / 60, s % 60);
  return buf;
}

bool Progress::stderr_is_tty() { return ::isatty(STDERR_FILENO) == 1; }

Progress::Progress(std::string label, int64_t total_batches, int64_t total_examples, bool tty, int64_t log_every)
    : label_(std::move(label)),
      total_batches_(total_batches),
      total_examples_(total_examples),
      tty_(tty),
      log_every_(log_every),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

void Progress::update(int64_t done, int64_t examples_done, double loss, double accuracy) {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double rate = elapsed > 0 ? examples_done / elapsed : 0.0;
  const double eta = rate > 0 ? (total_examples_ - examples_done) / rate : -1;
  if (tty_) {
    // Redraw at most ~10 times a second, and always at the end.
    if (done != total_batches_ && std::chrono::duration<double>(now - last_draw_).count() < 0.1) return;
    last_draw_ = now;
    const int width = 28;
    const int filled = total_batches_ > 0 ? int(width * done / total_batches_) : width;
    std::string bar(filled, '#');
    bar += std::string(width - filled, '.');
    std::fprintf(stderr, "\r\033[K%s [%s] %lld/%lld loss %.4f acc %.4f %.0f ex/s ETA %s", label_.c_str(), bar.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_batches_), loss, accuracy, rate,
                 format_duration(eta).c_str());
    std::fflush(stderr);
  } else if (log_every_ > 0 && (done % log_every_ == 0)) {
    spdlog::info("{} batch {}/{} loss {:.4f} acc {:.4f} {:.0f} ex/s ETA {}", label_, done, total_batches_, loss,
                 accuracy, rate, format_duration(eta));
  }
}

void Progress::finish() {
  if (tty_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
}

}  // namespace bilevel
