// A mean-allreduce between the ranks of one host through a POSIX shared-memory segment, for the gradient averaging
// of data-parallel training when every rank runs on the same machine (DataParallel picks it under
// dist.backend=auto). Gloo's loopback TCP costs copies through the kernel, a helper thread and a socket wake-up
// per step; here each rank's buffer lives in its own slot of the segment (the gradients can be views of it), the
// ranks meet at a barrier, rank r averages the r-th chunk over every slot (summing in rank order, so the bits do
// not depend on the rank) and writes it back into every slot, and they meet again. Two barriers and one read and
// one write of the buffer per rank. The waiting spins (PAUSE) for up to 2 ms when every rank can have a CPU of its
// own (util/threads.h's available_cpus(), affinity and cgroup quota, has at least as many as there are ranks),
// 0.1 ms otherwise, and then yields the CPU between looks, so ranks that share cores still progress. On the 2-core
// VM of docs/results, a 2-rank ep run waits a few hundred µs at the first barrier in one step of ten; yielding after
// 0.1 ms there let other threads take the core and widened the slow tail (14 interleaved pairs against 1 rank:
// 1.48–1.83×, median 1.71×, against 1.64–1.85×, median 1.74×, spinning ~1.7 ms).
//
// Faults: a barrier that waits longer than the timeout, or that finds a peer process gone (its PID no longer
// exists, or is a zombie), throws std::runtime_error naming the rank; the segment's name is removed from /dev/shm
// as soon as every rank has mapped it, so no process death leaves it behind afterwards.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace bilevel {

class ShmAllreduce {
 public:
  // Rank 0 creates the segment `name` (a POSIX shm name, "/..."), with room for `capacity` bytes per rank, and
  // reserves its memory (an error if /dev/shm is full); the other ranks open the segment rank 0 created. Throws
  // std::runtime_error with the system's reason.
  static std::unique_ptr<ShmAllreduce> create(const std::string& name, int rank, int size, size_t capacity,
                                              double timeout_seconds);
  static std::unique_ptr<ShmAllreduce> open(const std::string& name, int rank, int size, size_t capacity,
                                            double timeout_seconds);
  ~ShmAllreduce();
  ShmAllreduce(const ShmAllreduce&) = delete;
  ShmAllreduce& operator=(const ShmAllreduce&) = delete;

  // Removes the name (rank 0, once every rank has opened the segment); the mapping stays valid.
  void unlink();

  size_t capacity() const { return capacity_; }
  // This rank's slot (capacity() bytes): the buffer to average.
  void* slot();
  // Replaces the first n elements of every rank's slot, as float (elem_size 4) or double (8), by their mean over
  // the ranks. Every rank calls it with the same n and element size; until its next call, no other rank writes
  // this rank's slot.
  void allreduce_mean(size_t n, size_t elem_size);
  // The same with the sum (for counts and loss sums: exact where the sum is).
  void allreduce_sum(size_t n, size_t elem_size);

 private:
  ShmAllreduce() = default;
  void allreduce(size_t n, size_t elem_size, bool mean);
  static std::unique_ptr<ShmAllreduce> map(const std::string& name, int rank, int size, size_t capacity,
                                           double timeout_seconds, bool create);
  void barrier();
  char* slot_of(int r) const;

  std::string name_;
  int rank_ = 0, size_ = 1;
  size_t capacity_ = 0, header_bytes_ = 0, total_bytes_ = 0;
  double timeout_ = 0;
  char* base_ = nullptr;
  std::atomic<uint64_t>* arrive_ = nullptr;  // one per rank, each on its own cache line
  pid_t* pids_ = nullptr;
  std::vector<char*> slots_;
  uint64_t generation_ = 0;
  std::chrono::microseconds spin_budget_{100};
  bool owner_ = false, unlinked_ = false;
};

}  // namespace bilevel
