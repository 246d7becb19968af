// A data set as a component: the data_sets() registry (bilevel/registry.h) holds one factory per name, selected by
// data.name; a data set's own keys live under data.NAME (e.g. data.synthetic.classes) and reach its factory in
// DataConfig::keys. The built-ins (fashion_mnist, mnist: IDX files; cifar10: its binary batches; synthetic:
// Gaussian clusters) register through the same public add() as a user's:
//
//   BILEVEL_REGISTER(bilevel::data_sets(),
//                    {"my_set", "my recordings", {bilevel::component_key("file", bilevel::ValueType::String,
//                                                                         "\"rec.bin\"", "file under data.root")}},
//                    [](const bilevel::DataConfig& d) { return std::make_unique<MySet>(d); });
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/data/dataset.h"

namespace bilevel {

// What a data set holds, known without reading it: for memory estimates, export and validation.
struct DataShape {
  std::vector<int64_t> example{1, 28, 28};  // {C, H, W}
  int64_t classes = 10;
  int64_t train = 0, test = 0;  // whole splits, before data.train_limit / data.test_limit
};

class DataSource {
 public:
  virtual ~DataSource() = default;
  // The files load() reads; validation checks that they exist before anything is written (empty: generated).
  virtual std::vector<std::string> files() const { return {}; }
  virtual DataShape shape() const = 0;
  // The whole training and test sets (images float32 [N, C, H, W] in [0, 1], labels int64 in [0, classes)).
  // Throws DataError naming the file for unreadable or malformed data.
  virtual std::pair<Dataset, Dataset> load(int64_t seed) const = 0;
};

// The data set cfg.name names; throws UserError for an unknown name (listing the registered ones).
std::unique_ptr<DataSource> make_data_source(const DataConfig& cfg);

}  // namespace bilevel
