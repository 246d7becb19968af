#include "bilevel/train/memory_estimate.h"

#include "bilevel/data/data_source.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace bilevel {

namespace {

struct SizeOfData {
  double channels = 1, size = 28, train = 60000, test = 10000, classes = 10;
};

SizeOfData data_shape(const DataConfig& d) {
  const auto shape = make_data_source(d)->shape();
  SizeOfData s;
  s.channels = double(shape.example.at(0));
  s.size = double(std::max(shape.example.at(1), shape.example.at(2)));  // square: an upper bound
  s.train = double(shape.train);
  s.test = double(shape.test);
  s.classes = double(shape.classes);
  if (d.train_limit > 0) s.train = std::min(s.train, double(d.train_limit));
  if (d.test_limit > 0) s.test = std::min(s.test, double(d.test_limit));
  return s;
}

// The value of `key` in /proc/meminfo, in bytes; 0 when absent.
double meminfo(const std::string& key) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) != 0) continue;
    std::istringstream ss(line.substr(key.size() + 1));
    double kb = 0;
    ss >> kb;
    return kb * 1024.0;
  }
  return 0;
}

}  // namespace

const std::string& MemoryEstimate::key() const {
  if (parameters >= states && parameters >= data) return parameters_key;
  return states >= data ? states_key : data_key;
}

MemoryEstimate estimate_memory(const ExperimentConfig& cfg) {
  // Doubles throughout: absurd widths must not overflow into a small estimate.
  MemoryEstimate m;
  const SizeOfData d = data_shape(cfg.data);
  const double input = d.channels * d.size * d.size;
  const double classes = d.classes;

  double params = 0, units = 0, largest = 0, widest = 0;
  std::string widest_key = "model.hidden";
  double c = d.channels, h = d.size;
  auto layer = [&](double weights, double biases, const char* key) {
    params += weights + biases;
    if (weights > largest) largest = weights, m.parameters_key = key;
  };
  double in = input;
  if (cfg.model.kind == "conv") {
    const double k = double(cfg.model.kernel_size);
    for (int64_t out : cfg.model.channels) {
      layer(double(out) * c * k * k, double(out), "model.channels");
      const double conv = std::max(1.0, h + 2.0 * double(cfg.model.padding) - k + 1);
      units += double(out) * conv * conv;  // before pooling
      if (double(out) * conv * conv > widest) widest = double(out) * conv * conv, widest_key = "model.channels";
      h = std::max(1.0, std::floor(conv / double(cfg.model.pool)));
      c = double(out);
    }
    in = c * h * h;
  }
  for (int64_t width : cfg.model.hidden) {
    layer(in * double(width), double(width), "model.hidden");
    units += double(width);
    if (double(width) > widest) widest = double(width), widest_key = "model.hidden";
    in = double(width);
  }
  layer(in * classes, classes, cfg.model.hidden.empty() ? "model.kind" : "model.hidden");
  units += classes;

  double optimizer_copies = 0;
  if (cfg.optimizer.name == "adam") optimizer_copies = 2;
  else if (cfg.optimizer.momentum > 0) optimizer_copies = 1;
  m.parameters = params * 4.0 * (2.0 + optimizer_copies);  // weights, gradients, optimizer state

  const bool eval_larger = cfg.train.eval_batch_size > cfg.train.batch_size;
  const double batch = double(eval_larger ? cfg.train.eval_batch_size : cfg.train.batch_size);
  // The states grow with the batch and with the widest layer: name whichever is the larger factor.
  m.states_key = widest > batch ? widest_key : eval_larger ? "train.eval_batch_size" : "train.batch_size";
  m.states = batch * (input + units) * 4.0;

  m.data = (d.train + d.test) * (input * 4.0 + 8.0);
  if (cfg.data.name == "synthetic")
    m.data_key = d.train * input >= d.test * input ? "data.synthetic.train" : "data.synthetic.test";
  return m;
}

double memory_available() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  double bytes = pages > 0 && page > 0 ? double(pages) * double(page) : 0;
  bytes += meminfo("SwapTotal");
  std::ifstream cg("/sys/fs/cgroup/memory.max");
  double limit = 0;
  if (cg >> limit && limit > 0 && (bytes == 0 || limit < bytes)) bytes = limit;
  return bytes;
}

void check_memory(const ExperimentConfig& cfg, double available) {
  const MemoryEstimate m = estimate_memory(cfg);
  if (available <= 0 || m.total() <= available) return;
  cfg.fail(m.key(), "the run needs at least " + format_bytes(m.total()) + " of memory (parameters, gradients and " +
                        "optimizer state " + format_bytes(m.parameters) + ", one batch of states " +
                        format_bytes(m.states) + ", data " + format_bytes(m.data) + "), more than the " +
                        format_bytes(available) + " this machine has (physical memory and swap)");
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  int u = 0;
  while (bytes >= 1000 && u < 6) bytes /= 1000, ++u;
  char buf[48];
  if (bytes >= 1000) std::snprintf(buf, sizeof buf, "%.3g %s", bytes, units[u]);
  else std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

}  // namespace bilevel
