// Where a block of code spends its time, by operator: LibTorch's CPU profiler (its legacy, in-process one, the same
// in 1.13 and 2.x) records every ATen operator and every RECORD_FUNCTION scope (the library names its phases, e.g.
// `ep.free_phase`), and each name's calls, self time (its own time less that of the scopes inside it) and total
// time are summed. Profiling adds a few microseconds per operator, so the shares matter, not the absolute times.
#pragma once

#include <torch/csrc/autograd/profiler_legacy.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace bilevel::timing {

struct OpTime {
  std::string name;
  int64_t calls = 0;
  double self_us = 0, total_us = 0;
};

struct OpProfile {
  double wall_us = 0;
  std::vector<OpTime> ops;  // by self time, largest first
};

// by_shape: operators are told apart by their inputs' shapes too (`aten::conv2d [64, 16, 14, 14] ...`).
inline OpProfile profile_ops(const std::function<void()>& work, bool by_shape = false) {
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ProfilerConfig;
  using torch::profiler::impl::ProfilerState;
  prof::enableProfilerLegacy(ProfilerConfig(ProfilerState::CPU, /*report_input_shapes=*/by_shape));
  const auto t0 = std::chrono::steady_clock::now();
  work();
  OpProfile out;
  out.wall_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  const prof::thread_event_lists lists = prof::disableProfilerLegacy();
  std::map<std::string, OpTime> by_name;
  for (const auto& events : lists) {
    struct Open {
      const prof::LegacyEvent* push;
      double children_us;
    };
    std::vector<Open> open;
    for (const auto& e : events) {
      if (e.kind() == prof::EventKind::PushRange) {
        open.push_back({&e, 0.0});
      } else if (e.kind() == prof::EventKind::PopRange && !open.empty()) {
        const Open o = open.back();
        open.pop_back();
        const double total = o.push->cpuElapsedUs(e);
        std::string name = o.push->name();
        if (by_shape)
          for (const auto& shape : o.push->shapes()) {
            if (shape.empty()) continue;
            name += " [";
            for (size_t d = 0; d < shape.size(); ++d) name += (d ? "," : "") + std::to_string(shape[d]);
            name += "]";
          }
        OpTime& t = by_name[name];
        t.name = name;
        t.calls += 1;
        t.total_us += total;
        t.self_us += total - o.children_us;
        if (!open.empty()) open.back().children_us += total;
      }
    }
  }
  for (auto& [name, t] : by_name) out.ops.push_back(t);
  std::sort(out.ops.begin(), out.ops.end(), [](const OpTime& a, const OpTime& b) { return a.self_us > b.self_us; });
  return out;
}

// The `top` names by self time, with their share of the wall time, and the library's own scopes (names with a
// '.') by total time.
inline void print_op_profile(const OpProfile& p, size_t top, int64_t steps) {
  const double per = steps > 0 ? double(steps) : 1.0;
  std::printf("  wall %.3f ms per step; operators by self time (per step):\n", p.wall_us / per / 1e3);
  std::printf("  %-44s %8s %10s %7s %10s\n", "name", "calls", "self ms", "share", "total ms");
  const auto fits = [](const std::string& n) { return n.size() <= 44 ? n : n.substr(0, 41) + "..."; };
  for (size_t i = 0; i < std::min(top, p.ops.size()); ++i) {
    const OpTime& t = p.ops[i];
    std::printf("  %-44s %8.1f %10.3f %6.1f%% %10.3f\n", fits(t.name).c_str(), double(t.calls) / per, t.self_us / per / 1e3,
                100.0 * t.self_us / p.wall_us, t.total_us / per / 1e3);
  }
  std::vector<OpTime> scopes;
  for (const OpTime& t : p.ops)
    if (t.name.find('.') != std::string::npos && t.name.rfind("aten::", 0) != 0) scopes.push_back(t);
  if (scopes.empty()) return;
  std::sort(scopes.begin(), scopes.end(), [](const OpTime& a, const OpTime& b) { return a.total_us > b.total_us; });
  std::printf("  library phases by total time (per step):\n");
  for (const OpTime& t : scopes)
    std::printf("  %-44s %8.1f %10.3f %6.1f%%\n", t.name.c_str(), double(t.calls) / per, t.total_us / per / 1e3,
                100.0 * t.total_us / p.wall_us);
}

}  // namespace bilevel::timing
