// The IDX format of MNIST and Fashion-MNIST (LeCun et al.), raw or gzip-compressed.
// Header: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then each dimension as a
// big-endian uint32; then the data, row-major.
#pragma once

#include <torch/types.h>

#include <string>

#include "bilevel/data/dataset.h"

namespace bilevel {

// Reads an IDX file of unsigned bytes (.gz or raw, detected from the content) into a uint8 tensor with the
// file's dimensions. Throws DataError for a missing, truncated or malformed file.
torch::Tensor read_idx(const std::string& path);

// An images file ([N, H, W]) and a labels file ([N]) as a Dataset with images scaled to [0, 1].
Dataset read_idx_dataset(const std::string& images_path, const std::string& labels_path, int64_t num_classes,
                         const std::string& name);

// Writes a uint8 tensor as IDX (gzip when path ends in .gz). Used by tests and tools.
void write_idx(const std::string& path, const torch::Tensor& data);

}  // namespace bilevel
