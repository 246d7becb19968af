#include "bilevel/run/checkpoint.h"

#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/serialize.h>
#include <torch/serialize/archive.h>

#include <cstdio>
#include <regex>

#include "bilevel/util/atomic_file.h"
#include "bilevel/util/error.h"

namespace bilevel {
namespace fs = std::filesystem;

namespace {

void write_model(torch::serialize::OutputArchive& archive, torch::nn::Module& model) {
  torch::serialize::OutputArchive m;
  model.save(m);
  archive.write("model", m);
}

void read_model(torch::serialize::InputArchive& archive, torch::nn::Module& model) {
  torch::serialize::InputArchive m;
  archive.read("model", m);
  model.load(m);
}

torch::Tensor scalar(double v) { return torch::tensor({v}, torch::kFloat64); }

}  // namespace

fs::path checkpoint_path(const fs::path& dir, int64_t epoch) {
  char name[32];
  std::snprintf(name, sizeof name, "epoch_%04lld.pt", static_cast<long long>(epoch));
  return dir / name;
}

void save_checkpoint(const fs::path& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                     const TrainProgress& progress, const std::string& config_hash) {
  torch::serialize::OutputArchive archive;
  write_model(archive, model);
  torch::serialize::OutputArchive opt;
  optimizer.save(opt);
  archive.write("optimizer", opt);
  archive.write("epoch", scalar(double(progress.epoch)));
  archive.write("best_epoch", scalar(double(progress.best_epoch)));
  archive.write("best_val_accuracy", scalar(progress.best_val_accuracy));
  archive.write("best_test_accuracy", scalar(progress.best_test_accuracy));
  archive.write("config_hash", c10::IValue(config_hash));
  // Every RNG a run touches: the global CPU generator (initialisation; rules seed their own generators from
  // the config seed and the epoch, so they need no state here).
  archive.write("rng_cpu", at::detail::getDefaultCPUGenerator().get_state());
  write_atomic_with(path, [&](const fs::path& tmp) { archive.save_to(tmp.string()); });
}

TrainProgress load_checkpoint(const fs::path& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                              const std::string& expected_hash) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path.string());
  } catch (const c10::Error& e) {
    throw UserError(path.string() + ": unreadable checkpoint (" + std::string(e.what_without_backtrace()) + ")");
  }
  c10::IValue hash;
  archive.read("config_hash", hash);
  if (!expected_hash.empty() && hash.toStringRef() != expected_hash)
    throw UserError(path.string() + ": checkpoint was written for a different config (hash " + hash.toStringRef() +
                    ", config.yaml has " + expected_hash + ")");
  read_model(archive, model);
  torch::serialize::InputArchive opt;
  archive.read("optimizer", opt);
  optimizer.load(opt);
  auto read = [&](const char* key) {
    torch::Tensor t;
    archive.read(key, t);
    return t.item<double>();
  };
  TrainProgress p;
  p.epoch = static_cast<int64_t>(read("epoch"));
  p.best_epoch = static_cast<int64_t>(read("best_epoch"));
  p.best_val_accuracy = read("best_val_accuracy");
  p.best_test_accuracy = read("best_test_accuracy");
  torch::Tensor rng;
  archive.read("rng_cpu", rng);
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  gen.set_state(rng);
  return p;
}

void save_model(const fs::path& path, torch::nn::Module& model) {
  torch::serialize::OutputArchive archive;
  write_model(archive, model);
  write_atomic_with(path, [&](const fs::path& tmp) { archive.save_to(tmp.string()); });
}

void load_model(const fs::path& path, torch::nn::Module& model) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path.string());
    read_model(archive, model);
  } catch (const c10::Error& e) {
    throw UserError(path.string() + ": cannot load model (" + std::string(e.what_without_backtrace()) + ")");
  }
}

std::optional<fs::path> latest_checkpoint(const fs::path& dir) {
  static const std::regex pattern("epoch_([0-9]+)\\.pt");
  std::optional<fs::path> best;
  long long best_epoch = -1;
  if (!fs::is_directory(dir)) return best;
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (!std::regex_match(name, m, pattern)) continue;
    long long e = std::stoll(m[1]);
    if (e > best_epoch) best_epoch = e, best = entry.path();
  }
  return best;
}

}  // namespace bilevel
