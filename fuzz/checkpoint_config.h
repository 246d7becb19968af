// The small network whose checkpoints seed fuzz/corpus/checkpoint (9 inputs, 5 hidden units, 4 classes, Adam):
// the fuzz targets that read checkpoints load into it, and the tests that replay their finds use it too.
#pragma once

namespace bilevel::fuzz {

inline const char* kCheckpointConfig = R"(data:
  name: synthetic
  validation: 0
  synthetic: {train: 40, test: 10, image_size: 3, classes: 4}
model:
  hidden: [5]
train:
  threads: 1
optimizer:
  name: adam
)";

}  // namespace bilevel::fuzz
