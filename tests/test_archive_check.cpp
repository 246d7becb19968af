// The gate between a checkpoint file and LibTorch's reader (run/archive_check.h): what bilevel writes passes and
// loads unchanged; a pickle stream, storage record, tensor view or record list outside that shape is a UserError
// naming the file, the record and the byte, before LibTorch reads any of it. Each malformed case below is one that
// LibTorch 1.13's unpickler or tensor rebuild does not check (a pop from an empty stack, a TUPLE without a MARK, a
// view past its storage): loaded unchecked, it crashes or reads out of bounds instead of failing.
#include <gtest/gtest.h>

#include <caffe2/serialize/inline_container.h>
#include <torch/types.h>
#include <torch/utils.h>

#include <map>
#include <string>
#include <vector>

#include "bilevel/config/config.h"
#include "bilevel/run/archive_check.h"
#include "bilevel/run/checkpoint.h"
#include "bilevel/train/experiment.h"
#include "bilevel/util/error.h"
#include "../fuzz/checkpoint_config.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace bilevel;
using namespace testutil;
using namespace std::string_literals;

namespace {

using Records = std::map<std::string, std::string>;

Records records_of(const std::string& zip_bytes) {
  std::istringstream in(zip_bytes);
  caffe2::serialize::PyTorchStreamReader reader(&in);
  Records out;
  for (const auto& name : reader.getAllRecords()) {
    auto [data, size] = reader.getRecord(name);
    out[name] = std::string(static_cast<const char*>(data.get()), size);
  }
  return out;
}

// An archive of exactly `records` (the writer adds its own version record).
void write_records(const fs::path& file, const Records& records) {
  caffe2::serialize::PyTorchStreamWriter writer(file.string());
  for (const auto& [name, bytes] : records)
    if (name != "version") writer.writeRecord(name, bytes.data(), bytes.size());
  writer.writeEndOfFile();
}

// fuzz/fuzz_checkpoint.cpp's network: 9 inputs, 5 hidden, 4 classes, Adam.
Experiment small_experiment() {
  return prepare(load_config_text(bilevel::fuzz::kCheckpointConfig, "archive_check.yaml"));
}

class ArchiveCheck : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(7);
    Experiment x = small_experiment();
    for (auto& p : x.net->parameters()) p.data().uniform_(-1, 1);  // fresh values, not the initialisation's
    TrainProgress progress;
    progress.epoch = 3;
    progress.best_val_accuracy = 0.25;
    save_checkpoint(dir_ / "good.pt", *x.net, *x.optimizer.impl, progress, "abc");
    for (auto& p : x.net->parameters()) saved_.push_back(p.detach().clone());
    good_ = records_of(read_file(dir_ / "good.pt"));
  }

  // Loads `file` and returns the UserError's message, which must begin "FILE: <kind> (" (empty when it loaded).
  std::string load_error(const fs::path& file, const std::string& kind) {
    Experiment x = small_experiment();
    try {
      load_checkpoint(file, *x.net, *x.optimizer.impl, "");
    } catch (const UserError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.rfind(file.string() + ": " + kind + " (", 0), 0u) << what;
      return what;
    }
    return "";
  }
  // Writes `records` as bad.pt and returns load_error's message for a refused shape.
  std::string refusal(const Records& records) {
    write_records(dir_ / "bad.pt", records);
    return load_error(dir_ / "bad.pt", "not a bilevel checkpoint");
  }
  Records with(const std::string& name, const std::string& bytes) const {
    Records r = good_;
    r[name] = bytes;
    return r;
  }
  // data.pkl with its first occurrence of `from` replaced by `to` (which must exist).
  Records patched_pickle(const std::string& from, const std::string& to) const {
    std::string pkl = good_.at("data.pkl");
    const size_t at = pkl.find(from);
    EXPECT_NE(at, std::string::npos) << "pattern not in data.pkl";
    if (at != std::string::npos) pkl.replace(at, from.size(), to);
    return with("data.pkl", pkl);
  }

  TempDir dir_{"bilevel_archive_check"};
  Records good_;
  std::vector<torch::Tensor> saved_;
};

TEST_F(ArchiveCheck, OurCheckpointPassesAndLoadsTheSameValues) {
  // The checked copy holds the same pickle, code and storages, and drops only the debug records.
  const Records copy = records_of(checked_archive(dir_ / "good.pt"));
  EXPECT_EQ(copy.at("data.pkl"), good_.at("data.pkl"));
  size_t storages = 0, debug = 0;
  for (const auto& [name, bytes] : good_) {
    if (name.size() > 10 && name.compare(name.size() - 10, 10, ".debug_pkl") == 0) {
      ++debug;
      EXPECT_EQ(copy.count(name), 0u) << name;
    } else if (name != "version" && name.rfind(".data/", 0) != 0 && name != "byteorder" && !bytes.empty()) {
      // (an empty storage's record is not copied: LibTorch reads no record for a storage of no elements)
      ASSERT_EQ(copy.count(name), 1u) << name;
      EXPECT_EQ(copy.at(name), bytes) << name;
      storages += name.rfind("data/", 0) == 0;
    }
  }
  EXPECT_GT(storages, 4u);
  EXPECT_GT(debug, 0u);

  Experiment x = small_experiment();
  const TrainProgress p = load_checkpoint(dir_ / "good.pt", *x.net, *x.optimizer.impl, "abc");
  EXPECT_EQ(p.epoch, 3);
  EXPECT_DOUBLE_EQ(p.best_val_accuracy, 0.25);
  const auto params = x.net->parameters();
  ASSERT_EQ(params.size(), saved_.size());
  for (size_t i = 0; i < params.size(); ++i) EXPECT_TRUE(torch::equal(params[i], saved_[i])) << i;
  // And load_model reads the same file through the same gate.
  Experiment y = small_experiment();
  load_model(dir_ / "good.pt", *y.net);
  EXPECT_TRUE(torch::equal(y.net->parameters()[0], saved_[0]));
}

TEST_F(ArchiveCheck, MalformedPickleStreamsAreRefusedNamingRecordAndByte) {
  const std::string P = std::string("\x80\x02", 2);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {P + "R."s, "data.pkl, byte 2: no value for REDUCE's arguments"},  // LibTorch 1.13: swap below an empty stack
      {P + "t."s, "data.pkl, byte 2: TUPLE without a MARK"},
      {P + "(u."s, "SETITEMS has no container below its MARK"},
      {P + "(K\x01\x86."s, "TUPLEn with fewer values"},  // TUPLE2 reaching below a MARK
      {P + "}(K\x01u."s, "SETITEMS with a key without a value"},
      {P + "cos\nsystem\n."s, "GLOBAL os.system is not one"},
      {P + "h\x05."s, "memo slot 5 was never written"},
      {P + ")r\xff\xff\xff\x7f."s, "memo slot 2147483647 out of order"},  // LibTorch would grow its memo to 2^31
      {P + "X\xff\xff\xff\x7f"s, "a string longer than the pickle"},
      {P + ")))."s, "STOP with 3 values and 0 marks"},
      {P + ").."s, "bytes after STOP"},
      {P + ")"s, "truncated pickle"},
      {std::string("\x80\x03).", 4), "not a protocol-2 pickle"},
      {P + "K\x00)\x81."s, "NEWOBJ's class is an integer, not a class"},
      {P + "ctorch._utils\n_rebuild_tensor_v2\n)R."s, "_rebuild_tensor_v2's arguments are not"},
      {P + "ccollections\nOrderedDict\n)R}b."s, "BUILD's object is a dictionary, not an object"},
      {P + "ctorch.jit._pickle\nbuild_intlist\n](X\x01\x00\x00\x00xe\x85R."s, "build_intlist's list holds a string"},
      {P + "\x93."s, "opcode 0x93 is not one LibTorch's pickler writes"},
      {P + ")."s, "data.pkl does not hold a module"},
  };
  for (const auto& [pickle, expected] : cases) {
    const std::string what = refusal(with("data.pkl", pickle));
    EXPECT_TRUE(contains(what, expected)) << "expected '" << expected << "', got '" << what << "'";
  }
}

TEST_F(ArchiveCheck, TensorsMustLieInsideTheirStorageRecords) {
  // The first tensor written is the first layer's 5x9 weight: sizes (5, 9), strides (9, 1), offset 0, in data/0.
  const std::string sizes("(K\x05K\tt", 6), strides("(K\tK\x01t", 6);
  ASSERT_NE(good_.at("data.pkl").find(sizes + strides), std::string::npos);
  // A record shorter than the elements the pickle says it holds.
  std::string shorter = good_.at("data/0");
  shorter.resize(shorter.size() - 4);
  EXPECT_TRUE(contains(refusal(with("data/0", shorter)), "storage record data/0 holds 176 bytes, fewer than 45"));
  Records missing = good_;
  missing.erase("data/0");
  EXPECT_TRUE(contains(refusal(missing), "storage record data/0 is missing"));
  // A view reaching past its storage: by a stride, by a size, by the offset.
  EXPECT_TRUE(contains(refusal(patched_pickle(sizes + strides, sizes + std::string("(K\nK\x01t", 6))),
                       "strides reach past its storage"));
  EXPECT_TRUE(contains(refusal(patched_pickle(sizes + strides, std::string("(K\x06K\tt", 6) + strides)),
                       "past its storage"));
  EXPECT_TRUE(contains(refusal(patched_pickle(std::string("K\x00", 2) + sizes, std::string("K\x01", 2) + sizes)),
                       "past its storage"));
  // An expanded view (stride 0) with more elements than the storage holds.
  EXPECT_TRUE(contains(refusal(patched_pickle(sizes + strides, std::string("(K\x05K\x7ft", 6) +
                                                                    std::string("(K\tK\x00t", 6))),
                       "more elements than its storage"));
}

TEST_F(ArchiveCheck, RecordsOutsideOursAreRefused) {
  EXPECT_TRUE(contains(refusal(with("extra/notes.txt", "hello")), "unexpected record extra/notes.txt"));
  EXPECT_TRUE(contains(refusal(with("byteorder", "big")), "byteorder is not little-endian"));
  EXPECT_TRUE(contains(refusal(with("constants.pkl", std::string("\x80\x02K\x01\x85.", 6))),
                       "constants.pkl is not an empty tuple"));
  Records no_data = good_;
  no_data.erase("data.pkl");
  EXPECT_TRUE(contains(refusal(no_data), "no data.pkl"));
  // A little-endian byteorder record (LibTorch 2.x writes one) is accepted.
  EXPECT_EQ(refusal(with("byteorder", "little")), "");
}

TEST_F(ArchiveCheck, ZipDamageIsCaughtBeforeAnythingIsAllocatedOrRead) {
  const std::string good = read_file(dir_ / "good.pt");
  auto refused = [&](const std::string& bytes) {
    write_file(dir_ / "damaged.pt", bytes);
    return load_error(dir_ / "damaged.pt", "unreadable checkpoint");
  };
  // A bit flipped inside a tensor's bytes: LibTorch (as PyTorch builds it) skips the CRC and would load it.
  const std::string weights = good_.at("data/0");
  std::string flipped = good;
  const size_t at = flipped.find(weights);
  ASSERT_NE(at, std::string::npos);
  flipped[at + 17] = char(flipped[at + 17] ^ 0x10);
  EXPECT_TRUE(contains(refused(flipped), "data/0: CRC-32 mismatch"));
  // A record whose central directory entry claims 4 GiB (fuzz_checkpoint's find: LibTorch allocated it).
  std::string huge = good;
  for (size_t central = good.find(std::string("PK\x01\x02", 4)); central != std::string::npos;
       central = good.find(std::string("PK\x01\x02", 4), central + 4)) {
    const uint16_t name_len = uint16_t(uint8_t(good[central + 28]) | uint8_t(good[central + 29]) << 8);
    const std::string name = good.substr(central + 46, name_len);
    if (name.size() < 7 || name.compare(name.size() - 7, 7, "/data/0") != 0) continue;
    for (size_t field : {central + 20, central + 24}) huge.replace(field, 4, std::string("\x00\x00\x00\xf0", 4));
  }
  ASSERT_NE(huge, good);
  EXPECT_TRUE(contains(refused(huge), "data/0: lies past the end of the file"));
  // Truncated anywhere: no end record, or records cut short.
  EXPECT_TRUE(contains(refused(good.substr(0, good.size() / 2)), "no end-of-central-directory record"));
  EXPECT_TRUE(contains(refused(good.substr(0, 10)), "not a zip archive"));
  // A deflated code record whose compressed bytes are damaged.
  std::string code_damaged = good;
  const size_t code = good.find("code/__torch__.py");
  ASSERT_NE(code, std::string::npos);
  // its compressed bytes follow the local header's name (30 bytes of header, then the name, then an extra field)
  const size_t local = good.rfind(std::string("PK\x03\x04", 4), code);
  const size_t data = local + 30 + (uint8_t(good[local + 26]) | uint8_t(good[local + 27]) << 8) +
                      (uint8_t(good[local + 28]) | uint8_t(good[local + 29]) << 8);
  code_damaged[data + 3] = char(code_damaged[data + 3] ^ 0x5a);
  const std::string what = refused(code_damaged);
  EXPECT_TRUE(contains(what, "code/__torch__.py: corrupt compressed data") ||
              contains(what, "code/__torch__.py: CRC-32 mismatch")) << what;
}

}  // namespace
