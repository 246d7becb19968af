// CIFAR-10 binary format (Krizhevsky 2009): each record is 1 label byte followed by 3072 pixel bytes
// (1024 red, 1024 green, 1024 blue, each 32x32 row-major). Files data_batch_1..5.bin and test_batch.bin.
#pragma once

#include <string>
#include <vector>

#include "bilevel/data/dataset.h"

namespace bilevel {

// Reads one or more CIFAR-10 binary batch files. Throws DataError for a missing file, a size that is not a
// whole number of records, or a label outside 0..9.
Dataset read_cifar10(const std::vector<std::string>& files);

// The batch files of the training (data_batch_1..5.bin) or test split (test_batch.bin) under root.
std::vector<std::string> cifar10_files(const std::string& root, bool train);

}  // namespace bilevel
