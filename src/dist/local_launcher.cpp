#include "bilevel/dist/local_launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "bilevel/util/error.h"
#include "bilevel/util/parse_int.h"
#include "bilevel/util/threads.h"

extern char** environ;

namespace bilevel {
namespace {

constexpr int kMaxRanks = 256;
volatile sig_atomic_t g_children = 0;
pid_t g_pids[kMaxRanks];

extern "C" void forward_signal(int sig) {
  for (int i = 0; i < g_children; ++i)
    if (g_pids[i] > 0) ::kill(g_pids[i], sig);
}

}  // namespace

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error(std::string("cannot find a free port on 127.0.0.1: ") + std::strerror(e));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

int take_nproc(std::vector<std::string>& args) {
  for (size_t i = 0; i < args.size(); ++i) {
    std::string value;
    size_t drop = 0;
    if (args[i] == "--nproc") {
      if (i + 1 >= args.size()) throw UserError("--nproc needs a number of ranks");
      value = args[i + 1], drop = 2;
    } else if (args[i].rfind("--nproc=", 0) == 0) {
      value = args[i].substr(8), drop = 1;
    } else {
      continue;
    }
    const auto n = parse_integer(value, 1, kMaxRanks);
    if (!n) throw UserError("--nproc " + value + ": expected a number of ranks in [1, " + std::to_string(kMaxRanks) + "]");
    args.erase(args.begin() + long(i), args.begin() + long(i + drop));
    return int(*n);
  }
  return 0;
}

int launch_local_ranks(int nproc, const std::vector<std::string>& command, std::chrono::milliseconds grace) {
  if (nproc < 1 || nproc > kMaxRanks) throw UserError("--nproc: expected a number of ranks in [1, 256]");
  const int port = free_loopback_port();
  const bool omp_set = std::getenv("OMP_NUM_THREADS") != nullptr;
  const int threads = std::max(1, available_cpus().cpus / nproc);
  static const char* kReplaced[] = {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=", "MASTER_ADDR=",
                                    "MASTER_PORT=", "BILEVEL_LAUNCHER="};

  std::vector<std::string> argv_s{"/proc/self/exe"};
  argv_s.insert(argv_s.end(), command.begin(), command.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  struct sigaction forward {};
  forward.sa_handler = forward_signal;
  sigemptyset(&forward.sa_mask);
  struct sigaction old[4];
  const int forwarded[4] = {SIGINT, SIGTERM, SIGUSR1, SIGUSR2};

  g_children = 0;
  for (int r = 0; r < nproc; ++r) {
    std::vector<std::string> env_s;
    for (char** e = environ; *e != nullptr; ++e) {
      bool replaced = false;
      for (const char* k : kReplaced) replaced = replaced || std::strncmp(*e, k, std::strlen(k)) == 0;
      if (!replaced) env_s.push_back(*e);
    }
    for (const std::string& e :
         {"RANK=" + std::to_string(r), "WORLD_SIZE=" + std::to_string(nproc), "LOCAL_RANK=" + std::to_string(r),
          "LOCAL_WORLD_SIZE=" + std::to_string(nproc), std::string("MASTER_ADDR=127.0.0.1"),
          "MASTER_PORT=" + std::to_string(port), std::string("BILEVEL_LAUNCHER=nproc")})
      env_s.push_back(e);
    if (!omp_set) env_s.push_back("OMP_NUM_THREADS=" + std::to_string(threads));
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    // Each rank in its own process group: a terminal's Ctrl-C reaches this launcher only, which passes it on once.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    pid_t pid = 0;
    const int rc = ::posix_spawn(&pid, argv[0], nullptr, &attr, argv.data(), envp.data());
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
      for (int i = 0; i < g_children; ++i) ::kill(g_pids[i], SIGKILL);
      for (int i = 0; i < g_children; ++i) ::waitpid(g_pids[i], nullptr, 0);
      throw std::runtime_error(std::string("cannot start rank ") + std::to_string(r) + ": " + std::strerror(rc));
    }
    g_pids[r] = pid;
    g_children = r + 1;
    if (r == 0)
      for (int i = 0; i < 4; ++i) ::sigaction(forwarded[i], &forward, &old[i]);
  }

  std::vector<int> codes(size_t(nproc), -1);
  int running = nproc, first_failed = -1;
  std::chrono::steady_clock::time_point deadline{};
  while (running > 0) {
    int status = 0;
    // Until a rank fails, block: a launcher that polled would wake a few dozen times a second and preempt a rank
    // each time (the ranks keep every core busy), stalling its lockstep partner too. A forwarded signal interrupts
    // the wait (the handler is installed without SA_RESTART). After a failure, poll until the grace period ends.
    const pid_t pid = ::waitpid(-1, &status, first_failed < 0 ? 0 : WNOHANG);
    if (pid > 0) {
      const int r = int(std::find(g_pids, g_pids + nproc, pid) - g_pids);
      if (r >= nproc) continue;
      codes[size_t(r)] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      g_pids[r] = -1;
      --running;
      if (codes[size_t(r)] != 0 && first_failed < 0) {
        first_failed = r;
        deadline = std::chrono::steady_clock::now() + grace;
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;
    if (first_failed < 0) continue;
    if (std::chrono::steady_clock::now() > deadline)
      for (int i = 0; i < nproc; ++i)
        if (g_pids[i] > 0) ::kill(g_pids[i], SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (int i = 0; i < 4; ++i) ::sigaction(forwarded[i], &old[i], nullptr);
  g_children = 0;
  if (first_failed < 0) return 0;
  if (codes[0] != 0) return codes[0];
  return codes[size_t(first_failed)];
}

}  // namespace bilevel
