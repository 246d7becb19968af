// What a kernel launcher needs to know about a kernel on a device once, not per launch: the dynamic shared memory
// a block may have (the device's opt-in maximum less the kernel's static shared memory), and whether the kernel
// has been allowed that maximum (cudaFuncSetAttribute). Device attribute queries and attribute changes cost
// microseconds each, the order of a small kernel, so the persistent relaxation (src/kernels/cuda/dense_relax.cu)
// asks them once per (device, kernel) and process. No CUDA header: the queries are callbacks, so the logic is
// tested on the CPU (tests/test_launch_cache.cpp).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

namespace bilevel::kernels {

class LaunchCache {
 public:
  struct Entry {
    int64_t room = 0;      // dynamic shared memory bytes a block of the kernel may use on the device
    bool opted_in = false; // the kernel may use all of `room` (its attribute was raised)
  };

  // The entry of (device, kernel); on first use query() fills its room (returning an error code, 0 = success,
  // which is returned and nothing is cached). Thread-safe.
  template <class Query>
  int entry(int device, const void* kernel, Entry& out, Query&& query) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto key = std::make_pair(device, kernel);
    auto it = entries_.find(key);
    if (it == entries_.end()) {
      Entry e;
      const int err = query(e.room);
      if (err != 0) return err;
      it = entries_.emplace(key, e).first;
    }
    out = it->second;
    return 0;
  }

  // Raises (device, kernel)'s dynamic shared memory limit to its room with opt_in(room) the first time a launch
  // needs more than the default; later calls do nothing. Returns opt_in's error code (0 = success).
  template <class OptIn>
  int opt_in(int device, const void* kernel, OptIn&& set_limit) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(std::make_pair(device, kernel));
    if (it == entries_.end()) return -1;  // entry() first
    if (it->second.opted_in) return 0;
    const int err = set_limit(it->second.room);
    if (err == 0) it->second.opted_in = true;
    return err;
  }

 private:
  std::mutex mutex_;
  std::map<std::pair<int, const void*>, Entry> entries_;
};

}  // namespace bilevel::kernels
