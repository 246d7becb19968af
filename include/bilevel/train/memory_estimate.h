// Sizes checked up front: a lower bound on the memory a run needs (model parameters with their gradients and
// optimizer state, one batch of states, the data set as float32), compared before anything is allocated with
// what this machine can give, so an impossible config (e.g. model.hidden: [99999999999]) is a config error naming
// the key and the estimate rather than an allocation failure half-way through.
#pragma once

#include <string>

#include "bilevel/config/config.h"

namespace bilevel {

struct MemoryEstimate {
  double parameters = 0;  // bytes: weights and biases, their gradients, the optimizer's state
  double states = 0;      // bytes: one batch (training or evaluation, the larger) of inputs and layer states
  double data = 0;        // bytes: the training and test sets as float32 images and int64 labels
  std::string parameters_key = "model.hidden";  // the key that sizes the largest layer
  std::string states_key = "train.batch_size";
  std::string data_key = "data.name";
  double total() const { return parameters + states + data; }
  // The key behind the largest of the three parts.
  const std::string& key() const;
};

MemoryEstimate estimate_memory(const ExperimentConfig& cfg);

// Bytes this process can use: physical memory plus swap, or the cgroup's memory.max when lower.
double memory_available();

// Throws ConfigError naming the dominant key, the estimate and `available` when the estimate exceeds it.
void check_memory(const ExperimentConfig& cfg, double available = memory_available());

// "1.5 GB", "512 MB", "3.2 TB" (decimal units).
std::string format_bytes(double bytes);

}  // namespace bilevel
