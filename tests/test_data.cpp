// Data layer: IDX and CIFAR-10 readers, synthetic data, splits and batching.
#include <gtest/gtest.h>
#include <torch/types.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "bilevel/data/batches.h"
#include "bilevel/data/cifar10.h"
#include "bilevel/data/dataset.h"
#include "bilevel/data/idx.h"
#include "bilevel/data/synthetic.h"
#include "bilevel/util/error.h"

namespace fs = std::filesystem;
using namespace bilevel;

namespace {

// A fresh directory under the system temp dir, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
    path_ = fs::temp_directory_path() / ("bilevel_test_data_" + std::to_string(::getpid()) + "_" +
                                         std::to_string(stamp) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

torch::Tensor random_bytes(std::vector<int64_t> shape, int64_t seed = 1) {
  torch::manual_seed(seed);
  return torch::randint(0, 256, shape, torch::TensorOptions().dtype(torch::kUInt8));
}

// Runs f, expects a DataError, and returns its message.
template <class F>
std::string data_error_message(F f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected DataError, got: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected DataError, nothing was thrown";
  return "";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// ---------------------------------------------------------------------------------------------------------- IDX

TEST(Idx, RoundTripRaw) {
  TempDir dir;
  const auto path = dir.file("images-idx3-ubyte");
  const torch::Tensor t = random_bytes({5, 7, 3});
  write_idx(path, t);
  // Header: 00 00 08 03, then 5, 7, 3 as big-endian uint32, then 105 data bytes.
  const auto bytes = read_bytes(path);
  ASSERT_EQ(bytes.size(), 4u + 12u + 105u);
  EXPECT_EQ(bytes[2], 0x08);
  EXPECT_EQ(bytes[3], 3);
  EXPECT_EQ(bytes[7], 5);
  EXPECT_EQ(bytes[11], 7);
  EXPECT_EQ(bytes[15], 3);
  EXPECT_EQ(bytes[16], t[0][0][0].item<int64_t>());
  const torch::Tensor back = read_idx(path);
  EXPECT_EQ(back.scalar_type(), torch::kUInt8);
  EXPECT_EQ(back.sizes(), t.sizes());
  EXPECT_TRUE(torch::equal(back, t));
}

TEST(Idx, RoundTripGzip) {
  TempDir dir;
  const auto path = dir.file("labels-idx1-ubyte.gz");
  const torch::Tensor t = random_bytes({300});
  write_idx(path, t);
  const auto bytes = read_bytes(path);
  ASSERT_GE(bytes.size(), 2u);
  EXPECT_EQ(bytes[0], 0x1f);  // gzip magic
  EXPECT_EQ(bytes[1], 0x8b);
  const torch::Tensor back = read_idx(path);
  EXPECT_EQ(back.sizes(), t.sizes());
  EXPECT_TRUE(torch::equal(back, t));
}

TEST(Idx, RoundTripFourDimsAndLargeDimension) {
  TempDir dir;
  const auto path = dir.file("four.gz");
  const torch::Tensor t = random_bytes({2, 3, 4, 5});
  write_idx(path, t);
  EXPECT_TRUE(torch::equal(read_idx(path), t));
  // A dimension above 255 needs more than the last header byte.
  const auto path2 = dir.file("long");
  const torch::Tensor u = random_bytes({70000});
  write_idx(path2, u);
  EXPECT_TRUE(torch::equal(read_idx(path2), u));
}

TEST(Idx, MissingFile) {
  TempDir dir;
  const auto path = dir.file("does-not-exist.gz");
  const auto msg = data_error_message([&] { read_idx(path); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "cannot open")) << msg;
}

TEST(Idx, TruncatedRawNamesFileAndCounts) {
  TempDir dir;
  const auto path = dir.file("trunc-idx3-ubyte");
  write_idx(path, random_bytes({10, 4, 4}));  // 160 data bytes
  fs::resize_file(path, 16 + 100);
  const auto msg = data_error_message([&] { read_idx(path); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "truncated")) << msg;
  EXPECT_TRUE(contains(msg, "160")) << msg;
  EXPECT_TRUE(contains(msg, "100")) << msg;
}

TEST(Idx, TruncatedHeader) {
  TempDir dir;
  const auto path = dir.file("short");
  write_bytes(path, {0, 0, 8, 3, 0, 0});
  const auto msg = data_error_message([&] { read_idx(path); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "truncated")) << msg;
}

TEST(Idx, HeaderClaimingMoreThanTheFileCanHoldFailsBeforeAllocating) {
  // The IDX fuzz target's first find: a few bytes whose header describes 2 x 16384 x 16384 elements (512 MiB),
  // which the reader allocated before finding the file short (libFuzzer: out-of-memory).
  const std::vector<uint8_t> bytes{0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0x40, 0, 0, 0, 0x40, 0, 1, 2, 3};
  TempDir dir;
  const auto raw = dir.file("huge-idx3-ubyte");
  write_bytes(raw, bytes);
  auto msg = data_error_message([&] { read_idx(raw); });
  EXPECT_TRUE(contains(msg, raw + ": truncated: expected 536870912 data bytes (from the header), found 3")) << msg;

  const auto gz = dir.file("huge-idx3-ubyte.gz");
  gzFile f = gzopen(gz.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
  msg = data_error_message([&] { read_idx(gz); });
  EXPECT_TRUE(contains(msg, gz + ": truncated: expected 536870912 data bytes (from the header), but a ")) << msg;
  EXPECT_TRUE(contains(msg, "-byte gzip file holds at most ")) << msg;
}

TEST(Idx, TruncatedGzipNamesFile) {
  TempDir dir;
  const auto path = dir.file("trunc-idx3-ubyte.gz");
  write_idx(path, random_bytes({20, 28, 28}));  // random bytes barely compress
  const auto full = fs::file_size(path);
  fs::resize_file(path, full / 2);
  const auto msg = data_error_message([&] { read_idx(path); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "truncated")) << msg;
  EXPECT_TRUE(contains(msg, std::to_string(20 * 28 * 28))) << msg;
}

TEST(Idx, CorruptGzip) {
  TempDir dir;
  const auto path = dir.file("corrupt.gz");
  // Compressible data so the deflate stream has structure to break.
  write_idx(path, torch::arange(4000, torch::kInt64).remainder(7).to(torch::kUInt8));
  auto bytes = read_bytes(path);
  ASSERT_GT(bytes.size(), 40u);
  for (size_t i = 12; i < bytes.size() - 8; ++i) bytes[i] ^= 0xA5;
  write_bytes(path, bytes);
  const auto msg = data_error_message([&] { read_idx(path); });
  EXPECT_TRUE(contains(msg, path)) << msg;
}

TEST(Idx, BadMagic) {
  TempDir dir;
  const auto path = dir.file("magic");
  write_bytes(path, {0x12, 0x34, 0x08, 0x01, 0, 0, 0, 1, 7});
  const auto msg = data_error_message([&] { read_idx(path); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "magic")) << msg;
}

TEST(Idx, UnsupportedType) {
  TempDir dir;
  const auto path = dir.file("float-idx");
  // 0x0d = float32 in the IDX spec: valid IDX, but not something this reader accepts.
  write_bytes(path, {0, 0, 0x0d, 0x01, 0, 0, 0, 1, 0, 0, 0x80, 0x3f});
  const auto msg = data_error_message([&] { read_idx(path); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "unsupported IDX type 0x0d")) << msg;
}

TEST(Idx, BadDimensionCount) {
  TempDir dir;
  const auto zero = dir.file("zero-dims");
  write_bytes(zero, {0, 0, 8, 0});
  EXPECT_TRUE(contains(data_error_message([&] { read_idx(zero); }), "dimensions"));
  const auto five = dir.file("five-dims");
  // Header 00 00 08 05, five dimensions of 1, one data byte.
  write_bytes(five, {0, 0, 8, 5, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 9});
  EXPECT_TRUE(contains(data_error_message([&] { read_idx(five); }), "dimensions"));
}

TEST(Idx, TrailingBytes) {
  TempDir dir;
  const auto path = dir.file("extra");
  write_bytes(path, {0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3, 4, 5});
  const auto msg = data_error_message([&] { read_idx(path); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "2 extra bytes")) << msg;
  // The same header with exactly 3 data bytes is fine.
  write_bytes(path, {0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3});
  EXPECT_TRUE(torch::equal(read_idx(path), torch::tensor({1, 2, 3}, torch::kUInt8)));
}

TEST(IdxDataset, ConvertsImagesAndLabels) {
  TempDir dir;
  const auto images = dir.file("img.gz"), labels = dir.file("lab");
  const torch::Tensor img = random_bytes({6, 5, 4});
  img[2][3][1] = 255;
  img[4][0][0] = 0;
  const torch::Tensor lab = torch::tensor({0, 9, 3, 3, 1, 7}, torch::kUInt8);
  write_idx(images, img);
  write_idx(labels, lab);
  const Dataset d = read_idx_dataset(images, labels, 10, "toy");
  EXPECT_EQ(d.name, "toy");
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_EQ(d.size(), 6);
  EXPECT_EQ(d.images.scalar_type(), torch::kFloat32);
  EXPECT_EQ(d.images.sizes(), (std::vector<int64_t>{6, 1, 5, 4}));
  EXPECT_EQ(d.example_shape(), (std::vector<int64_t>{1, 5, 4}));
  EXPECT_EQ(d.labels.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(d.labels, lab.to(torch::kInt64)));
  EXPECT_FLOAT_EQ(d.images[2][0][3][1].item<float>(), 1.0f);
  EXPECT_FLOAT_EQ(d.images[4][0][0][0].item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(d.images[1][0][2][3].item<float>(), img[1][2][3].item<int64_t>() / 255.0f);
}

TEST(IdxDataset, CountMismatch) {
  TempDir dir;
  const auto images = dir.file("img"), labels = dir.file("lab");
  write_idx(images, random_bytes({6, 5, 4}));
  write_idx(labels, torch::zeros({5}, torch::kUInt8));
  const auto msg = data_error_message([&] { read_idx_dataset(images, labels, 10, "toy"); });
  EXPECT_TRUE(contains(msg, labels)) << msg;
  EXPECT_TRUE(contains(msg, "5 labels")) << msg;
  EXPECT_TRUE(contains(msg, "6 images")) << msg;
}

TEST(IdxDataset, LabelOutOfRange) {
  TempDir dir;
  const auto images = dir.file("img"), labels = dir.file("lab");
  write_idx(images, random_bytes({4, 2, 2}));
  write_idx(labels, torch::tensor({1, 2, 10, 3}, torch::kUInt8));
  const auto msg = data_error_message([&] { read_idx_dataset(images, labels, 10, "toy"); });
  EXPECT_TRUE(contains(msg, labels)) << msg;
  EXPECT_TRUE(contains(msg, "label 10 at index 2")) << msg;
  // With 11 classes the same file is valid.
  EXPECT_EQ(read_idx_dataset(images, labels, 11, "toy").size(), 4);
}

TEST(IdxDataset, WrongRank) {
  TempDir dir;
  const auto images = dir.file("img"), labels = dir.file("lab");
  write_idx(images, random_bytes({4, 4}));
  write_idx(labels, torch::zeros({4}, torch::kUInt8));
  EXPECT_TRUE(contains(data_error_message([&] { read_idx_dataset(images, labels, 10, "toy"); }), images));
}

// ----------------------------------------------------------------------------------------------------- CIFAR-10

namespace {

// One record: label, then pixel(c, y, x) = (c * 7 + y * 3 + x + salt) % 256.
std::vector<uint8_t> cifar_record(uint8_t label, int salt) {
  std::vector<uint8_t> r = {label};
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 32; ++y)
      for (int x = 0; x < 32; ++x) r.push_back(static_cast<uint8_t>((c * 7 + y * 3 + x + salt) % 256));
  return r;
}

}  // namespace

TEST(Cifar10, ReadsTwoRecordsWithExactPixelPlacement) {
  TempDir dir;
  const auto path = dir.file("data_batch_1.bin");
  auto bytes = cifar_record(3, 0);
  auto second = cifar_record(9, 100);
  // A distinctive byte at green channel, row 5, column 17 of the second record: offset 1 + 1024 + 5*32 + 17.
  second[1 + 1024 + 5 * 32 + 17] = 250;
  bytes.insert(bytes.end(), second.begin(), second.end());
  ASSERT_EQ(bytes.size(), 2u * 3073u);
  write_bytes(path, bytes);

  const Dataset d = read_cifar10({path});
  EXPECT_EQ(d.size(), 2);
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_EQ(d.images.scalar_type(), torch::kFloat32);
  EXPECT_EQ(d.images.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
  EXPECT_TRUE(torch::equal(d.labels, torch::tensor({3, 9}, torch::kInt64)));
  EXPECT_FLOAT_EQ(d.images[1][1][5][17].item<float>(), 250 / 255.0f);
  // Neighbours of that byte keep the pattern (so rows and columns are not swapped).
  EXPECT_FLOAT_EQ(d.images[1][1][17][5].item<float>(), ((7 + 17 * 3 + 5 + 100) % 256) / 255.0f);
  EXPECT_FLOAT_EQ(d.images[1][1][5][16].item<float>(), ((7 + 5 * 3 + 16 + 100) % 256) / 255.0f);
  // Every pixel of the first record.
  const auto idx = torch::TensorOptions().dtype(torch::kFloat32);
  const auto c = torch::arange(3, idx).view({3, 1, 1}), y = torch::arange(32, idx).view({1, 32, 1}),
             x = torch::arange(32, idx).view({1, 1, 32});
  const torch::Tensor expected = (c * 7 + y * 3 + x).remainder(256) / 255.0;
  EXPECT_TRUE(torch::allclose(d.images[0], expected));
}

TEST(Cifar10, ConcatenatesFiles) {
  TempDir dir;
  const auto a = dir.file("a.bin"), b = dir.file("b.bin");
  write_bytes(a, cifar_record(1, 0));
  write_bytes(b, cifar_record(2, 0));
  const Dataset d = read_cifar10({a, b});
  EXPECT_TRUE(torch::equal(d.labels, torch::tensor({1, 2}, torch::kInt64)));
}

TEST(Cifar10, TruncatedFile) {
  TempDir dir;
  const auto path = dir.file("data_batch_1.bin");
  auto bytes = cifar_record(3, 0);
  auto second = cifar_record(4, 0);
  bytes.insert(bytes.end(), second.begin(), second.begin() + 1000);
  write_bytes(path, bytes);
  const auto msg = data_error_message([&] { read_cifar10({path}); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "truncated: 4073 bytes is not a whole number of 3073-byte records")) << msg;
}

TEST(Cifar10, BadLabelNamesRecord) {
  TempDir dir;
  const auto path = dir.file("test_batch.bin");
  auto bytes = cifar_record(3, 0);
  auto second = cifar_record(12, 0);
  bytes.insert(bytes.end(), second.begin(), second.end());
  write_bytes(path, bytes);
  const auto msg = data_error_message([&] { read_cifar10({path}); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "record 1")) << msg;
}

TEST(Cifar10, MissingFile) {
  TempDir dir;
  const auto path = dir.file("data_batch_1.bin");
  EXPECT_TRUE(contains(data_error_message([&] { read_cifar10({path}); }), path));
}

TEST(Cifar10, FileNamesAndNestedDirectory) {
  TempDir dir;
  const auto root = dir.path().string();
  auto train = cifar10_files(root, true);
  ASSERT_EQ(train.size(), 5u);
  EXPECT_EQ(train[0], (dir.path() / "data_batch_1.bin").string());
  EXPECT_EQ(train[4], (dir.path() / "data_batch_5.bin").string());
  auto test = cifar10_files(root, false);
  ASSERT_EQ(test.size(), 1u);
  EXPECT_EQ(test[0], (dir.path() / "test_batch.bin").string());
  // Files only in the archive's subdirectory: that directory is used.
  const fs::path nested = dir.path() / "cifar-10-batches-bin";
  fs::create_directories(nested);
  write_bytes((nested / "test_batch.bin").string(), cifar_record(0, 0));
  EXPECT_EQ(cifar10_files(root, false)[0], (nested / "test_batch.bin").string());
  // ... unless root itself has them.
  write_bytes((dir.path() / "test_batch.bin").string(), cifar_record(0, 0));
  EXPECT_EQ(cifar10_files(root, false)[0], (dir.path() / "test_batch.bin").string());
}

// ---------------------------------------------------------------------------------------------------- synthetic

namespace {

// Per-class mean image, [classes, C*H*W].
torch::Tensor class_means(const Dataset& d) {
  const auto flat = d.images.reshape({d.size(), -1});
  std::vector<torch::Tensor> means;
  for (int64_t k = 0; k < d.num_classes; ++k) means.push_back(flat.index_select(0, d.labels.eq(k).nonzero().view(-1)).mean(0));
  return torch::stack(means);
}

}  // namespace

TEST(Synthetic, ShapesRangeAndBalance) {
  const Dataset d = make_synthetic(103, 3, 6, 10, 42, 0);
  EXPECT_EQ(d.name, "synthetic");
  EXPECT_EQ(d.num_classes, 10);
  EXPECT_EQ(d.images.sizes(), (std::vector<int64_t>{103, 3, 6, 6}));
  EXPECT_EQ(d.images.scalar_type(), torch::kFloat32);
  EXPECT_EQ(d.labels.scalar_type(), torch::kInt64);
  EXPECT_GE(d.images.min().item<float>(), 0.0f);
  EXPECT_LE(d.images.max().item<float>(), 1.0f);
  const auto counts = torch::bincount(d.labels, {}, 10);
  EXPECT_GE(counts.min().item<int64_t>(), 10);
  EXPECT_LE(counts.max().item<int64_t>(), 11);
  // Labels are not in a fixed cyclic order.
  EXPECT_FALSE(torch::equal(d.labels, torch::arange(103, torch::kInt64).remainder(10)));
}

TEST(Synthetic, DeterministicPerSeedAndStream) {
  const Dataset a = make_synthetic(1000, 1, 8, 5, 7, 0);
  torch::manual_seed(12345);  // the global RNG must not matter
  torch::rand({10});
  const Dataset b = make_synthetic(1000, 1, 8, 5, 7, 0);
  EXPECT_TRUE(torch::equal(a.images, b.images));
  EXPECT_TRUE(torch::equal(a.labels, b.labels));

  const Dataset other_stream = make_synthetic(1000, 1, 8, 5, 7, 1);
  EXPECT_FALSE(torch::equal(a.images, other_stream.images));
  const Dataset other_seed = make_synthetic(1000, 1, 8, 5, 8, 0);
  EXPECT_FALSE(torch::equal(a.images, other_seed.images));

  // Same prototypes across streams: class means agree closely; a different seed's do not.
  const auto ma = class_means(a), ms = class_means(other_stream), mo = class_means(other_seed);
  const double same = (ma - ms).abs().mean().item<double>();
  const double different = (ma - mo).abs().mean().item<double>();
  EXPECT_LT(same, 0.06) << "stream 0 vs 1 class means differ by " << same;
  EXPECT_GT(different, 0.2) << "seed 7 vs 8 class means differ by only " << different;
}

TEST(Synthetic, LearnableByNearestClassMean) {
  const Dataset train = make_synthetic(1000, 1, 8, 10, 3, 0);
  const Dataset test = make_synthetic(500, 1, 8, 10, 3, 1);
  const auto means = class_means(train);
  const auto pred = torch::cdist(test.images.reshape({test.size(), -1}), means).argmin(1);
  const double acc = pred.eq(test.labels).to(torch::kFloat64).mean().item<double>();
  EXPECT_GT(acc, 0.8) << "nearest-class-mean accuracy " << acc;
}

TEST(Synthetic, RejectsBadSizes) {
  EXPECT_THROW(make_synthetic(10, 1, 0, 10, 0, 0), UserError);
  EXPECT_THROW(make_synthetic(10, 1, 4, 0, 0, 0), UserError);
  EXPECT_THROW(make_synthetic(-1, 1, 4, 2, 0, 0), UserError);
}

// ------------------------------------------------------------------------------------------------------ Batches

namespace {

// Each example's label is its index, so a batch's labels are the indices it holds.
Dataset indexed(int64_t n) {
  Dataset d;
  d.images = torch::arange(n, torch::kFloat32).view({n, 1, 1, 1});
  d.labels = torch::arange(n, torch::kInt64);
  d.num_classes = n;
  d.name = "indexed";
  return d;
}

std::vector<int64_t> order_of(const Batches& b) {
  std::vector<int64_t> out;
  for (int64_t i = 0; i < b.count(); ++i) {
    const auto [images, labels] = b.get(i);
    EXPECT_TRUE(torch::equal(images.view(-1).to(torch::kInt64), labels));  // images and labels stay paired
    for (int64_t j = 0; j < labels.size(0); ++j) out.push_back(labels[j].item<int64_t>());
  }
  return out;
}

}  // namespace

TEST(Batches, SameSeedAndEpochSameOrder) {
  const Dataset d = indexed(103);
  const auto a = order_of(Batches(d, 10, true, 5, 2));
  torch::manual_seed(999);  // the global RNG must not matter
  const auto b = order_of(Batches(d, 10, true, 5, 2));
  EXPECT_EQ(a, b);
}

TEST(Batches, DifferentEpochOrSeedDifferentOrder) {
  const Dataset d = indexed(103);
  const auto a = order_of(Batches(d, 10, true, 5, 2));
  EXPECT_NE(a, order_of(Batches(d, 10, true, 5, 3)));
  EXPECT_NE(a, order_of(Batches(d, 10, true, 6, 2)));
}

TEST(Batches, EveryExampleOncePerEpochAndLastBatchSmaller) {
  const Dataset d = indexed(103);
  const Batches b(d, 10, true, 1, 0);
  ASSERT_EQ(b.count(), 11);
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(b.get(i).first.size(0), 10);
  EXPECT_EQ(b.get(10).first.size(0), 3);
  EXPECT_EQ(b.get(10).first.sizes(), (std::vector<int64_t>{3, 1, 1, 1}));
  auto order = order_of(b);
  ASSERT_EQ(order.size(), 103u);
  std::vector<int64_t> natural(103);
  for (int64_t i = 0; i < 103; ++i) natural[i] = i;
  EXPECT_NE(order, natural);  // actually shuffled
  std::sort(order.begin(), order.end());
  EXPECT_EQ(order, natural);
  EXPECT_THROW(b.get(11), std::out_of_range);
}

TEST(Batches, UnshuffledKeepsOrder) {
  const Dataset d = indexed(25);
  const Batches b(d, 25, false, 1, 0);
  EXPECT_EQ(b.count(), 1);
  std::vector<int64_t> natural(25);
  for (int64_t i = 0; i < 25; ++i) natural[i] = i;
  EXPECT_EQ(order_of(b), natural);
  EXPECT_EQ(Batches(d, 7, false, 1, 0).count(), 4);
  EXPECT_EQ(Batches(d, 100, false, 1, 0).count(), 1);
  EXPECT_EQ(Batches(indexed(0), 8, true, 1, 0).count(), 0);
}

// ---------------------------------------------------------------------------------------------------- load_data

namespace {

DataConfig synthetic_config() {
  DataConfig cfg;
  cfg.name = "synthetic";
  cfg.synthetic_train = 500;
  cfg.synthetic_test = 200;
  cfg.synthetic_image_size = 6;
  cfg.synthetic_channels = 2;
  cfg.synthetic_classes = 4;
  return cfg;
}

}  // namespace

TEST(LoadData, SyntheticLimitsAndValidation) {
  DataConfig cfg = synthetic_config();
  cfg.train_limit = 300;
  cfg.test_limit = 50;
  cfg.validation = 40;
  const DataSplits s = load_data(cfg, 11);
  EXPECT_EQ(s.train.size(), 260);
  EXPECT_EQ(s.validation.size(), 40);
  EXPECT_EQ(s.test.size(), 50);
  EXPECT_EQ(s.train.example_shape(), (std::vector<int64_t>{2, 6, 6}));
  EXPECT_EQ(s.train.num_classes, 4);
  EXPECT_EQ(s.test.num_classes, 4);
  EXPECT_TRUE(required_files(cfg).empty());

  // Validation is the last 40 of the first 300 generated training examples, test is stream 1.
  const Dataset full = make_synthetic(500, 2, 6, 4, 11, 0);
  EXPECT_TRUE(torch::equal(s.train.images, full.images.narrow(0, 0, 260)));
  EXPECT_TRUE(torch::equal(s.validation.images, full.images.narrow(0, 260, 40)));
  EXPECT_TRUE(torch::equal(s.validation.labels, full.labels.narrow(0, 260, 40)));
  EXPECT_TRUE(torch::equal(s.test.images, make_synthetic(200, 2, 6, 4, 11, 1).images.narrow(0, 0, 50)));
}

TEST(LoadData, NoLimitsAndNoValidation) {
  const DataSplits s = load_data(synthetic_config(), 1);
  EXPECT_EQ(s.train.size(), 500);
  EXPECT_EQ(s.validation.size(), 0);
  EXPECT_EQ(s.test.size(), 200);
}

TEST(LoadData, ValidationMustLeaveTrainingExamples) {
  DataConfig cfg = synthetic_config();
  cfg.train_limit = 100;
  cfg.validation = 100;
  EXPECT_THROW(load_data(cfg, 1), UserError);
  cfg.validation = 99;
  EXPECT_EQ(load_data(cfg, 1).train.size(), 1);
}

TEST(LoadData, UnknownName) {
  DataConfig cfg = synthetic_config();
  cfg.name = "imagenet";
  EXPECT_THROW(load_data(cfg, 1), UserError);
}

TEST(Dataset, SliceIsAView) {
  Dataset d = indexed(10);
  Dataset s = d.slice(3, 7);
  EXPECT_EQ(s.size(), 4);
  EXPECT_EQ(s.name, "indexed");
  EXPECT_EQ(s.labels[0].item<int64_t>(), 3);
  d.labels[4] = 100;
  EXPECT_EQ(s.labels[1].item<int64_t>(), 100);
  EXPECT_EQ(d.slice(10, 10).size(), 0);
  EXPECT_THROW(d.slice(5, 11), std::out_of_range);
}

TEST(LoadData, IdxFromDirectoryPrefersExistingNames) {
  TempDir dir;
  DataConfig cfg;
  cfg.name = "mnist";
  cfg.root = dir.path().string();
  // Nothing there: the .gz names are reported, and loading names a missing file.
  const auto missing = required_files(cfg);
  ASSERT_EQ(missing.size(), 4u);
  EXPECT_EQ(missing[0], dir.file("train-images-idx3-ubyte.gz"));
  EXPECT_EQ(missing[3], dir.file("t10k-labels-idx1-ubyte.gz"));
  EXPECT_THROW(load_data(cfg, 0), DataError);

  // Raw training files, gzip test files.
  write_idx(dir.file("train-images-idx3-ubyte"), random_bytes({30, 4, 4}));
  write_idx(dir.file("train-labels-idx1-ubyte"), torch::arange(30, torch::kInt64).remainder(10).to(torch::kUInt8));
  write_idx(dir.file("t10k-images-idx3-ubyte.gz"), random_bytes({8, 4, 4}));
  write_idx(dir.file("t10k-labels-idx1-ubyte.gz"), torch::zeros({8}, torch::kUInt8));
  const auto files = required_files(cfg);
  EXPECT_EQ(files[0], dir.file("train-images-idx3-ubyte"));
  EXPECT_EQ(files[1], dir.file("train-labels-idx1-ubyte"));
  EXPECT_EQ(files[2], dir.file("t10k-images-idx3-ubyte.gz"));
  EXPECT_EQ(files[3], dir.file("t10k-labels-idx1-ubyte.gz"));
  cfg.validation = 5;
  const DataSplits s = load_data(cfg, 0);
  EXPECT_EQ(s.train.size(), 25);
  EXPECT_EQ(s.validation.size(), 5);
  EXPECT_EQ(s.test.size(), 8);
  EXPECT_EQ(s.train.name, "mnist");
  EXPECT_EQ(s.train.num_classes, 10);
  EXPECT_EQ(s.validation.labels[0].item<int64_t>(), 5);  // example 25
}

TEST(LoadData, CifarFromDirectory) {
  TempDir dir;
  DataConfig cfg;
  cfg.name = "cifar10";
  cfg.root = dir.path().string();
  EXPECT_EQ(required_files(cfg).size(), 6u);
  EXPECT_THROW(load_data(cfg, 0), DataError);
  for (int i = 1; i <= 5; ++i) write_bytes(dir.file("data_batch_" + std::to_string(i) + ".bin"), cifar_record(i, i));
  write_bytes(dir.file("test_batch.bin"), cifar_record(0, 0));
  cfg.validation = 1;
  const DataSplits s = load_data(cfg, 0);
  EXPECT_EQ(s.train.size(), 4);
  EXPECT_EQ(s.validation.size(), 1);
  EXPECT_EQ(s.validation.labels[0].item<int64_t>(), 5);
  EXPECT_EQ(s.test.size(), 1);
  EXPECT_EQ(s.test.example_shape(), (std::vector<int64_t>{3, 32, 32}));
}

TEST(LoadData, RealFashionMnist) {
  const std::string root = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(fs::path(root) / "train-images-idx3-ubyte.gz")) GTEST_SKIP() << "Fashion-MNIST not installed";
  DataConfig cfg;
  cfg.name = "fashion_mnist";
  cfg.root = root;
  for (const auto& f : required_files(cfg)) EXPECT_TRUE(fs::exists(f)) << f;
  const DataSplits s = load_data(cfg, 0);
  EXPECT_EQ(s.train.size(), 60000);
  EXPECT_EQ(s.validation.size(), 0);
  EXPECT_EQ(s.test.size(), 10000);
  for (const Dataset* d : {&s.train, &s.test}) {
    EXPECT_EQ(d->example_shape(), (std::vector<int64_t>{1, 28, 28}));
    EXPECT_EQ(d->num_classes, 10);
    EXPECT_EQ(d->name, "fashion_mnist");
    EXPECT_EQ(d->labels.min().item<int64_t>(), 0);
    EXPECT_EQ(d->labels.max().item<int64_t>(), 9);
    EXPECT_GE(d->images.min().item<float>(), 0.0f);
    EXPECT_LE(d->images.max().item<float>(), 1.0f);
    EXPECT_FLOAT_EQ(d->images.max().item<float>(), 1.0f);  // some pixel is 255
  }
  // Fashion-MNIST is balanced: 6000 / 1000 per class.
  EXPECT_TRUE(torch::equal(torch::bincount(s.train.labels), torch::full({10}, 6000, torch::kInt64)));
  EXPECT_TRUE(torch::equal(torch::bincount(s.test.labels), torch::full({10}, 1000, torch::kInt64)));
}
