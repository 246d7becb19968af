#include "bilevel/run/checkpoint.h"

#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/serialize.h>
#include <torch/serialize/archive.h>

#include <algorithm>
#include <cstdio>
#include <regex>
#include <sstream>
#include <tuple>

#include "bilevel/run/archive_check.h"
#include "bilevel/util/atomic_file.h"
#include "bilevel/util/error.h"
#include "bilevel/util/first_line.h"

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

fs::path checkpoint_path(const fs::path& dir, int64_t epoch, int64_t batch) {
  char name[48];
  std::snprintf(name, sizeof name, "epoch_%04lld_batch_%06lld.pt", static_cast<long long>(epoch),
                static_cast<long long>(batch));
  return dir / name;
}

namespace {
void fill_checkpoint(torch::serialize::OutputArchive& archive, torch::nn::Module& model,
                     torch::optim::Optimizer& optimizer, const TrainProgress& progress, const std::string& config_hash) {
  write_model(archive, model);
  torch::serialize::OutputArchive opt;
  optimizer.save(opt);
  archive.write("optimizer", opt);
  archive.write("epoch", scalar(double(progress.epoch)));
  archive.write("best_epoch", scalar(double(progress.best_epoch)));
  archive.write("best_val_accuracy", scalar(progress.best_val_accuracy));
  archive.write("best_test_accuracy", scalar(progress.best_test_accuracy));
  archive.write("config_hash", c10::IValue(config_hash));
  const EpochPosition& pos = progress.position;
  archive.write("position_batch", scalar(double(pos.batch)));
  archive.write("position_loss_sum", scalar(pos.loss_sum));
  archive.write("position_correct", scalar(double(pos.correct)));
  archive.write("position_seen", scalar(double(pos.seen)));
  archive.write("position_diagnostic_sums", torch::tensor(pos.diagnostic_sums, torch::kFloat64));
  c10::List<torch::Tensor> codes;  // a layer without codes (full precision) as an empty tensor
  for (const auto& c : pos.quant_codes) codes.push_back(c.defined() ? c : torch::empty({0}));
  archive.write("position_quant_codes", c10::IValue(codes));
  // Every RNG a run touches: the global CPU generator (initialisation; rules seed their own generators from
  // the config seed and the epoch, so they need no state here).
  archive.write("rng_cpu", at::detail::getDefaultCPUGenerator().get_state());
}
}  // namespace

void save_checkpoint(const fs::path& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                     const TrainProgress& progress, const std::string& config_hash) {
  torch::serialize::OutputArchive archive;
  fill_checkpoint(archive, model, optimizer, progress, config_hash);
  save_archive(path, archive);
}

std::string checkpoint_bytes(torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                             const TrainProgress& progress, const std::string& config_hash) {
  torch::serialize::OutputArchive archive;
  fill_checkpoint(archive, model, optimizer, progress, config_hash);
  std::ostringstream bytes;
  archive.save_to(bytes);
  return std::move(bytes).str();
}

namespace {
// The first line of an error, at most 200 characters.
std::string short_reason(const std::string& what) {
  std::string line = first_line(what);
  return line.size() > 200 ? line.substr(0, 200) + "..." : line;
}
std::string torch_reason(const c10::Error& e) { return short_reason(e.what_without_backtrace()); }
}  // namespace

namespace {
TrainProgress restore(torch::serialize::InputArchive& archive, const fs::path& path, torch::nn::Module& model,
                      torch::optim::Optimizer& optimizer, const std::string& expected_hash);

// Reads the archive at `path` as checked_archive copies it (run/archive_check.h): LibTorch sees only what passed.
void load_checked(torch::serialize::InputArchive& archive, const fs::path& path) {
  std::istringstream bytes(checked_archive(path));
  archive.load_from(bytes);
}
}  // namespace

TrainProgress load_checkpoint(const fs::path& path, torch::nn::Module& model, torch::optim::Optimizer& optimizer,
                              const std::string& expected_hash) {
  torch::serialize::InputArchive archive;
  try {
    load_checked(archive, path);
  } catch (const UserError&) {
    throw;
  } catch (const c10::Error& e) {
    throw UserError(path.string() + ": unreadable checkpoint (" + torch_reason(e) + ")");
  } catch (const std::exception& e) {
    // LibTorch's archive reader also throws plain runtime_errors for corrupt contents (found by fuzz_checkpoint).
    throw UserError(path.string() + ": unreadable checkpoint (" + short_reason(e.what()) + ")");
  }
  return restore(archive, path, model, optimizer, expected_hash);
}

TrainProgress load_checkpoint_bytes(const std::string& bytes, torch::nn::Module& model,
                                    torch::optim::Optimizer& optimizer, const std::string& expected_hash) {
  torch::serialize::InputArchive archive;
  std::istringstream in(bytes);
  try {
    archive.load_from(in);
  } catch (const std::exception& e) {
    throw UserError("checkpoint received from rank 0: unreadable (" + short_reason(e.what()) + ")");
  }
  return restore(archive, "checkpoint received from rank 0", model, optimizer, expected_hash);
}

namespace {
TrainProgress restore(torch::serialize::InputArchive& archive, const fs::path& path, torch::nn::Module& model,
                      torch::optim::Optimizer& optimizer, const std::string& expected_hash) {
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
    // The position inside the epoch; checkpoints written before it existed are at an epoch's start.
    torch::Tensor t;
    if (archive.try_read("position_batch", t)) {
      EpochPosition& pos = p.position;
      pos.batch = static_cast<int64_t>(t.item<double>());
      pos.loss_sum = read("position_loss_sum");
      pos.correct = static_cast<int64_t>(read("position_correct"));
      pos.seen = static_cast<int64_t>(read("position_seen"));
      torch::Tensor sums;
      archive.read("position_diagnostic_sums", sums);
      sums = sums.to(torch::kFloat64).contiguous();
      pos.diagnostic_sums.assign(sums.data_ptr<double>(), sums.data_ptr<double>() + sums.numel());
      c10::IValue codes;
      archive.read("position_quant_codes", codes);
      const auto list = codes.toTensorList();
      for (size_t i = 0; i < list.size(); ++i) {
        const torch::Tensor c = list.get(i);
        pos.quant_codes.push_back(c.numel() > 0 ? c : torch::Tensor());
      }
      if (pos.batch < 0 || pos.seen < 0 || pos.correct < 0)
        throw UserError(path.string() + ": unusable checkpoint (negative position)");
    }
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
    throw UserError(path.string() + ": unusable checkpoint (" + short_reason(e.what()) + ")");
  }
}
}  // namespace

void save_model(const fs::path& path, torch::nn::Module& model) {
  torch::serialize::OutputArchive archive;
  write_model(archive, model);
  save_archive(path, archive);
}

void load_model(const fs::path& path, torch::nn::Module& model) {
  torch::serialize::InputArchive archive;
  try {
    load_checked(archive, path);
    read_model(archive, model);
  } catch (const UserError&) {
    throw;
  } catch (const c10::Error& e) {
    throw UserError(path.string() + ": cannot load model (" + torch_reason(e) + ")");
  } catch (const std::exception& e) {
    throw UserError(path.string() + ": cannot load model (" + short_reason(e.what()) + ")");
  }
}

namespace {
// (epochs done, batches of the next, positional?) of a checkpoint file name; nullopt for any other file.
std::optional<std::tuple<long long, long long, int>> checkpoint_order(const fs::path& file) {
  static const std::regex pattern("epoch_([0-9]+)(_batch_([0-9]+))?\\.pt");
  std::smatch m;
  const std::string name = file.filename().string();
  if (!std::regex_match(name, m, pattern)) return std::nullopt;
  if (!m[2].matched) return std::make_tuple(std::stoll(m[1]), 0LL, 0);
  return std::make_tuple(std::stoll(m[1]), std::stoll(m[3]), 1);
}
}  // namespace

std::vector<fs::path> checkpoints_newest_first(const fs::path& dir) {
  std::vector<std::pair<std::tuple<long long, long long, int>, fs::path>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {};
  for (const auto& entry : fs::directory_iterator(dir))
    if (auto order = checkpoint_order(entry.path())) found.emplace_back(*order, entry.path());
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<fs::path> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

void remove_older_positional_checkpoints(const fs::path& dir, const fs::path& kept) {
  const auto kept_order = checkpoint_order(kept);
  if (!kept_order) return;
  for (const auto& c : checkpoints_newest_first(dir)) {
    const auto order = checkpoint_order(c);
    if (std::get<2>(*order) == 1 && *order < *kept_order) {
      std::error_code ec;
      fs::remove(c, ec);  // a leftover only costs disk space; resume would never prefer it over `kept`
    }
  }
}

std::optional<fs::path> latest_checkpoint(const fs::path& dir) {
  const auto all = checkpoints_newest_first(dir);
  if (all.empty()) return std::nullopt;
  return all.front();
}

}  // namespace bilevel
