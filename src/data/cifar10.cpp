#include "bilevel/data/cifar10.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bilevel/util/error.h"

namespace bilevel {
namespace {

constexpr int64_t kSide = 32;
constexpr int64_t kPixels = 3 * kSide * kSide;  // 3072
constexpr int64_t kRecord = 1 + kPixels;        // 3073
constexpr int64_t kClasses = 10;

// All records of one file as a uint8 tensor [records, 3073].
torch::Tensor read_records(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw DataError(path, "cannot open: no such file");
  const auto size = static_cast<int64_t>(std::filesystem::file_size(path, ec));
  if (ec) throw DataError(path, "cannot open: " + ec.message());
  if (size == 0) throw DataError(path, "empty file (no records)");
  if (size % kRecord != 0)
    throw DataError(path, "truncated: " + std::to_string(size) + " bytes is not a whole number of " +
                              std::to_string(kRecord) + "-byte records");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path, std::string("cannot open: ") + std::strerror(errno));
  torch::Tensor raw = torch::empty({size / kRecord, kRecord}, torch::kUInt8);
  in.read(reinterpret_cast<char*>(raw.data_ptr<uint8_t>()), size);
  if (in.gcount() != size)
    throw DataError(path, "read error: expected " + std::to_string(size) + " bytes, read " +
                              std::to_string(in.gcount()));
  return raw;
}

}  // namespace

Dataset read_cifar10(const std::vector<std::string>& files) {
  if (files.empty()) throw UserError("read_cifar10: no files given");
  std::vector<torch::Tensor> images, labels;
  for (const auto& path : files) {
    torch::Tensor raw = read_records(path);
    torch::Tensor lab = raw.select(1, 0).to(torch::kInt64);
    if (lab.max().item<int64_t>() >= kClasses) {
      const int64_t at = lab.ge(kClasses).nonzero().index({0, 0}).item<int64_t>();
      throw DataError(path, "record " + std::to_string(at) + " has label " + std::to_string(lab[at].item<int64_t>()) +
                                " (expected 0..9)");
    }
    // The 3072 pixel bytes are already channel-major, row-major: a plain reshape gives [C, H, W].
    images.push_back(raw.narrow(1, 1, kPixels).reshape({-1, 3, kSide, kSide}).to(torch::kFloat32).div_(255.0));
    labels.push_back(lab);
  }
  Dataset d;
  d.images = images.size() == 1 ? images[0] : torch::cat(images, 0);
  d.labels = labels.size() == 1 ? labels[0] : torch::cat(labels, 0);
  d.num_classes = kClasses;
  d.name = "cifar10";
  return d;
}

std::vector<std::string> cifar10_files(const std::string& root, bool train) {
  std::vector<std::string> names;
  if (train) {
    for (int i = 1; i <= 5; ++i) names.push_back("data_batch_" + std::to_string(i) + ".bin");
  } else {
    names.push_back("test_batch.bin");
  }
  namespace fs = std::filesystem;
  // The official archive unpacks into cifar-10-batches-bin/; accept root pointing at either level.
  const fs::path nested = fs::path(root) / "cifar-10-batches-bin";
  std::error_code ec;
  const bool use_nested = !fs::exists(fs::path(root) / names[0], ec) && fs::exists(nested / names[0], ec);
  const fs::path dir = use_nested ? nested : fs::path(root);
  std::vector<std::string> out;
  for (const auto& n : names) out.push_back((dir / n).string());
  return out;
}

}  // namespace bilevel
