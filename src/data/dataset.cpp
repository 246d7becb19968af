#include "bilevel/data/dataset.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "bilevel/data/data_source.h"
#include "bilevel/util/error.h"

namespace bilevel {
namespace {

Dataset limit(const Dataset& d, int64_t n, const char* key) {
  if (n < 0) throw UserError(std::string("data.") + key + " must be >= 0 (0 = all), got " + std::to_string(n));
  if (n == 0 || n >= d.size()) return d;
  return d.slice(0, n);
}

}  // namespace

Dataset Dataset::slice(int64_t begin, int64_t end) const {
  if (begin < 0 || end < begin || end > size())
    throw std::out_of_range("Dataset::slice: [" + std::to_string(begin) + ", " + std::to_string(end) +
                            ") is outside [0, " + std::to_string(size()) + ")");
  Dataset out;
  out.images = images.narrow(0, begin, end - begin);
  out.labels = labels.narrow(0, begin, end - begin);
  out.num_classes = num_classes;
  out.name = name;
  return out;
}

std::vector<int64_t> Dataset::example_shape() const {
  if (!images.defined()) return {};
  const auto s = images.sizes();
  return std::vector<int64_t>(s.begin() + 1, s.end());
}

DataSplits load_data(const DataConfig& cfg, int64_t seed) {
  auto [train, test] = make_data_source(cfg)->load(seed);
  train = limit(train, cfg.train_limit, "train_limit");
  test = limit(test, cfg.test_limit, "test_limit");
  if (cfg.validation < 0) throw UserError("data.validation must be >= 0, got " + std::to_string(cfg.validation));
  if (cfg.validation >= train.size())
    throw UserError("data.validation=" + std::to_string(cfg.validation) +
                    " leaves no training examples: the (limited) training set has " + std::to_string(train.size()));

  DataSplits out;
  const int64_t n_train = train.size() - cfg.validation;
  out.train = train.slice(0, n_train);
  out.validation = train.slice(n_train, train.size());
  out.test = test;
  return out;
}

std::vector<std::string> required_files(const DataConfig& cfg) { return make_data_source(cfg)->files(); }

}  // namespace bilevel
