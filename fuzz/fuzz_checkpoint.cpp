// libFuzzer target: the checkpoint reader, into the network and optimizer of a small fixed config (the one the
// seed corpus's checkpoints were written for). Every input must load or fail with UserError.
#include <cstddef>
#include <cstdint>

#include "bilevel/config/config.h"
#include "bilevel/run/checkpoint.h"
#include "bilevel/train/experiment.h"
#include "bilevel/util/error.h"
#include "checkpoint_config.h"
#include "fuzz_input_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static bilevel::Experiment x =
      bilevel::prepare(bilevel::load_config_text(bilevel::fuzz::kCheckpointConfig, "fuzz.yaml"));
  const std::string path = bilevel::fuzz::input_file(data, size, "checkpoint");
  try {
    (void)bilevel::load_checkpoint(path, *x.net, *x.optimizer.impl, "");
  } catch (const bilevel::UserError&) {
  }
  return 0;
}
