// libFuzzer target: the CIFAR-10 binary reader. Every input must read or fail with DataError.
#include <cstddef>
#include <cstdint>

#include "bilevel/data/cifar10.h"
#include "bilevel/util/error.h"
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = bilevel::fuzz::input_file(data, size, "cifar10");
  try {
    const bilevel::Dataset d = bilevel::read_cifar10({path});
    (void)d.size();
  } catch (const bilevel::UserError&) {
  }
  return 0;
}
