// libFuzzer target: the pickle stream of a checkpoint (data.pkl), the part of an archive that LibTorch's unpickler
// runs. Each input becomes the data.pkl of an otherwise intact archive (the code and storage records of the seed
// checkpoint fuzz/corpus/checkpoint/epoch_0001.pt, written with valid CRCs), so that every input reaches the pickle
// check in run/archive_check.h and, when it passes, LibTorch's reader. Every input must load or fail with UserError.
#include <caffe2/serialize/inline_container.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "bilevel/config/config.h"
#include "bilevel/run/checkpoint.h"
#include "bilevel/train/experiment.h"
#include "bilevel/util/error.h"
#include "checkpoint_config.h"
#include "fuzz_input_file.h"

namespace {

// The seed checkpoint's records but its pickle and version (the writer adds its own).
std::map<std::string, std::string> seed_records() {
  caffe2::serialize::PyTorchStreamReader reader(std::string(BILEVEL_SOURCE_DIR) +
                                                "/fuzz/corpus/checkpoint/epoch_0001.pt");
  std::map<std::string, std::string> out;
  for (const auto& name : reader.getAllRecords()) {
    if (name == "data.pkl" || name == "version") continue;
    auto [data, size] = reader.getRecord(name);
    out[name] = std::string(static_cast<const char*>(data.get()), size);
  }
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bilevel::Experiment x =
      bilevel::prepare(bilevel::load_config_text(bilevel::fuzz::kCheckpointConfig, "fuzz.yaml"));
  static const std::map<std::string, std::string> records = seed_records();
  const std::string path = bilevel::fuzz::input_file(data, 0, "checkpoint_pickle");
  {
    caffe2::serialize::PyTorchStreamWriter writer(path);
    writer.writeRecord("data.pkl", data, size);
    for (const auto& [name, bytes] : records) writer.writeRecord(name, bytes.data(), bytes.size());
    writer.writeEndOfFile();
  }
  try {
    (void)bilevel::load_checkpoint(path, *x.net, *x.optimizer.impl, "");
  } catch (const bilevel::UserError&) {
  }
  return 0;
}
