// The data sets' registry (data_sets(), bilevel/registry.h) and the built-in data sets, registered through the
// public add() like a user's.
#include <filesystem>

#include "bilevel/data/cifar10.h"
#include "bilevel/data/data_source.h"
#include "bilevel/data/idx.h"
#include "bilevel/data/synthetic.h"
#include "bilevel/registry.h"
#include "bilevel/util/error.h"

namespace bilevel {

namespace {

// root/<base>.gz if it exists, else root/<base> if that exists, else the .gz name (so a missing file is reported
// under the name the data set is distributed with).
std::string idx_file(const std::string& root, const std::string& base) {
  namespace fs = std::filesystem;
  const fs::path gz = fs::path(root) / (base + ".gz");
  const fs::path raw = fs::path(root) / base;
  std::error_code ec;
  if (fs::exists(gz, ec)) return gz.string();
  if (fs::exists(raw, ec)) return raw.string();
  return gz.string();
}

// MNIST-format data (Fashion-MNIST, MNIST): four IDX files, gzipped or not.
class IdxSource : public DataSource {
 public:
  explicit IdxSource(const DataConfig& d) : name_(d.name), root_(d.root) {}
  std::vector<std::string> files() const override {
    return {idx_file(root_, "train-images-idx3-ubyte"), idx_file(root_, "train-labels-idx1-ubyte"),
            idx_file(root_, "t10k-images-idx3-ubyte"), idx_file(root_, "t10k-labels-idx1-ubyte")};
  }
  DataShape shape() const override { return {{1, 28, 28}, 10, 60000, 10000}; }
  std::pair<Dataset, Dataset> load(int64_t) const override {
    const auto f = files();
    return {read_idx_dataset(f[0], f[1], 10, name_), read_idx_dataset(f[2], f[3], 10, name_)};
  }

 private:
  std::string name_, root_;
};

class Cifar10Source : public DataSource {
 public:
  explicit Cifar10Source(const DataConfig& d) : root_(d.root) {}
  std::vector<std::string> files() const override {
    std::vector<std::string> f = cifar10_files(root_, true);
    for (auto& t : cifar10_files(root_, false)) f.push_back(t);
    return f;
  }
  DataShape shape() const override { return {{3, 32, 32}, 10, 50000, 10000}; }
  std::pair<Dataset, Dataset> load(int64_t) const override {
    return {read_cifar10(cifar10_files(root_, true)), read_cifar10(cifar10_files(root_, false))};
  }

 private:
  std::string root_;
};

class SyntheticSource : public DataSource {
 public:
  explicit SyntheticSource(const DataConfig& d) : d_(d) {}
  DataShape shape() const override {
    return {{d_.synthetic_channels, d_.synthetic_image_size, d_.synthetic_image_size}, d_.synthetic_classes,
            d_.synthetic_train, d_.synthetic_test};
  }
  std::pair<Dataset, Dataset> load(int64_t seed) const override {
    return {make_synthetic(d_.synthetic_train, d_.synthetic_channels, d_.synthetic_image_size, d_.synthetic_classes,
                           seed, 0),
            make_synthetic(d_.synthetic_test, d_.synthetic_channels, d_.synthetic_image_size, d_.synthetic_classes,
                           seed, 1)};
  }

 private:
  DataConfig d_;
};

KeySpec at_least(std::string name, std::string def, std::string help, double min) {
  KeySpec k = component_key(std::move(name), ValueType::Int, std::move(def), std::move(help));
  k.min = min;
  return k;
}

void add_builtin_data_sets(Registry<DataSource, const DataConfig&>& r) {
  const auto idx = [](const DataConfig& d) { return std::make_unique<IdxSource>(d); };
  r.add({"fashion_mnist", "Fashion-MNIST (Xiao et al. 2017): IDX files under data.root", {}}, idx);
  r.add({"mnist", "MNIST: IDX files under data.root", {}}, idx);
  r.add({"cifar10", "CIFAR-10 (Krizhevsky 2009): the binary version's data_batch_1..5.bin, test_batch.bin", {}},
        [](const DataConfig& d) { return std::make_unique<Cifar10Source>(d); });
  r.add({"synthetic", "Gaussian clusters, generated from the seed (tests and smoke runs)",
         {at_least("train", "2000", "training examples", 1), at_least("test", "500", "test examples", 1),
          at_least("image_size", "8", "image height and width", 1), at_least("channels", "1", "image channels", 1),
          at_least("classes", "4", "number of classes", 2)}},
        [](const DataConfig& d) { return std::make_unique<SyntheticSource>(d); });
}

}  // namespace

Registry<DataSource, const DataConfig&>& data_sets() {
  static Registry<DataSource, const DataConfig&> registry("data set", add_builtin_data_sets);
  return registry;
}

std::unique_ptr<DataSource> make_data_source(const DataConfig& cfg) {
  if (const auto* e = data_sets().find(cfg.name)) return e->make(cfg);
  throw UserError(data_sets().unknown(cfg.name));
}

}  // namespace bilevel
