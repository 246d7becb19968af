// A small learnable data set for tests and smoke runs: each class is a Gaussian cluster around a random prototype.
#pragma once

#include "bilevel/data/dataset.h"

namespace bilevel {

// n examples of [channels, image_size, image_size] in [0, 1]; the same seed gives the same data (the prototypes
// depend only on seed, so train and test sets made with different `stream`s share them).
Dataset make_synthetic(int64_t n, int64_t channels, int64_t image_size, int64_t num_classes, int64_t seed,
                       int64_t stream);

}  // namespace bilevel
