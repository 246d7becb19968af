// libFuzzer target: the IDX reader (raw and gzip). Every input must read or fail with DataError.
#include <cstddef>
#include <cstdint>

#include "bilevel/data/idx.h"
#include "bilevel/util/error.h"
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = bilevel::fuzz::input_file(data, size, "idx");
  try {
    const torch::Tensor t = bilevel::read_idx(path);
    (void)t.numel();
  } catch (const bilevel::UserError&) {
  }
  return 0;
}
