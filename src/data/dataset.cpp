#include "bilevel/data/dataset.h"

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "bilevel/data/cifar10.h"
#include "bilevel/data/idx.h"
#include "bilevel/data/synthetic.h"
#include "bilevel/util/error.h"

namespace bilevel {
namespace {

bool is_idx_name(const std::string& name) { return name == "fashion_mnist" || name == "mnist"; }

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

struct IdxFiles {
  std::string train_images, train_labels, test_images, test_labels;
};

IdxFiles idx_files(const std::string& root) {
  return {idx_file(root, "train-images-idx3-ubyte"), idx_file(root, "train-labels-idx1-ubyte"),
          idx_file(root, "t10k-images-idx3-ubyte"), idx_file(root, "t10k-labels-idx1-ubyte")};
}

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
  Dataset train, test;
  if (is_idx_name(cfg.name)) {
    const IdxFiles f = idx_files(cfg.root);
    train = read_idx_dataset(f.train_images, f.train_labels, 10, cfg.name);
    test = read_idx_dataset(f.test_images, f.test_labels, 10, cfg.name);
  } else if (cfg.name == "cifar10") {
    train = read_cifar10(cifar10_files(cfg.root, true));
    test = read_cifar10(cifar10_files(cfg.root, false));
  } else if (cfg.name == "synthetic") {
    train = make_synthetic(cfg.synthetic_train, cfg.synthetic_channels, cfg.synthetic_image_size,
                           cfg.synthetic_classes, seed, 0);
    test = make_synthetic(cfg.synthetic_test, cfg.synthetic_channels, cfg.synthetic_image_size,
                          cfg.synthetic_classes, seed, 1);
  } else {
    throw UserError("unknown data set '" + cfg.name + "' (expected fashion_mnist, mnist, cifar10 or synthetic)");
  }

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

std::vector<std::string> required_files(const DataConfig& cfg) {
  if (is_idx_name(cfg.name)) {
    const IdxFiles f = idx_files(cfg.root);
    return {f.train_images, f.train_labels, f.test_images, f.test_labels};
  }
  if (cfg.name == "cifar10") {
    std::vector<std::string> files = cifar10_files(cfg.root, true);
    for (auto& f : cifar10_files(cfg.root, false)) files.push_back(f);
    return files;
  }
  return {};
}

}  // namespace bilevel
