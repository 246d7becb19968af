#include "bilevel/run/checkpoint.h"

#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/serialize.h>
#include <torch/serialize/archive.h>

#include <algorithm>
#include <cstdio>
#include <regex>
#include <sstream>

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

// Serialises in memory, then writes the bytes atomically: a full disk or an I/O error is reported with the file's
// name and the system error (LibTorch's own file writer reports neither), and leaves no temporary file.
void save_archive(const fs::path& path, torch::serialize::OutputArchive& archive) {
  std::ostringstream bytes;
  archive.save_to(bytes);
  write_file_atomic(path, std::move(bytes).str());
}

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
  save_archive(path, archive);
}

namespace {
// The first line of an error, at most 200 characters (LibTorch appends a backtrace or the offending source).
std::string first_line(const std::string& what) {
  std::string line = what.substr(0, what.find('\n'));
  return line.size() > 200 ? line.substr(0, 200) + "..." : line;
}
std::string torch_reason(const c10::Error& e) { return first_line(e.what_without_backtrace()); }
}  // namespace

TrainProgress load_checkpoint(const fs::path& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                              const std::string& expected_hash) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path.string());
  } catch (const c10::Error& e) {
    throw UserError(path.string() + ": unreadable checkpoint (" + torch_reason(e) + ")");
  } catch (const std::exception& e) {
    // LibTorch's archive reader also throws plain runtime_errors for corrupt contents (found by fuzz_checkpoint).
    throw UserError(path.string() + ": unreadable checkpoint (" + first_line(e.what()) + ")");
  }
  try {
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
  } catch (const UserError&) {
    throw;
  } catch (const c10::Error& e) {
    throw UserError(path.string() + ": unusable checkpoint (" + torch_reason(e) + ")");
  } catch (const std::exception& e) {
    throw UserError(path.string() + ": unusable checkpoint (" + first_line(e.what()) + ")");
  }
}

void save_model(const fs::path& path, torch::nn::Module& model) {
  torch::serialize::OutputArchive archive;
  write_model(archive, model);
  save_archive(path, archive);
}

void load_model(const fs::path& path, torch::nn::Module& model) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path.string());
    read_model(archive, model);
  } catch (const c10::Error& e) {
    throw UserError(path.string() + ": cannot load model (" + torch_reason(e) + ")");
  } catch (const std::exception& e) {
    throw UserError(path.string() + ": cannot load model (" + first_line(e.what()) + ")");
  }
}

std::vector<fs::path> checkpoints_newest_first(const fs::path& dir) {
  static const std::regex pattern("epoch_([0-9]+)\\.pt");
  std::vector<std::pair<long long, fs::path>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {};
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, pattern)) found.emplace_back(std::stoll(m[1]), entry.path());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::optional<fs::path> latest_checkpoint(const fs::path& dir) {
  const auto all = checkpoints_newest_first(dir);
  if (all.empty()) return std::nullopt;
  return all.front();
}

}  // namespace bilevel
