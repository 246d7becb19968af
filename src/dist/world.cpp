#include "bilevel/dist/world.h"

#include <cstdlib>

#include "bilevel/util/error.h"
#include "bilevel/util/parse_int.h"

namespace bilevel {
namespace {

int parse_int(const std::string& name, const std::string& value, int min, int max) {
  const auto v = parse_integer(value, min, max);
  if (!v)
    throw UserError("environment variable " + name + "='" + value + "': expected an integer in [" +
                    std::to_string(min) + ", " + std::to_string(max) + "]");
  return int(*v);
}

std::string need(const EnvLookup& env, const std::string& name, const std::string& launcher) {
  auto v = env(name);
  if (!v || v->empty()) throw UserError("started by " + launcher + " without " + name + " in the environment");
  return *v;
}

}  // namespace

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
}

std::vector<std::string> expand_slurm_nodelist(const std::string& list) {
  std::vector<std::string> hosts;
  auto bad = [&](const std::string& why) { return UserError("Slurm node list '" + list + "': " + why); };
  size_t i = 0;
  while (i < list.size()) {
    // One entry: a prefix, then an optional [ranges], then an optional suffix, up to a top-level comma.
    size_t end = i;
    int depth = 0;
    while (end < list.size() && (depth > 0 || list[end] != ',')) {
      if (list[end] == '[') ++depth;
      if (list[end] == ']') --depth;
      if (depth < 0 || depth > 1) throw bad("unbalanced brackets");
      ++end;
    }
    if (depth != 0) throw bad("unbalanced brackets");
    const std::string entry = list.substr(i, end - i);
    if (entry.empty()) throw bad("empty entry");
    const size_t open = entry.find('[');
    if (open == std::string::npos) {
      hosts.push_back(entry);
    } else {
      const size_t close = entry.find(']', open);
      const std::string prefix = entry.substr(0, open), suffix = entry.substr(close + 1);
      const std::string ranges = entry.substr(open + 1, close - open - 1);
      size_t r = 0;
      while (r <= ranges.size()) {
        size_t comma = ranges.find(',', r);
        if (comma == std::string::npos) comma = ranges.size();
        const std::string part = ranges.substr(r, comma - r);
        const size_t dash = part.find('-');
        const std::string lo = part.substr(0, dash), hi = dash == std::string::npos ? lo : part.substr(dash + 1);
        if (lo.empty() || hi.empty() || lo.find_first_not_of("0123456789") != std::string::npos ||
            hi.find_first_not_of("0123456789") != std::string::npos)
          throw bad("bad range '" + part + "'");
        const long a = std::stol(lo), b = std::stol(hi);
        if (b < a || b - a > 100000) throw bad("bad range '" + part + "'");
        for (long n = a; n <= b; ++n) {
          std::string digits = std::to_string(n);
          if (digits.size() < lo.size()) digits.insert(0, lo.size() - digits.size(), '0');
          hosts.push_back(prefix + digits + suffix);
        }
        r = comma + 1;
      }
    }
    i = end + 1;
  }
  if (hosts.empty()) throw bad("no host");
  return hosts;
}

std::optional<World> detect_world(const EnvLookup& env) {
  World w;
  if (env("WORLD_SIZE") && env("RANK")) {
    const auto launcher = env("BILEVEL_LAUNCHER");
    w.launcher = launcher && *launcher == "nproc" ? "nproc" : "torchrun";
    w.size = parse_int("WORLD_SIZE", *env("WORLD_SIZE"), 1, 1 << 20);
    w.rank = parse_int("RANK", *env("RANK"), 0, w.size - 1);
    w.local_rank = env("LOCAL_RANK") ? parse_int("LOCAL_RANK", *env("LOCAL_RANK"), 0, 1 << 20) : 0;
    if (w.size == 1) return std::nullopt;
    w.master_addr = need(env, "MASTER_ADDR", w.launcher);
    w.master_port = parse_int("MASTER_PORT", need(env, "MASTER_PORT", w.launcher), 1, 65535);
    return w;
  }
  if (env("SLURM_PROCID")) {
    w.launcher = "srun";
    const auto tasks = env("SLURM_STEP_NUM_TASKS") ? env("SLURM_STEP_NUM_TASKS") : env("SLURM_NTASKS");
    if (!tasks) return std::nullopt;
    const std::string tasks_var = env("SLURM_STEP_NUM_TASKS") ? "SLURM_STEP_NUM_TASKS" : "SLURM_NTASKS";
    w.size = parse_int(tasks_var, *tasks, 1, 1 << 20);
    if (w.size == 1) return std::nullopt;
    w.rank = parse_int("SLURM_PROCID", *env("SLURM_PROCID"), 0, w.size - 1);
    w.local_rank = env("SLURM_LOCALID") ? parse_int("SLURM_LOCALID", *env("SLURM_LOCALID"), 0, 1 << 20) : 0;
    if (auto addr = env("MASTER_ADDR"); addr && !addr->empty()) {
      w.master_addr = *addr;
    } else {
      const auto nodes = env("SLURM_STEP_NODELIST") ? env("SLURM_STEP_NODELIST") : env("SLURM_JOB_NODELIST");
      if (!nodes) throw UserError("started by srun without SLURM_JOB_NODELIST or MASTER_ADDR in the environment");
      w.master_addr = expand_slurm_nodelist(*nodes).front();
    }
    if (auto port = env("MASTER_PORT"); port && !port->empty()) {
      w.master_port = parse_int("MASTER_PORT", *port, 1, 65535);
    } else {
      // One port per job (and step), so that two jobs sharing a node do not meet: 20000 + (id mod 10000).
      const auto job = env("SLURM_JOB_ID");
      const long id = job ? std::atol(job->c_str()) : 0;
      w.master_port = 20000 + int(id % 10000);
    }
    return w;
  }
  return std::nullopt;
}

}  // namespace bilevel
