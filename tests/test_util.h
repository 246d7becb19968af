// Shared helpers for the config / run / backprop tests: temporary directories, running the `bilevel` CLI with
// captured stdout / stderr / exit status (or the signal that killed it), and reading metrics.csv.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bilevel/util/text.h"
#include "test_paths.h"

extern char** environ;

namespace testutil {

namespace fs = std::filesystem;

// ---- files ----

inline std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("cannot write " + path.string());
  out << text;
}

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Names of the entries of `dir` (sorted), or empty when it does not exist.
inline std::vector<std::string> list_dir(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

// A fresh directory under the system temp folder, removed with its contents at the end of the scope
// (kept when BILEVEL_KEEP_TEST_DIRS is set, for debugging).
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "bilevel_test") {
    std::string templ = (fs::temp_directory_path() / (prefix + "_XXXXXX")).string();
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + templ);
    path_ = buf.data();
  }
  ~TempDir() {
    if (std::getenv("BILEVEL_KEEP_TEST_DIRS")) return;
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }
  // Writes `text` to path()/name and returns the file's path as a string.
  std::string write(const std::string& name, const std::string& text) const {
    const fs::path f = path_ / name;
    fs::create_directories(f.parent_path());
    write_file(f, text);
    return f.string();
  }

 private:
  fs::path path_;
};

// ---- running the CLI ----

struct CliResult {
  int exit_code = -1;  // when the process exited normally
  bool signaled = false;
  int signal = 0;  // when it was killed by a signal
  std::string out, err;

  std::string describe() const {
    std::ostringstream os;
    if (signaled) os << "killed by signal " << signal;
    else os << "exit code " << exit_code;
    os << "\n--- stdout ---\n" << out << "\n--- stderr ---\n" << err;
    return os.str();
  }
  // stdout's first line (the run directory `train` prints).
  std::string first_line() const { return out.substr(0, out.find('\n')); }
};

// A child process running BILEVEL_CLI with `args`, stdout and stderr captured to files. `env` entries
// ("NAME=value") are added to this process's environment; BILEVEL_CRASH_AT is never inherited.
class CliProcess {
 public:
  CliProcess(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    capture_dir_ = std::make_unique<TempDir>("bilevel_cli_capture");
    out_path_ = capture_dir_->path() / "stdout";
    err_path_ = capture_dir_->path() / "stderr";

    std::vector<std::string> argv_s{BILEVEL_CLI};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);

    // An entry of `env` replaces the inherited variable of the same name (getenv would find the first).
    auto overridden = [&](const char* e) {
      for (const auto& v : env) {
        const size_t eq = v.find('=');
        if (eq != std::string::npos && std::strncmp(e, v.c_str(), eq + 1) == 0) return true;
      }
      return false;
    };
    std::vector<std::string> env_s;
    for (char** e = environ; *e != nullptr; ++e)
      if (std::strncmp(*e, "BILEVEL_CRASH_AT=", 17) != 0 && !overridden(*e)) env_s.push_back(*e);
    env_s.insert(env_s.end(), env.begin(), env.end());
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int rc = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error(std::string("posix_spawn ") + BILEVEL_CLI + ": " + std::strerror(rc));
  }
  ~CliProcess() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      int status;
      ::waitpid(pid_, &status, 0);
    }
  }
  CliProcess(const CliProcess&) = delete;
  CliProcess& operator=(const CliProcess&) = delete;

  pid_t pid() const { return pid_; }
  void kill(int sig) const { ::kill(pid_, sig); }
  // Whether the process has ended (reaps it when so).
  bool finished() {
    if (reaped_) return true;
    int status;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      status_ = status;
      reaped_ = true;
    }
    return reaped_;
  }
  CliResult wait() {
    if (!reaped_) {
      int status;
      while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      status_ = status;
      reaped_ = true;
    }
    CliResult r;
    if (WIFEXITED(status_)) r.exit_code = WEXITSTATUS(status_);
    if (WIFSIGNALED(status_)) r.signaled = true, r.signal = WTERMSIG(status_);
    r.out = read_file(out_path_);
    r.err = read_file(err_path_);
    return r;
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::unique_ptr<TempDir> capture_dir_;
  fs::path out_path_, err_path_;
};

inline CliResult run_cli(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  CliProcess p(args, env);
  return p.wait();
}

// ---- CSV ----

struct Csv {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;

  // Index of a column; -1 when absent.
  int column(const std::string& name) const {
    for (size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return static_cast<int>(i);
    return -1;
  }
  bool has(const std::string& name) const { return column(name) >= 0; }
  double value(size_t row, const std::string& name) const {
    const int c = column(name);
    if (c < 0) throw std::runtime_error("no column " + name);
    return std::stod(rows.at(row).at(static_cast<size_t>(c)));
  }
  std::vector<double> values(const std::string& name) const {
    std::vector<double> v;
    for (size_t r = 0; r < rows.size(); ++r) v.push_back(value(r, name));
    return v;
  }
};

inline std::vector<std::string> split(const std::string& line, char sep = ',') {
  return bilevel::text::split_fields(line, sep);
}

inline Csv parse_csv(const std::string& text) {
  Csv csv;
  std::stringstream ss(text);
  std::string line;
  bool first = true;
  while (std::getline(ss, line)) {
    if (line.empty()) continue;
    if (first) csv.header = split(line), first = false;
    else csv.rows.push_back(split(line));
  }
  return csv;
}

inline Csv read_csv(const fs::path& path) { return parse_csv(read_file(path)); }

// metrics.csv files are equal value for value in every column but epoch_seconds.
inline void expect_same_metrics(const fs::path& expected_file, const fs::path& actual_file) {
  const Csv e = read_csv(expected_file), a = read_csv(actual_file);
  ASSERT_EQ(e.header, a.header);
  ASSERT_EQ(e.rows.size(), a.rows.size()) << read_file(actual_file);
  ASSERT_FALSE(e.rows.empty());
  for (size_t r = 0; r < e.rows.size(); ++r) {
    ASSERT_EQ(e.rows[r].size(), e.header.size());
    ASSERT_EQ(a.rows[r].size(), e.header.size());
    for (size_t c = 0; c < e.header.size(); ++c) {
      if (e.header[c] == "epoch_seconds") continue;
      EXPECT_EQ(e.rows[r][c], a.rows[r][c]) << "row " << r + 1 << ", column " << e.header[c];
    }
  }
}

// Number of complete data rows (newline-terminated lines after the header) in a CSV file; 0 when absent.
inline int complete_rows(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return 0;
  std::string text;
  try {
    text = read_file(path);
  } catch (...) {
    return 0;
  }
  const auto lines = std::count(text.begin(), text.end(), '\n');
  return lines > 0 ? static_cast<int>(lines - 1) : 0;
}

// Polls `pred` every few milliseconds until it holds or `timeout` passes.
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return pred();
}


// The small synthetic problem the run, fault, preemption and data-parallel tests share: 8 classes of 3x3 images,
// 500 training + 100 validation + 200 test examples, a 16-unit MLP. `rest` appends the caller's own sections
// (train:, optimizer:, checkpoint:, ...).
// How many times `needle` occurs in `haystack` (overlapping occurrences counted).
inline size_t occurrences(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

inline std::string small_synthetic_yaml(const std::string& name, int seed, const std::string& rest) {
  return "experiment:\n  name: " + name + "\nseed: " + std::to_string(seed) + "\n" + R"(data:
  name: synthetic
  validation: 100
  synthetic:
    train: 600
    test: 200
    image_size: 3
    classes: 8
model:
  kind: mlp
  hidden: [16]
)" + rest;
}

}  // namespace testutil
