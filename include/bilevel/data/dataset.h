// An in-memory labelled image data set and the train / validation / test splits an experiment uses.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "bilevel/config/config.h"

namespace bilevel {

struct Dataset {
  torch::Tensor images;  // float32 [N, C, H, W], values in [0, 1]
  torch::Tensor labels;  // int64 [N], values in [0, num_classes)
  int64_t num_classes = 0;
  std::string name;

  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
  // Examples [begin, end) (a view, no copy).
  Dataset slice(int64_t begin, int64_t end) const;
  std::vector<int64_t> example_shape() const;  // {C, H, W}
};

struct DataSplits {
  Dataset train;       // after train_limit and after the validation examples were held out
  Dataset validation;  // the last `data.validation` examples of the (limited) training set; may be empty
  Dataset test;
};

// Reads the data set named by cfg.name (data/data_source.h: the data_sets() registry), applies train_limit /
// test_limit and holds out the validation examples. Throws DataError naming the file.
DataSplits load_data(const DataConfig& cfg, int64_t seed);

// The files load_data will read (empty for generated data); config validation checks that they exist.
std::vector<std::string> required_files(const DataConfig& cfg);

}  // namespace bilevel
