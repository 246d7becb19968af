// The exported quantized model file (`bilevel export`; format: docs/quantized-model-format.md).
//
//   bytes 0..7   magic "BLVQMDL1"
//   bytes 8..15  header length H, uint64 little-endian
//   H bytes      YAML header: provenance (config hash, git commit, run, checkpoint, the resolved config), input
//                quantization, activation quantizer, and per layer its shape, weight encoding, scales, zero points
//                and where its blobs lie
//   payload      blobs, each at a 64-byte aligned offset from the payload's start
//
// Weight encodings: binary (1 bit, bit 1 = +1), ternary (2 bits, code + 1), uint<k> (k bits, code − code_min),
// float32 (layers kept in full precision). Each output row's codes are packed LSB first and padded to a multiple of
// 64 bits, so a binary row is a run of 64-bit words ready for XNOR-popcount.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace bilevel {

struct PackedWeights {
  std::string encoding;          // binary | ternary | uint | float32
  int bits = 32;                 // per value
  float code_min = 0;            // the code of packed value 0 (binary: −1 with bit 1 = +1)
  std::vector<int64_t> shape;    // [out, in] or [out, in_ch, k, k]
  std::vector<uint64_t> words;   // packed rows (encoding != float32)
  std::vector<float> values;     // float32 encoding
  std::vector<float> scale;      // [1] or [out]
  std::vector<float> zero;       // empty (symmetric) or like scale
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t row_length() const;    // values per row
  int64_t row_words() const;     // 64-bit words per packed row
  // The integer code of value (row, i).
  int32_t code(int64_t row, int64_t i) const;
  // Packs integer codes [rows, row_length] (as float) into words.
  void pack(const std::vector<float>& codes);
};

struct ExportedLayer {
  std::string kind;  // linear | conv
  std::vector<int64_t> in_shape, out_shape;
  int64_t padding = 0, pool = 1;
  PackedWeights weight;
  std::vector<float> bias;
};

struct ExportedActivation {
  std::string rho;             // ρ's name
  std::string quantizer;       // none | binary | uniform
  int bits = 32;
  float code_min = 0, code_max = 0, offset = 0;
  std::vector<float> steps;    // per hidden layer: value = offset + step·code
  std::vector<int64_t> full_precision;  // 0-based hidden layers left unquantized
  bool quantizes(size_t layer) const;
};

struct ExportedModel {
  std::vector<int64_t> input_shape;  // {C, H, W}
  float input_step = 1.f / 255.f;    // inputs are integer codes · input_step (8-bit images)
  int64_t num_classes = 0;
  bool activate_output = false;      // outputs are ρ(z_L) (mse) rather than logits; argmax is the same
  ExportedActivation activation;
  std::vector<ExportedLayer> layers;
  // Provenance.
  std::string config_yaml, config_hash, git_commit, source_run, checkpoint, created;
};

// Writes atomically. Throws on I/O errors.
void write_exported_model(const std::filesystem::path& path, const ExportedModel& m);
// Throws UserError naming the file and what is wrong (not a model file, truncated, inconsistent header).
ExportedModel read_exported_model(const std::filesystem::path& path);

}  // namespace bilevel
