// Progress for one epoch. On a terminal: a bar redrawn in place with loss, accuracy, throughput and ETA.
// Otherwise: a plain log line every `log_every` batches (0 = none; the trainer logs each epoch's summary).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace bilevel {

class Progress {
 public:
  Progress(std::string label, int64_t total_batches, int64_t total_examples, bool tty, int64_t log_every);
  // After batch `done` (1-based) with the running mean loss and accuracy.
  void update(int64_t done, int64_t examples_done, double loss, double accuracy);
  // Clears the bar (the caller logs the summary).
  void finish();

  // Whether standard error is an interactive terminal.
  static bool stderr_is_tty();

 private:
  std::string label_;
  int64_t total_batches_, total_examples_;
  bool tty_;
  int64_t log_every_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// "1:02:03" or "02:03".
std::string format_duration(double seconds);

}  // namespace bilevel
